"""Equivariance error over rotation angles 0°..90°: SteerableUNet vs P4UNet vs SE(2,N) GroupUNet.

Usage: python benchmarks/steerable_equivariance.py [--size 64] [--steps 20] [--angles 0,15,30,45,60,75,90]

Each net is trained for a few Adam steps on the built-in synthetic polyps (so weights and batch-norm statistics
are not at their initial values), then in eval mode we measure, on smooth disk-masked inputs x,

    error(θ) = ||m · (f(R_θ x) - R_θ f(x))||_2 / ||m · f(x)||_2

with R_θ = ``monai_equivariant.groups.rotate`` (exact at multiples of 90°, bilinear otherwise) and m the disk
inscribed in the image (minus a 2-pixel margin), averaged over inputs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from monai_equivariant.data.synthetic import synthetic_polyp
from monai_equivariant.groups import rotate
from monai_equivariant.networks.nets import GroupUNet, P4UNet, SteerableUNet


def nets() -> dict[str, torch.nn.Module]:
    """The compared networks (3 input channels, 1 output, five levels each)."""
    return {
        "P4UNet()": P4UNet(),
        "GroupUNet(group='se2_12', channels=(4,8,16,32,64))": GroupUNet(2, 3, 1, (4, 8, 16, 32, 64), group="se2_12"),
        "SteerableUNet() (C8)": SteerableUNet(),
        "SteerableUNet(num_rotations=12)": SteerableUNet(num_rotations=12),
        "SteerableUNet(num_rotations=-1) (SO(2), L=3)": SteerableUNet(num_rotations=-1),
    }


def disk(size: int, radius: float) -> torch.Tensor:
    """(size, size) indicator of the disk of ``radius`` pixels about the image centre."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    return torch.from_numpy(((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.float32))


def smooth_disk_inputs(count: int, size: int, seed: int = 1) -> torch.Tensor:
    """(count, 3, size, size) synthetic polyp frames, centred, blurred (σ = 1) and faded to 0 outside a disk."""
    rng = np.random.default_rng(seed)
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.sqrt((yy - c) ** 2 + (xx - c) ** 2) / (size / 2)
    taper = np.clip((0.9 - r) / 0.2, 0, 1) ** 2  # 1 inside 0.7·R, smooth fall to 0 at 0.9·R
    images = []
    for _ in range(count):
        image, _ = synthetic_polyp(rng, size)
        image = gaussian_filter(image - image.mean(axis=(1, 2), keepdims=True), sigma=(0, 1, 1))
        images.append(image * taper)
    return torch.from_numpy(np.stack(images).astype(np.float32))


def train_briefly(net: torch.nn.Module, size: int, steps: int, seed: int = 0) -> torch.nn.Module:
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(steps):
        pairs = [synthetic_polyp(rng, size) for _ in range(4)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def error_curve(net: torch.nn.Module, x: torch.Tensor, angles: list[float]) -> list[float]:
    """Mean over inputs of the relative L2 error inside the inscribed disk, per angle."""
    mask = disk(x.shape[-1], x.shape[-1] / 2 - 2)
    reference = net(x)
    errors = []
    for angle in angles:
        diff = mask * (net(rotate(x, angle)) - rotate(reference, angle))
        per_input = diff.flatten(1).norm(dim=1) / (mask * reference).flatten(1).norm(dim=1)
        errors.append(per_input.mean().item())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--angles", default="0,15,30,45,60,75,90")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    angles = [float(a) for a in args.angles.split(",")]
    x = smooth_disk_inputs(args.inputs, args.size)
    print("| net | params | " + " | ".join(f"{a:g}°" for a in angles) + " |")
    print("|---|---|" + "---|" * len(angles))
    for name, net in nets().items():
        params = sum(p.numel() for p in net.parameters())
        errors = error_curve(train_briefly(net, args.size, args.steps), x, angles)
        print(f"| {name} | {params:,} | " + " | ".join(f"{e:.1e}" for e in errors) + " |", flush=True)


if __name__ == "__main__":
    main()
