"""Equivariance curves of a P4UNet and a plain U-Net of the same parameter budget, over a full turn.

Usage: python benchmarks/equivariance_curves.py [--steps 100] [--images 8] [--size 64] [--output DIR]

Both nets are GroupUNet (group "p4" and "trivial", channels matched by parameter count), briefly trained on
the built-in synthetic polyps (``--steps 0``: untrained), then measured with EquivarianceMetric at 0°..360°
in 5° steps on held-out images (again with the valid region eroded by ``--margin`` pixels, which drops the
network's reaction to the padded corners). Writes ``equivariance_dice.png``, ``equivariance_dice_margin8.png``,
``equivariance_mad.png``,
``equivariance_boxplot.png`` (per image, 0°..90°) and ``equivariance.csv`` into the output folder and prints
the per-angle means as a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from monai_equivariant.data import synthetic_polyp
from monai_equivariant.metrics import EquivarianceMetric
from monai_equivariant.visualize import plot_equivariance_boxplots, plot_equivariance_curves
from monai_equivariant.networks.nets import GroupUNet, matched_channels

FIELDS = (8, 16, 32)
ANGLES = [float(a) for a in range(0, 365, 5)]


def polyp_batch(rng: np.random.Generator, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, size, size) images and (n, 1, size, size) masks."""
    images, masks = zip(*(synthetic_polyp(rng, size) for _ in range(n)))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def build_networks() -> dict[str, GroupUNet]:
    """P4UNet fields (8, 16, 32) and the plain U-Net with matched channels (16, 32, 64)."""
    return {
        "P4UNet (p4)": GroupUNet(2, 3, 1, channels=FIELDS, group="p4"),
        "U-Net (trivial)": GroupUNet(2, 3, 1, channels=matched_channels(FIELDS, "p4", "trivial"), group="trivial"),
    }


def train(net: torch.nn.Module, steps: int, size: int, device: str, seed: int = 0) -> float:
    """``steps`` Adam steps of DiceCE on fresh synthetic batches of 8; returns the last loss."""
    rng = np.random.default_rng(seed)
    loss_fn = DiceCELoss(sigmoid=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        images, masks = polyp_batch(rng, 8, size)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(images.to(device)), masks.to(device))
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def measure(net: torch.nn.Module, images: torch.Tensor, angles: list[float], margin: int = 0) -> EquivarianceMetric:
    """EquivarianceMetric over ``angles``; ``margin`` pixels are also dropped along the padded corners."""
    metric = EquivarianceMetric(net.eval(), angles=angles, margin=margin)
    for start in range(0, len(images), 4):
        metric(images[start : start + 4])
    return metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="training steps per network (0: untrained)")
    parser.add_argument("--images", type=int, default=8, help="held-out images measured")
    parser.add_argument("--size", type=int, default=64, help="image size (multiple of 4)")
    parser.add_argument("--margin", type=int, default=8, help="second measurement: valid region eroded by this")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    torch.manual_seed(0)
    images, _ = polyp_batch(np.random.default_rng(1234), args.images, args.size)
    images = images.to(args.device)
    results: dict[str, EquivarianceMetric] = {}
    eroded: dict[str, EquivarianceMetric] = {}
    for name, net in build_networks().items():
        net = net.to(args.device)
        start = time.perf_counter()
        loss = train(net, args.steps, args.size, args.device)
        params = sum(p.numel() for p in net.parameters())
        print(f"{name}: {params:,} parameters, {args.steps} steps, last loss {loss:.3f}, "
              f"{time.perf_counter() - start:.0f} s")
        results[name] = measure(net, images, ANGLES)
        eroded[name] = measure(net, images, ANGLES, margin=args.margin)

    args.output.mkdir(parents=True, exist_ok=True)
    state = "untrained" if args.steps == 0 else f"{args.steps} training steps"
    title = f"synthetic polyps {args.size}×{args.size}, {args.images} images, {state}"
    means = {name: metric.aggregate() for name, metric in results.items()}
    eroded_means = {name: metric.aggregate() for name, metric in eroded.items()}
    for measure_name in ("dice", "mad"):
        plot_equivariance_curves(
            ANGLES, {n: m[measure_name] for n, m in means.items()}, measure_name, title=title,
            path=args.output / f"equivariance_{measure_name}.png",
        )
    plot_equivariance_curves(
        ANGLES, {n: m["dice"] for n, m in eroded_means.items()}, "dice",
        title=f"{title}, valid region eroded by {args.margin} px",
        path=args.output / f"equivariance_dice_margin{args.margin}.png",
    )
    quarter = [i for i, a in enumerate(ANGLES) if a <= 90]
    plot_equivariance_boxplots(
        [ANGLES[i] for i in quarter],
        {n: metric.aggregate("none")["dice"][:, quarter] for n, metric in results.items()},
        title=title, path=args.output / "equivariance_boxplot.png",
    )
    with open(args.output / "equivariance.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["network", "angle", "dice", "iou", "mad", f"dice_margin{args.margin}"])
        for name, m in means.items():
            for i, angle in enumerate(ANGLES):
                values = [float(m[k][i]) for k in ("dice", "iou", "mad")] + [float(eroded_means[name]["dice"][i])]
                writer.writerow([name, angle, *(f"{v:.4f}" for v in values)])

    shown = [a for a in ANGLES if a % 15 == 0]
    print(f"\nMean Dice / Dice with margin {args.margin} / mean |Δp| per angle, {title}:\n")
    print("| angle | " + " | ".join(means) + " |")
    print("|---|" + "---|" * len(means))
    for angle in shown:
        i = ANGLES.index(angle)
        cells = [
            " / ".join(f"{float(v):.3f}" for v in (means[n]["dice"][i], eroded_means[n]["dice"][i], means[n]["mad"][i]))
            for n in means
        ]
        print(f"| {angle:g}° | " + " | ".join(cells) + " |")
    print(f"\nfigures and CSV in {args.output}/")


if __name__ == "__main__":
    main()
