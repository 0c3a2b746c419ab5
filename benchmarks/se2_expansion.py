"""Share of the interpolated kernel expansion in an SE(2,N) group conv's forward+backward time.

Usage: python benchmarks/se2_expansion.py [--rotations 12] [--fields 32] [--size 64] [--batch 8] [--repeats 5]

Times, in interleaved rounds (median): the expansion alone (``expand_filter`` forward + backward of its
bank), the whole ``GroupConv`` training step (expansion + conv2d, forward + backward), and a plain
``nn.Conv2d`` holding the expanded bank. Prints the expansion's share of the layer and the layer/plain ratio.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.benchmark import Timer

from monai_equivariant.layers import GroupConv, expand_filter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rotations", type=int, default=12)
    parser.add_argument("--fields", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    n, device = args.rotations, args.device
    conv = GroupConv(args.fields, args.fields, f"se2_{n}", args.kernel_size).to(device)
    plain = conv.to_plain().to(device)
    x = torch.randn(args.batch, args.fields * n, args.size, args.size, device=device, requires_grad=True)
    bank_grad = torch.randn_like(conv.expanded()[0])

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def expansion() -> None:
        conv.weight.grad = None
        bank = expand_filter(conv.weight, conv.group, True, conv.kernel_mask())
        bank.backward(bank_grad)
        sync()

    def step(module: torch.nn.Module):
        def run() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()
            sync()
        return run

    fns = {"expansion": expansion, "layer": step(conv), "plain": step(plain)}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in fns.items():
            samples[name].append(Timer(stmt="fn()", globals={"fn": fn}).timeit(1).median)
    med = {name: statistics.median(times) for name, times in samples.items()}
    share = statistics.median(e / l for e, l in zip(samples["expansion"], samples["layer"]))
    ratio = statistics.median(l / p for l, p in zip(samples["layer"], samples["plain"]))
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"se2_{n} GroupConv {args.fields}->{args.fields} fields ({args.fields * n} channels), "
          f"{args.kernel_size}x{args.kernel_size}, batch {args.batch}, {args.size}^2, forward+backward:")
    print("| expansion ms | layer ms | plain conv ms | expansion / layer | layer / plain |")
    print("|---|---|---|---|---|")
    print(f"| {med['expansion'] * 1e3:.2f} | {med['layer'] * 1e3:.1f} | {med['plain'] * 1e3:.1f} | "
          f"{share:.2%} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
