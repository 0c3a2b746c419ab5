"""A whole network vs the same network exported to plain convs (:func:`monai_equivariant.utils.export`), in one
interleaved run.

Usage: python benchmarks/network_overhead.py [--quick] [--repeats 15] [--threads N] [--no-compile] [--breakdown]
       [--routes] [--compiled-only]

Cases (P4UNet with its default fields (8, 16, 32, 64, 128), 3 → 1 channels; GroupCNN(group="O") in 3D):
  - train step (zero_grad, forward, MSE loss, backward) at batch 4, 64² and batch 8, 128²;
  - eval forward without gradient (our filter banks cached) at batch 4, 64², as it is (every forward checks each
    layer's parameters against the cache's snapshot by identity, storage and version counter: no value read) and
    inside one ``frozen_filters(net)`` block around all its rounds (checked once, on leaving it);
  - torch.compile of both nets (compile time printed, then the compiled train step) at batch 4, 64²;
  - channels-last train step: P4UNet (2D, ``torch.channels_last``) and the 3D O CNN (``channels_last_3d``).
The "plain" net is ``export(net)`` put back in training mode: the same filter banks as ``nn.ConvNd`` weights,
so the ratio is the cost of building the banks from the group weights (and their backward) inside the step.
Every round times each candidate once, back to back, and a ratio is the median of the per-round ratios, so
machine noise hits both alike. ``--quick`` runs tiny sizes (a smoke test, not a measurement).

``--breakdown`` runs, instead, where the P4UNet's overhead goes at batch 4, 64² (one interleaved run): the
train step of ours, of ours with every filter bank frozen (precomputed leaf tensors: the convs, group batch
norms and pooling of ours without the expansion and its backward), of the plain export, and the expansion alone
(forward and backward of every layer's bank); in eval, the forward of ours and plain and the cache check alone
(every layer's cached bank looked up: the parameters checked against their snapshot).

``--routes`` times every group conv of the P4UNet by itself (forward + backward, at the input it gets in the
network at batch 4, 64² and batch 8, 128²) on both routes, filter expansion and transformed input
(:mod:`monai_equivariant.layers.input_transform`), and shows which one ``route="auto"`` takes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from monai_equivariant.layers import frozen_filters
from monai_equivariant.layers.conv import _GroupConvNd
from monai_equivariant.networks.nets import GroupCNN, P4UNet
from monai_equivariant.utils.export import export

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py, the sibling module
from timing import interleaved_times  # noqa: E402

TARGETS = {"train b4 64²": 1.08, "train b8 128²": 1.03, "eval b4 64²": 1.02, "eval b4 64², frozen_filters": 1.01}


def plain_copy(net: nn.Module) -> nn.Module:
    """``export(net)`` in training mode: plain convs holding the expanded banks, trainable."""
    plain = export(net).train()
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain


def train_step(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    target = None

    def run() -> None:
        nonlocal target
        net.zero_grad(set_to_none=True)
        out = net(x)
        if target is None:
            target = torch.zeros_like(out)
        nn.functional.mse_loss(out, target).backward()

    return run


def eval_forward(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            net(x)

    return run


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each candidate and the median per-round ratio of "ours" to "plain"."""
    samples = interleaved_times(fns, repeats, warmup)
    result = {name: statistics.median(t) for name, t in samples.items()}
    result["ratio"] = statistics.median(o / p for o, p in zip(samples["ours"], samples["plain"]))
    return result


def run_cases(quick: bool, repeats: int, compile_: bool, compiled_only: bool = False) -> list[dict]:
    """All cases of the module docstring (only the compiled one with ``compiled_only``); each row: case, ours_ms,
    plain_ms, ratio (and compile_s)."""
    torch.manual_seed(0)
    channels2d = (2, 4, 8) if quick else (8, 16, 32, 64, 128)
    sizes = [(2, 16), (2, 32)] if quick else [(4, 64), (8, 128)]
    rows = []

    def add(case: str, ours: Callable, plain: Callable, **extra) -> None:
        r = interleaved({"ours": ours, "plain": plain}, repeats)
        rows.append({"case": case, "ours_ms": r["ours"] * 1e3, "plain_ms": r["plain"] * 1e3, "ratio": r["ratio"],
                     **extra})
        print(_row(rows[-1]), flush=True)

    if compiled_only:
        batch, size = sizes[0]
        compiled_case(channels2d, torch.randn(batch, 3, size, size), add)
        return rows
    net = P4UNet(2, 3, 1, channels=channels2d).train()
    plain = plain_copy(net)
    for batch, size in sizes:
        x = torch.randn(batch, 3, size, size)
        add(f"train b{batch} {size}²", train_step(net, x), train_step(plain, x))
    batch, size = sizes[0]
    x = torch.randn(batch, 3, size, size)
    net.eval(), plain.eval()
    add(f"eval b{batch} {size}²", eval_forward(net, x), eval_forward(plain, x))
    with frozen_filters(net):  # one block around all the rounds, as for a loop of inference forwards
        add(f"eval b{batch} {size}², frozen_filters", eval_forward(net, x), eval_forward(plain, x))
    net.train(), plain.train()

    cl = torch.channels_last
    net_cl, plain_cl = net.to(memory_format=cl), plain_copy(net).to(memory_format=cl)
    x_cl = x.contiguous(memory_format=cl)
    add(f"channels_last train b{batch} {size}²", train_step(net_cl, x_cl), train_step(plain_cl, x_cl))

    cl3 = torch.channels_last_3d
    size3, batch3 = (8, 2) if quick else (24, 4)
    net3 = GroupCNN(3, 1, 2, channels=(2, 4) if quick else (4, 8, 16), group="O").train()
    x3 = torch.randn(batch3, 1, size3, size3, size3)
    add(f"3D O CNN train b{batch3} {size3}³", train_step(net3, x3), train_step(plain_copy(net3), x3))
    net3_cl, plain3_cl = net3.to(memory_format=cl3), plain_copy(net3).to(memory_format=cl3)
    x3_cl = x3.contiguous(memory_format=cl3)
    add(f"channels_last_3d train b{batch3} {size3}³", train_step(net3_cl, x3_cl), train_step(plain3_cl, x3_cl))

    if compile_:
        compiled_case(channels2d, x, add)
    return rows


def compiled_case(channels: tuple, x: torch.Tensor, add: Callable) -> None:
    """``torch.compile`` (fullgraph, inductor) of a new P4UNet and of its plain export, compile time printed, then
    their train steps on ``x`` interleaved (one row added through ``add``)."""
    net = P4UNet(2, 3, 1, channels=channels).train()
    plain = plain_copy(net)
    compiled = {}
    for name, module in (("ours", net), ("plain", plain)):
        start = time.perf_counter()
        fn = train_step(torch.compile(module, fullgraph=True), x)
        fn()  # the first call compiles (forward and backward graphs)
        compiled[name] = (fn, time.perf_counter() - start)
    add(f"compiled train b{x.shape[0]} {x.shape[-1]}²", compiled["ours"][0], compiled["plain"][0],
        compile_s=(compiled["ours"][1], compiled["plain"][1]))


def breakdown(quick: bool, repeats: int) -> dict[str, float]:
    """Median ms of the candidates of ``--breakdown`` (module docstring) and their median per-round ratios to
    the plain export's step."""
    torch.manual_seed(0)
    net = P4UNet(2, 3, 1, channels=(2, 4, 8) if quick else (8, 16, 32, 64, 128)).train()
    plain = plain_copy(net)
    x = torch.randn(2 if quick else 4, 3, 16 if quick else 64, 16 if quick else 64)
    convs = [m for m in net.modules() if isinstance(m, _GroupConvNd)]
    frozen = {id(m): tuple(None if t is None else t.detach().clone().requires_grad_(True) for t in m._expand())
              for m in convs}

    def set_frozen(on: bool) -> None:
        for m in convs:  # an instance attribute shadows the method that expands (or looks up the cache)
            m.route = "filter" if on else "auto"  # every layer through its (frozen) bank
            if on:
                m.expanded = (lambda bank=frozen[id(m)]: bank)
            else:
                m.__dict__.pop("expanded", None)

    def frozen_step() -> None:
        set_frozen(True)
        try:
            ours_step()
        finally:
            set_frozen(False)
            for bank in frozen.values():
                for t in bank:
                    if t is not None:
                        t.grad = None  # as zero_grad(set_to_none=True) does for the parameters

    def expansion_alone() -> None:
        for m in convs:
            bank, bias = m._expand()
            (bank.sum() if bias is None else bank.sum() + bias.sum()).backward()

    def cache_check() -> None:
        with torch.no_grad():
            for m in convs:
                m.expanded()

    ours_step = train_step(net, x)
    fns = {"train ours": ours_step, "train ours, banks frozen": frozen_step, "train plain": train_step(plain, x),
           "expansion fwd+bwd alone": expansion_alone}
    eval_fns = {"eval ours": eval_forward(net, x), "eval plain": eval_forward(plain, x),
                "cache check alone": cache_check}
    samples: dict[str, list[float]] = {}
    for group, reference in ((fns, "train plain"), (eval_fns, "eval plain")):
        if group is eval_fns:
            net.eval(), plain.eval()
        samples.update(interleaved_times(group, repeats, warmup=2))
        for name in group:
            ratio = statistics.median(a / b for a, b in zip(samples[name], samples[reference]))
            print(f"| {name} | {statistics.median(samples[name]) * 1e3:.1f} | {ratio:.3f} |", flush=True)
    net.train(), plain.train()
    return {name: statistics.median(t) * 1e3 for name, t in samples.items()}


def routes(quick: bool, repeats: int) -> list[dict]:
    """Each P4UNet group conv alone on both routes at its in-network input (module docstring): rows of layer,
    input shape, filter-route ms, input-route ms and the route ``"auto"`` takes."""
    torch.manual_seed(0)
    net = P4UNet(2, 3, 1, channels=(2, 4, 8) if quick else (8, 16, 32, 64, 128)).train()
    convs = [m for m in net.modules() if isinstance(m, _GroupConvNd)]
    rows = []
    for batch, size in [(2, 16)] if quick else [(4, 64), (8, 128)]:
        inputs: list[tuple[_GroupConvNd, tuple[int, ...]]] = []
        hooks = [m.register_forward_pre_hook(lambda m, args: inputs.append((m, tuple(args[0].shape)))) for m in convs]
        with torch.no_grad():
            net(torch.randn(batch, 3, size, size))
        for hook in hooks:
            hook.remove()
        for layer, shape in inputs:
            x = torch.randn(shape, requires_grad=True)

            def step(route: str, layer: _GroupConvNd = layer, x: torch.Tensor = x) -> Callable[[], None]:
                def run() -> None:
                    layer.route = route
                    y = layer(x)
                    y.backward(torch.ones_like(y))

                return run

            samples = interleaved_times({"filter": step("filter"), "input": step("input")}, repeats, warmup=1)
            layer.route = "auto"
            chosen = "input" if layer._transforms_input(x) else "filter"
            rows.append({"case": f"b{batch} {size}²", "layer": f"{layer.in_channels}→{layer.out_channels}",
                         "input": shape, "filter_ms": statistics.median(samples["filter"]) * 1e3,
                         "input_ms": statistics.median(samples["input"]) * 1e3, "auto": chosen})
            r = rows[-1]
            faster = "filter" if r["filter_ms"] <= r["input_ms"] else "input"
            print(f"| {r['case']} | {r['layer']} | {tuple(shape)} | {r['filter_ms']:.2f} | {r['input_ms']:.2f} | "
                  f"{chosen}{'' if chosen == faster else ' (slower)'} |", flush=True)
    return rows


def _row(r: dict) -> str:
    target = TARGETS.get(r["case"])
    extra = f" (target ≤ {target:.2f})" if target else ""
    if "compile_s" in r:
        extra += f" (compile {r['compile_s'][0]:.0f} s vs {r['compile_s'][1]:.0f} s)"
    return f"| {r['case']} | {r['ours_ms']:.1f} | {r['plain_ms']:.1f} | {r['ratio']:.3f}{extra} |"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 15; 3 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile case")
    parser.add_argument("--breakdown", action="store_true", help="where the P4UNet overhead goes (b4 64²) instead")
    parser.add_argument("--routes", action="store_true", help="each P4UNet group conv on both routes instead")
    parser.add_argument("--compiled-only", action="store_true",
                        help="only the compiled case, in a fresh process (where glibc returns the plain export's "
                             "large buffers to the OS every step, which slows it: 0.99 here against 1.02-1.06 after "
                             "the eager cases or with MALLOC_MMAP_THRESHOLD_ set; docs/performance.md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 15)
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} repeats={repeats} quick={args.quick}\n")
    if args.routes:
        print("| case | layer (fields) | input | filter route ms | input route ms | auto takes |")
        print("|---|---|---|---|---|---|")
        return routes(args.quick, repeats)
    if args.breakdown:
        print("| candidate | ms | / plain step |")
        print("|---|---|---|")
        return [breakdown(args.quick, repeats)]
    print("| case | ours ms | plain export ms | ours / plain |")
    print("|---|---|---|---|")
    return run_cases(args.quick, repeats, args.compile, args.compiled_only)


if __name__ == "__main__":
    main()
