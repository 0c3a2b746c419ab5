"""Peak memory of one GroupCNN training step (forward, backward, SGD update), with and without activation
checkpointing, for a cube group and its equal-parameter plain baseline.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/group_cnn_memory.py [--device cpu|cuda] [--group O]
        [--channels 4 8 16] [--num-res-units 1] [--batch 16] [--size 32] [--amp] [--channels-last]
        [--no-baseline] [--no-warmup] [--no-profile]

CPU: every configuration runs in its own subprocess and reports two figures: the growth of the process's peak
resident memory (``resource.getrusage(...).ru_maxrss``) during the step, over the peak before it (model, input,
imports and, unless ``--no-warmup``, one tiny warm-up step already run; it includes allocator caching and library
workspaces), and the peak of the memory allocated through torch's CPU allocator during the step, above the memory
allocated before it (read from ``torch.profiler``'s memory events: the CPU counterpart of CUDA's
``max_memory_allocated``). CUDA: ``torch.cuda.max_memory_allocated`` during the step, minus the memory held
before it (both columns). ``--amp`` (autocast to float16) and ``--channels-last`` (``torch.channels_last_3d``
for model and input) apply on CUDA only. Prints a Markdown table and, per group, how many times lower the peaks
are with checkpointing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from monai_equivariant.networks.nets import GroupCNN, count_parameters, matched_channels


def training_step_peak(
    group: str,
    channels: list[int],
    batch: int,
    size: int,
    checkpointing: bool,
    num_res_units: int = 1,
    device: str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    warmup: bool = True,
    profile: bool = True,
) -> dict:
    """Run one training step in this process; return its peak memory (MiB) above the pre-step level.

    ``warmup``: first run one step of a copy of the net on a single ``2·size_multiple``-sided patch, so that the
    measured growth of the resident memory is the step's own, not the library code it pages in on first use
    (about 130–160 MiB on CPU for this net, measured as the RSS growth of such a tiny step). ``profile=False``:
    no profiler on CPU (its event records add to the RSS, more for the checkpointed step's many per-sample ops);
    ``allocated_mib`` is then NaN."""
    if (amp or channels_last) and device != "cuda":
        raise ValueError("--amp and --channels-last are CUDA code paths; use --device cuda")
    torch.manual_seed(0)
    net = GroupCNN(3, 1, 2, channels, group=group, num_res_units=num_res_units, checkpointing=checkpointing).to(device)
    x = torch.randn(batch, 1, size, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
    if warmup:  # one tiny step on a copy: pages in the library code the step runs, without touching ``net``
        small = copy.deepcopy(net)
        side = small.size_multiple * 2
        with autocast:
            loss = small(torch.randn(1, 1, side, side, side, device=device)).sum()
        loss.backward()
        torch.optim.SGD(small.parameters(), lr=0.01, momentum=0.9).step()
        del small, loss
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    profiler = (
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        if device == "cpu" and profile
        else contextlib.nullcontext()
    )
    start = time.perf_counter()
    with profiler:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    seconds = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.synchronize()
        peak = allocated = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        allocated = _peak_allocated(profiler) if profile else float("nan")
    return {
        "group": group,
        "channels": list(channels),
        "parameters": count_parameters(net),
        "checkpointing": checkpointing,
        "peak_mib": peak / 2**20,
        "allocated_mib": allocated / 2**20,
        "seconds": seconds,
    }


def _peak_allocated(profiler: torch.profiler.profile) -> int:
    """Peak bytes allocated through torch's CPU allocator during the profiled region, above the level at its
    start (from the ``[memory]`` events of the trace: each carries the bytes of one allocation or free and the
    total allocated after it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        profiler.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not memory:
        return 0
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in memory) - start


def _in_subprocess(args: argparse.Namespace, group: str, channels: list[int], checkpointing: bool) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, %r); from group_cnn_memory import training_step_peak; "
        "print(json.dumps(training_step_peak(%r, %r, %d, %d, %r, %d, %r, %r, %r, %r, %r)))"
        % (os.path.dirname(os.path.abspath(__file__)), group, channels, args.batch, args.size, checkpointing,
           args.num_res_units, args.device, args.amp, args.channels_last, not args.no_warmup,
           not args.no_profile)
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--group", default="O")
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--num-res-units", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain equal-parameter baseline")
    parser.add_argument("--no-warmup", action="store_true", help="measure the first step of the process")
    parser.add_argument("--no-profile", action="store_true", help="CPU: RSS growth only, without the profiler")
    args = parser.parse_args()
    configs = [(args.group, args.channels)]
    if not args.no_baseline:
        configs.append(("trivial", list(matched_channels(args.channels, args.group, "trivial", 3))))
    print(f"training step, batch {args.batch}, {args.size}³ patches, device {args.device}, amp={args.amp}, "
          f"channels_last={args.channels_last}, residual blocks per stage {args.num_res_units}, "
          f"threads={torch.get_num_threads()}, warm-up step={not args.no_warmup}")
    print("| group | fields | parameters | checkpointing | peak RSS growth MiB | peak allocated MiB | step s |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for group, channels in configs:
        runs = []
        for checkpointing in (False, True):
            r = _in_subprocess(args, group, channels, checkpointing)
            runs.append(r)
            print(f"| {group} | {tuple(channels)} | {r['parameters']:,} | {checkpointing} | {r['peak_mib']:.0f} | "
                  f"{r['allocated_mib']:.0f} | {r['seconds']:.1f} |", flush=True)
        ratios.append(
            f"{group}: checkpointing lowers the peak RSS growth {runs[0]['peak_mib'] / runs[1]['peak_mib']:.2f}x, "
            f"the peak allocated {runs[0]['allocated_mib'] / runs[1]['allocated_mib']:.2f}x, "
            f"at {runs[1]['seconds'] / runs[0]['seconds']:.2f}x the step time"
        )
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
