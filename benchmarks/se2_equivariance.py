"""Equivariance error of SE(2,N) U-Nets vs a plain U-Net of equal parameters, at arbitrary angles.

Usage: python benchmarks/se2_equivariance.py [--rotations 8 12] [--seeds 3] [--size 96] [--radius 28] [--sigma 4]

Untrained networks with non-trivial random weights (He-initialised convs, random biases and norm affine
parameters, batch-norm statistics from a few training-mode passes) get smooth, disk-masked inputs;
``rotation_error_curve`` reports ‖f(R_θ x) − R_θ f(x)‖ / ‖f(x)‖ inside the disk. Prints a Markdown table:
mean ± std over seeds at the multiples of 360°/N and at 0..90° in 15° steps.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
from monai.networks.layers import GaussianFilter

from monai_equivariant.networks.nets import GroupUNet, SE2UNet, matched_channels
from monai_equivariant.utils import disk_mask, rotation_error_curve


def smooth_disk_inputs(batch: int, channels: int, size: int, radius: float, sigma: float = 2.0) -> torch.Tensor:
    """(batch, channels, size, size) Gaussian-blurred noise, zero outside the disk of ``radius``."""
    noise = torch.randn(batch, channels, size, size)
    smooth = GaussianFilter(spatial_dims=2, sigma=sigma)(noise)
    smooth = smooth / smooth.std()
    return smooth * disk_mask(size, radius)


def randomise(net: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Random biases and norm affine parameters, batch-norm statistics from two training-mode passes."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
            elif param.dim() == 1:  # norm scales
                param.uniform_(0.5, 1.5)
        net.train()
        for _ in range(2):
            net(inputs)
    return net.eval()


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rotations", type=int, nargs="+", default=[8, 12])
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16], help="SE(2,N) fields per level")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--radius", type=float, default=28.0, help="input support and compared disk")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sigma", type=float, default=4.0, help="input smoothing (pixels)")
    args = parser.parse_args()
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} size={args.size} radius={args.radius} "
          f"sigma={args.sigma} seeds={args.seeds}\n")
    for n in args.rotations:
        step = 360.0 / n
        angles = sorted({round(k * step, 6) for k in range(n) if k * step <= 90.0} | set(range(0, 91, 15)))
        plain_channels = matched_channels(args.channels, f"se2_{n}", "trivial")
        curves: dict[str, list[torch.Tensor]] = {"se2": [], "plain": []}
        counts = {}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            x = smooth_disk_inputs(args.batch, 1, args.size, args.radius, args.sigma)
            nets = {
                "se2": SE2UNet(2, 1, 1, args.channels, num_rotations=n),
                "plain": GroupUNet(2, 1, 1, plain_channels, group="trivial"),
            }
            for name, net in nets.items():
                counts[name] = parameter_count(net)
                randomise(net, x)
                curves[name].append(rotation_error_curve(net, x, angles, radius=args.radius))
        marks = ["*" if abs(a / step - round(a / step)) < 1e-9 else "" for a in angles]
        print(f"N = {n} (* = multiple of 360°/N, a group element)\n")
        print("| net | fields | params | " + " | ".join(f"{a:g}°{m}" for a, m in zip(angles, marks)) + " |")
        print("|---|---|---|" + "---|" * len(angles))
        rows = (("se2", f"SE2UNet (N={n})", args.channels), ("plain", "plain U-Net", plain_channels))
        for name, label, fields in rows:
            stacked = torch.stack(curves[name])
            mean = stacked.mean(0)
            std = stacked.std(0) if args.seeds > 1 else torch.zeros(len(angles))
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean.tolist(), std.tolist()))
            print(f"| {label} | {tuple(fields)} | {counts[name]:,} | {cells} |")
        print()


if __name__ == "__main__":
    main()
