"""Quick start: train a P4UNet on synthetic polyps for a few epochs, report Dice and exact equivariance.

Usage: python -m monai_equivariant.quickstart [--epochs 8] [--size 64]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric

from monai_equivariant.data import synthetic_polyp
from monai_equivariant.networks.nets import P4UNet
from monai_equivariant.utils import check_equivariance


def _batch(rng: np.random.Generator, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = zip(*(synthetic_polyp(rng, size) for _ in range(n)))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = P4UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(8, 16, 32, 64))
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    train = [_batch(rng, 8, args.size) for _ in range(8)]
    val_x, val_y = _batch(rng, 16, args.size)
    metric = DiceMetric(include_background=True)
    for epoch in range(args.epochs):
        net.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            metric(y_pred=(net(val_x) > 0).float(), y=val_y)
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss.item():.4f} val Dice {metric.aggregate().item():.4f}")
        metric.reset()
    errors = check_equivariance(net, net.group, val_x[:4], relative=True)
    print("equivariance max |f(g.x) - g.f(x)| / max|f| per p4 element:", [f"{e:.1e}" for e in errors.tolist()])


if __name__ == "__main__":
    main()
