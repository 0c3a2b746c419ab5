"""Why the trained P4UNet's equivariance Dice dips between the 90° steps: the padded corners of the input.

Run after the main job (``bash scripts/main.sh``), which trains P4UNet and the plain U-Net (among others) in
``bundles/polyp_segmentation/runs/comparison/full/{p4,plain}``:

    .venv/bin/python benchmarks/polyp_padding_effect.py

Prints, per network, the equivariance Dice at 0°, 15°, 30°, 45° on the validation split with the input rotated
with zero padding (the default), with reflection padding, and with zero padding but an 8-pixel margin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from monai_equivariant.metrics import EquivarianceMetric

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "polyp_segmentation"
# the main job's settings (scripts/main.sh)
SETTINGS = {"image_size": 64, "synthetic_samples": 96, "network_channels": [4, 8, 16, 32]}
VARIANTS = {"zero padding": {}, "reflection padding": {"input_padding": "reflection"}, "zero, margin 8": {"margin": 8}}


def load(run: Path, name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The trained network of a main-job run and its validation images (N, 3, H, W)."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(run), "network_name": name, **SETTINGS})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(run / "models" / "model.pt", map_location="cpu", weights_only=True))
    images = torch.cat([torch.as_tensor(batch["image"]) for batch in parser.get_parsed_content("validate#dataloader")])
    return net.eval(), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=BUNDLE / "runs" / "comparison" / "full")
    args = parser.parse_args()
    angles = [0.0, 15.0, 30.0, 45.0]
    print("| network | input rotation | " + " | ".join(f"{a:g}°" for a in angles) + " |")
    print("|---|---|" + "---|" * len(angles))
    for name in ("p4", "plain"):
        run = args.runs / name
        if not (run / "models" / "model.pt").is_file():
            raise FileNotFoundError(f"no trained model at {run}/models/model.pt: run `bash scripts/main.sh` first")
        net, images = load(run, name)
        for label, options in VARIANTS.items():
            metric = EquivarianceMetric(net, angles=angles, **options)
            metric(images)
            dice = metric.aggregate()["dice"].tolist()
            print(f"| {name} | {label} | " + " | ".join(f"{d:.3f}" for d in dice) + " |")


if __name__ == "__main__":
    main()
