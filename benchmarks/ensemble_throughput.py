"""The test-time group ensemble batched (its |G| transformed copies in one call) vs sequential (one call per
element, the ensemble before ``max_batch`` existed), in one interleaved run: images per second and their ratio.

Usage: python benchmarks/ensemble_throughput.py [--quick] [--repeats 9] [--threads 1] [--device cpu]

Cases (plain MONAI nets in eval mode, as a user ensembles a trained net; no gradients):
  - ``monai.networks.nets.UNet`` (2D, channels (16, 32, 64, 128), 2 residual units) in a p4m ensemble (8 copies),
    batch 2 at 64² and batch 1 at 128²; the same in a p4 ensemble behind a ``SlidingWindowInferer`` (roi 64²,
    sw_batch_size 4) on 2 images of 128²;
  - ``monai.networks.nets.ResNet`` (resnet10 layout: one basic block per stage, widths 32..256) classifying 32³
    patches in an O ensemble (24 copies), batch 2, and the same capped at ``max_batch=16`` (3 calls of 16).
"Sequential" is ``GroupEnsembleInferer(..., max_batch=B)``: one call of the wrapped inferer per element, exactly the
calls the ensemble made before batching; "batched" is the default (``max_batch=None``: B·|G| inputs per call).
Every round runs each candidate once, back to back, and the ratio is the median of the per-round ratios
(batched images/s over sequential images/s), so machine noise hits both alike. Each row also prints the largest
difference between the two outputs, relative to the output's max (float round-off). ``--quick``: tiny sizes, a
smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from monai.inferers import Inferer, SlidingWindowInferer
from monai.networks.nets import UNet
from monai.networks.nets.resnet import ResNet, ResNetBlock

from monai_equivariant.inferers import GroupEnsembleInferer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py, the sibling module
from timing import interleaved_times  # noqa: E402


def _unet(quick: bool) -> nn.Module:
    channels = (4, 8) if quick else (16, 32, 64, 128)
    return UNet(2, 1, 2, channels=channels, strides=(2,) * (len(channels) - 1), num_res_units=2)


def _resnet3d(quick: bool) -> nn.Module:
    widths = [8, 8, 8, 8] if quick else [32, 64, 128, 256]
    return ResNet(ResNetBlock, [1, 1, 1, 1], widths, spatial_dims=3, n_input_channels=1, num_classes=2)


def _cases(quick: bool) -> list[tuple[str, str, nn.Module, torch.Tensor, Inferer | None, str, int | None]]:
    """(case, group, net, inputs, wrapped inferer, mode, max_batch of the batched candidate)."""
    torch.manual_seed(0)
    unet, resnet = _unet(quick).eval(), _resnet3d(quick).eval()
    s64, s128, s32 = (16, 32, 8) if quick else (64, 128, 32)
    window = SlidingWindowInferer(roi_size=(s64, s64), sw_batch_size=4, overlap=0.25)
    return [
        (f"UNet p4m b2 {s64}²", "p4m", unet, torch.randn(2, 1, s64, s64), None, "segmentation", None),
        (f"UNet p4m b1 {s128}²", "p4m", unet, torch.randn(1, 1, s128, s128), None, "segmentation", None),
        (f"UNet p4 sliding window b2 {s128}²", "p4", unet, torch.randn(2, 1, s128, s128), window, "segmentation", None),
        (f"ResNet10 O b2 {s32}³", "O", resnet, torch.randn(2, 1, s32, s32, s32), None, "classification", None),
        (f"ResNet10 O b2 {s32}³, max_batch=16", "O", resnet, torch.randn(2, 1, s32, s32, s32), None, "classification", 16),
    ]


def _call(inferer: GroupEnsembleInferer, net: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return inferer(x, net)

    return run


def run_cases(quick: bool, repeats: int, device: torch.device) -> list[dict]:
    """Every case of the module docstring; each row: case, copies, sequential/batched images/s, ratio, rel_diff."""
    rows = []
    for case, group, net, x, wrapped, mode, max_batch in _cases(quick):
        net, x = net.to(device), x.to(device)
        sequential = _call(GroupEnsembleInferer(group, wrapped, mode, max_batch=x.shape[0]), net, x)
        batched = _call(GroupEnsembleInferer(group, wrapped, mode, max_batch=max_batch), net, x)
        reference, out = sequential(), batched()
        rel_diff = float((out - reference).abs().max() / reference.abs().max().clamp_min(1e-30))
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        samples = interleaved_times(
            {"sequential": lambda: (sequential(), sync()), "batched": lambda: (batched(), sync())}, repeats
        )
        images = x.shape[0]
        row = {
            "case": case,
            "copies": images * GroupEnsembleInferer(group).group.order,
            "sequential_img_s": images / statistics.median(samples["sequential"]),
            "batched_img_s": images / statistics.median(samples["batched"]),
            "ratio": statistics.median(s / b for s, b in zip(samples["sequential"], samples["batched"])),
            "rel_diff": rel_diff,
        }
        rows.append(row)
        print(
            f"| {case} | {row['copies']} | {row['sequential_img_s']:.2f} | {row['batched_img_s']:.2f} | "
            f"{row['ratio']:.2f}× | {rel_diff:.1e} |",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 9; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 9)
    device = torch.device(args.device)
    print(f"torch={torch.__version__} device={device} threads={torch.get_num_threads()} repeats={repeats} quick={args.quick}\n")
    print("| case | copies B·\|G\| | sequential img/s | batched img/s | batched / sequential | max rel. diff |")
    print("|---|---|---|---|---|---|")
    return run_cases(args.quick, repeats, device)


if __name__ == "__main__":
    main()
