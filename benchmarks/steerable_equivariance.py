"""Equivariance error over 0°..90°: SteerableUNet (escnn) next to P4UNet and SE2UNet, same protocol as
``benchmarks/se2_equivariance.py``.

Usage: python benchmarks/steerable_equivariance.py [--seeds 3] [--size 96] [--radius 28] [--sigma 4]
                                                   [--channels 4 8 16] [--steps 0]

Every net has the same fields per level (default (4, 8, 16), 3 levels, 1 input and 1 output channel).
``--steps 0`` (default): untrained nets with non-trivial random weights (``randomise`` of se2_equivariance: random
biases and norm scales, batch-norm statistics from two training passes; escnn basis coefficients keep their He
init) on smooth, disk-masked noise. ``--steps K``: instead, K Adam steps on the synthetic polyps first.
``rotation_error_curve`` reports ‖f(R_θ x) − R_θ f(x)‖ / ‖f(x)‖ inside the disk; the table is mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from se2_equivariance import parameter_count, randomise, smooth_disk_inputs  # noqa: E402

from monai_equivariant.data.synthetic import synthetic_polyp  # noqa: E402
from monai_equivariant.networks.nets import P4UNet, SE2UNet, SteerableUNet  # noqa: E402
from monai_equivariant.utils import rotation_error_curve  # noqa: E402

ANGLES = [0, 15, 30, 45, 60, 75, 90]


def nets(channels: tuple[int, ...]) -> dict[str, nn.Module]:
    return {
        "P4UNet": P4UNet(2, 1, 1, channels),
        "SE2UNet (N=8)": SE2UNet(2, 1, 1, channels, num_rotations=8),
        "SE2UNet (N=12)": SE2UNet(2, 1, 1, channels, num_rotations=12),
        "SteerableUNet (C8)": SteerableUNet(2, 1, 1, channels, num_rotations=8),
        "SteerableUNet (C8, frequencies_cutoff=0.5)": SteerableUNet(
            2, 1, 1, channels, num_rotations=8, frequencies_cutoff=0.5
        ),
        "SteerableUNet (C12)": SteerableUNet(2, 1, 1, channels, num_rotations=12),
        "SteerableUNet (SO(2), L=3)": SteerableUNet(2, 1, 1, channels, num_rotations=-1),
    }


def randomise_steerable(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """se2_equivariance's ``randomise`` (random biases and norm scales, batch-norm statistics from two training
    passes), except that escnn's 1-D ``weights`` (steerable basis coefficients, not norm scales) keep their init."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.1)
            elif param.dim() == 1 and not name.endswith(".weights"):
                param.uniform_(0.5, 1.5)
        net.train()
        for _ in range(2):
            net(x)
    return net.eval()


def train_on_polyps(net: nn.Module, size: int, steps: int, seed: int) -> nn.Module:
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(steps):
        pairs = [synthetic_polyp(rng, size) for _ in range(4)]
        x = torch.from_numpy(np.stack([p[0][:1] for p in pairs]))  # one channel
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--radius", type=float, default=28.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sigma", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=0, help="Adam steps on synthetic polyps (0: randomised)")
    args = parser.parse_args()
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} size={args.size} radius={args.radius} "
          f"sigma={args.sigma} seeds={args.seeds} steps={args.steps}\n")
    curves: dict[str, list[torch.Tensor]] = {}
    counts: dict[str, int] = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        x = smooth_disk_inputs(args.batch, 1, args.size, args.radius, args.sigma)
        for name, net in nets(tuple(args.channels)).items():
            counts[name] = parameter_count(net)
            if args.steps:
                train_on_polyps(net, args.size, args.steps, seed)
            elif isinstance(net, SteerableUNet):
                randomise_steerable(net, x)
            else:
                randomise(net, x)
            curves.setdefault(name, []).append(rotation_error_curve(net, x, ANGLES, radius=args.radius))
    print("| net | params | " + " | ".join(f"{a}°" for a in ANGLES) + " |")
    print("|---|---|" + "---|" * len(ANGLES))
    for name, runs in curves.items():
        stacked = torch.stack(runs)
        std = stacked.std(0) if len(runs) > 1 else torch.zeros(len(ANGLES))
        cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(stacked.mean(0).tolist(), std.tolist()))
        print(f"| {name} | {counts[name]:,} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
