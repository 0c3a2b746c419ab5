"""Mixed-precision (AMP) throughput, images/s, of the equivariant nets vs the plain nets of equal parameters and
of equal FLOPs: P4UNet (full and separable) vs the plain U-Net at 256², and the 3D O-group GroupCNN (full and
separable) vs the plain one at 32³, with the peak memory of a training step.

Usage: python benchmarks/gpu_throughput.py [--device cuda|cpu] [--batch2d 16] [--batch3d 16] [--rounds 5]
       [--steps 10] [--tiny] [--channels-last] [--threads N] [--out gpu_throughput.md]

One command on a GPU machine: ``python benchmarks/gpu_throughput.py --out benchmarks/results/gpu_throughput.md``.

Training: ``torch.autocast`` (float16 on CUDA with ``torch.amp.GradScaler``; bfloat16 on CPU), forward, mean loss,
backward, SGD step. Inference: eval mode, ``torch.no_grad()`` under the same autocast (the group nets' filter
banks are cached in eval mode). Each round runs ``--steps`` steps of every net back to back (interleaved), after
warm-up; images/s is the median over rounds. ``--device`` defaults to cuda when available. ``--tiny`` runs the
same comparison with small nets (1-8 fields, 3 U-Net levels) on 32² / 8³ inputs, for CPU smoke tests.

Memory per net: on CUDA the peak allocated memory of one AMP training step of that net alone
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; weights, gradients and optimizer state
included); on every device the MiB of activations one float32 training forward saves for backward
(``cost_table.activation_mib``, deterministic). The separable rows have the full nets' fields (fewer parameters).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from monai_equivariant.networks.nets import GroupCNN, GroupUNet, count_parameters, matched_channels

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/cost_table.py, the sibling module
from cost_table import activation_mib  # noqa: E402


def comparisons(tiny: bool) -> list[dict]:
    """[{name, size, spatial_dims, in_channels, nets: {label: builder}}] for the 2D and 3D comparisons."""
    unet_fields = (2, 4, 8) if tiny else (8, 16, 32, 64, 128)
    cnn_fields = (1, 2) if tiny else (4, 8, 16)

    def unet(group: str, channels, separable: bool = False) -> Callable[[], nn.Module]:
        return lambda: GroupUNet(2, 3, 1, tuple(channels), group=group, separable=separable)

    def cnn(group: str, channels, separable: bool = False) -> Callable[[], nn.Module]:
        return lambda: GroupCNN(3, 1, 2, tuple(channels), group=group, separable=separable)

    return [
        dict(
            name="2D U-Net",
            size=32 if tiny else 256,
            spatial_dims=2,
            in_channels=3,
            nets={
                "P4UNet (p4)": unet("p4", unet_fields),
                "P4UNet separable (p4)": unet("p4", unet_fields, separable=True),
                "plain U-Net, equal params": unet("trivial", matched_channels(unet_fields, "p4", "trivial", 2)),
                "plain U-Net, equal FLOPs": unet(
                    "trivial", matched_channels(unet_fields, "p4", "trivial", 2, by="flops")
                ),
            },
        ),
        dict(
            name="3D classifier",
            size=8 if tiny else 32,
            spatial_dims=3,
            in_channels=1,
            nets={
                "GroupCNN (O)": cnn("O", cnn_fields),
                "GroupCNN separable (O)": cnn("O", cnn_fields, separable=True),
                "plain GroupCNN, equal params": cnn("trivial", matched_channels(cnn_fields, "O", "trivial", 3)),
                "plain GroupCNN, equal FLOPs": cnn(
                    "trivial", matched_channels(cnn_fields, "O", "trivial", 3, by="flops")
                ),
            },
        ),
    ]


def autocast(device: str):
    """float16 autocast on CUDA, bfloat16 on CPU."""
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device, dtype=dtype)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_steps(net: nn.Module, x: torch.Tensor, device: str) -> Callable[[int], None]:
    """``run(n)``: n AMP training steps on the batch x."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-6)
    scaler = torch.amp.GradScaler("cuda") if device == "cuda" else None

    def run(n: int) -> None:
        net.train()
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = net(x).float().mean()
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        _sync(device)

    return run


def infer_steps(net: nn.Module, x: torch.Tensor, device: str) -> Callable[[int], None]:
    """``run(n)``: n AMP eval forwards of the batch x."""

    def run(n: int) -> None:
        net.eval()
        with torch.no_grad(), autocast(device):
            for _ in range(n):
                net(x)
        _sync(device)

    return run


def images_per_second(runs: dict[str, Callable[[int], None]], batch: int, rounds: int, steps: int) -> dict[str, float]:
    """Median images/s per net over interleaved rounds of ``steps`` calls each (after one warm-up round)."""
    for run in runs.values():
        run(max(1, min(steps, 3)))
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(steps)
            rates[name].append(batch * steps / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def peak_train_mib(net: nn.Module, x: torch.Tensor, device: str) -> float | None:
    """Peak CUDA memory (MiB) of one AMP training step of ``net`` alone (None off CUDA)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    train_steps(net, x, device)(1)
    return torch.cuda.max_memory_allocated() / 2**20


def measure(comparison: dict, batch: int, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    shape = (batch, comparison["in_channels"]) + (comparison["size"],) * comparison["spatial_dims"]
    memory_format = None
    if args.channels_last:
        memory_format = torch.channels_last if comparison["spatial_dims"] == 2 else torch.channels_last_3d
    x = torch.randn(shape, device=args.device)
    nets = {}
    for label, build in comparison["nets"].items():
        net = build().to(args.device)
        if memory_format is not None:
            net = net.to(memory_format=memory_format)
        nets[label] = net
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    train = images_per_second(
        {k: train_steps(n, x, args.device) for k, n in nets.items()}, batch, args.rounds, args.steps
    )
    infer = images_per_second(
        {k: infer_steps(n, x, args.device) for k, n in nets.items()}, batch, args.rounds, args.steps
    )
    peak = {k: peak_train_mib(n, x, args.device) for k, n in nets.items()}
    activations = {k: activation_mib(n, x) for k, n in nets.items()}
    first = next(iter(nets))
    size = f"{comparison['size']}^{comparison['spatial_dims']}"
    return [
        dict(
            comparison=comparison["name"],
            net=label,
            size=size,
            batch=batch,
            params=count_parameters(net),
            train=train[label],
            infer=infer[label],
            train_vs_group=train[label] / train[first],
            infer_vs_group=infer[label] / infer[first],
            peak_mib=peak[label],
            activation_mib=activations[label],
        )
        for label, net in nets.items()
    ]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| net | input | batch | params | train images/s | inference images/s | train speed vs equivariant | "
        "inference speed vs equivariant | peak train MiB | activations MiB (fp32) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "–" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        lines.append(
            f"| {r['net']} | {r['size']} | {r['batch']} | {r['params']:,} | {r['train']:.1f} | {r['infer']:.1f} | "
            f"{r['train_vs_group']:.2f}× | {r['infer_vs_group']:.2f}× | {peak} | {r['activation_mib']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch2d", type=int, default=16)
    parser.add_argument("--batch3d", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per net per round")
    parser.add_argument("--tiny", action="store_true", help="small nets at 32² / 8³, batch 2, 1 round of 1 step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--channels-last", action="store_true", help="channels_last(_3d) nets and inputs")
    parser.add_argument("--out", help="also write the header line and the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch2d, args.batch3d, args.rounds, args.steps = 2, 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for comparison in comparisons(args.tiny):
        batch = args.batch2d if comparison["spatial_dims"] == 2 else args.batch3d
        rows.extend(measure(comparison, batch, args))
    amp = "float16" if args.device == "cuda" else "bfloat16"
    report = (
        f"device={args.device} ({name}) torch={torch.__version__} autocast={amp} rounds={args.rounds} "
        f"steps={args.steps}{' channels_last' if args.channels_last else ''}{' (tiny)' if args.tiny else ''}\n\n"
        f"{markdown(rows)}\n\nwall time {time.perf_counter() - start:.0f} s\n"
    )
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python benchmarks/gpu_throughput.py", *(argv if argv is not None else sys.argv[1:])])
        Path(args.out).write_text(f"Command: `{command}`\n\n{report}")
    return rows


if __name__ == "__main__":
    main()
