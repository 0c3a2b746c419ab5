"""The main job's comparison table and figure: trained polyp-bundle runs evaluated at rotated test inputs.

Each run is a bundle root trained by ``python -m monai.bundle run`` (see ``scripts/main.sh``). This script
rebuilds each run's network, checkpoint loader, inferer and preprocessed test split from the bundle's own
configs (``train.json`` + ``evaluate.json`` with the run's overrides), then measures, per run:

- test Dice with the input (and its mask) rotated by 0°, 30°, 45°, 90° (bilinear, zero padding; the synthetic
  frames have a dark border, as real endoscopy frames do), and the whole 0–360° curve for the figure;
- equivariance Dice of rotate(f(x)) vs f(rotate(x)) (``EquivarianceMetric``) at 45°, and its 0–360° curve;
- max relative error max|f(g·x) − g·f(x)| / max|f| over the 90° rotations (exact nets: float round-off);
- train seconds per epoch (median of the trainer's epoch times in the run's training log, without the
  validation epoch) and inference milliseconds per image (through the run's inferer, best of 3).

Usage::

    python benchmarks/polyp_comparison.py table --title "full training set" --out-dir runs/full \
        --set '{"image_size": 64, "synthetic_samples": 96}' \
        --run '{"label": "P4UNet", "bundle_root": "runs/full/p4", "network_name": "p4"}' ...
    python benchmarks/polyp_comparison.py figure runs/full/curves.csv runs/small/curves.csv --out fig.png
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.metrics import DiceMetric

from monai_equivariant.groups import rotate
from monai_equivariant.metrics import EquivarianceMetric
from monai_equivariant.networks.nets import count_parameters
from monai_equivariant.utils import check_equivariance

TABLE_ANGLES = (0.0, 30.0, 45.0, 90.0)
CURVE_ANGLES = tuple(float(a) for a in range(0, 361, 15))
"""Every curve in the figure is measured at these angles (0° to 360°): nothing is extrapolated."""
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "polyp_segmentation"

Predict = Callable[[torch.Tensor], torch.Tensor]

_EPOCH_LINE = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")


@dataclass
class BundleRun:
    """One trained run, rebuilt from the bundle's configs: predict = the run's inferer around its network."""

    label: str
    network: torch.nn.Module
    predict: Predict
    images: torch.Tensor  # (N, 3, H, W) preprocessed test images
    labels: torch.Tensor  # (N, 1, H, W) binary masks
    train_log: Path | None


def epoch_seconds(log_text: str) -> float:
    """Median wall seconds of the trainer's epochs in a bundle training log (ignite's "Epoch[k] Complete. Time
    taken" lines), leaving out the last epoch when there are several (it carries the validation run)."""
    times = {int(m[1]): int(m[2]) * 3600 + int(m[3]) * 60 + float(m[4]) for m in _EPOCH_LINE.finditer(log_text)}
    if not times:
        raise ValueError("no 'SupervisedTrainer ... Epoch[k] Complete. Time taken: h:mm:ss' lines in the training log")
    epochs = sorted(times)
    kept = epochs[:-1] if len(epochs) > 1 else epochs
    return float(statistics.median(times[e] for e in kept))


def load_bundle_run(label: str, bundle_dir: str | Path, overrides: Mapping, train_log: str | Path | None = None,
                    device: str = "cpu") -> BundleRun:
    """Network (with its trained checkpoint), inferer and preprocessed test split of one bundle run.

    Args:
        bundle_dir: the bundle (holding ``configs/train.json`` and ``configs/evaluate.json``).
        overrides: the run's overrides (``bundle_root``, ``network_name``, ``inferer``...), as on the command line.
        train_log: the training run's log (for the epoch times), if any.
        device: where the network runs (``predict`` takes and returns CPU tensors whatever it is).
    """
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    configs = Path(bundle_dir) / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "evaluate.json")])
    parser.update({key: value for key, value in overrides.items()})
    parser["device"] = f"$torch.device({str(device)!r})"
    parser["amp"] = False
    network = parser.get_parsed_content("network")
    loader = parser.get_parsed_content("validate#handlers#0")  # the bundle's CheckpointLoader of the trained model
    loader(Engine(lambda engine, batch: None))
    network.eval()
    inferer = parser.get_parsed_content("validate#inferer")
    wanted = str(overrides.get("inferer", "simple"))
    if wanted == "group_ensemble" and type(inferer).__name__ != "GroupEnsembleInferer":
        raise ValueError("this bundle has no --inferer group_ensemble override (validate#inferer is "
                         f"{type(inferer).__name__}); update the bundle (git merge main)")
    dataset = parser.get_parsed_content("validate#dataset")
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.as_tensor(item["image"]).float() for item in items])
    labels = torch.stack([torch.as_tensor(item["label"]).float() for item in items])

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return inferer(x.to(device), network).cpu()

    return BundleRun(label, network, predict, images, labels, Path(train_log) if train_log else None)


def rotated_dice(predict: Predict, images: torch.Tensor, labels: torch.Tensor, angles: Sequence[float]) -> np.ndarray:
    """(len(angles),) mean test Dice of sigmoid(f(rotate(x))) > 0.5 against the rotated mask (nearest), per angle.

    Images (N, C, H, W) are rotated bilinearly with zero padding (the dark border of an endoscopy frame)."""
    metric = DiceMetric(include_background=True, reduction="mean")
    scores = []
    with torch.no_grad():
        for angle in angles:
            x = rotate(images, angle, mode="bilinear", padding_mode="zeros")
            y = rotate(labels, angle, mode="nearest", padding_mode="zeros")
            metric.reset()
            metric((torch.sigmoid(predict(x)) > 0.5).float(), (y > 0.5).float())
            scores.append(float(metric.aggregate()))
    return np.asarray(scores)


def equivariance_dice(predict: Predict, images: torch.Tensor, angles: Sequence[float],
                      ignore_empty: bool = True) -> np.ndarray:
    """(len(angles),) equivariance Dice of rotate(f(x)) vs f(rotate(x)) (``EquivarianceMetric``, zero padding;
    ``ignore_empty=False`` counts two empty masks as agreeing, 1, instead of leaving them out)."""
    metric = EquivarianceMetric(predict, angles=angles, ignore_empty=ignore_empty)
    metric(images)
    return metric.aggregate()["dice"].cpu().numpy()


def max_error_90(predict: Predict, images: torch.Tensor) -> float:
    """max over the 90° rotations of max|f(g·x) − g·f(x)| / max|f(x)|."""
    with torch.no_grad():
        return float(check_equivariance(predict, "p4", images, relative=True).max())


def inference_ms(predict: Predict, images: torch.Tensor, repeats: int = 3) -> float:
    """Milliseconds per image of ``predict`` on the whole batch (best of ``repeats``, after one warm-up)."""
    with torch.no_grad():
        predict(images[:1])
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            predict(images)
            best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(images)


def evaluate(run: BundleRun) -> tuple[dict, dict[str, np.ndarray]]:
    """(table row, curves {"test_dice", "equivariance_dice"} over :data:`CURVE_ANGLES`) of one run."""
    test_curve = rotated_dice(run.predict, run.images, run.labels, CURVE_ANGLES)
    equivariance_curve = equivariance_dice(run.predict, run.images, CURVE_ANGLES)
    at = {angle: i for i, angle in enumerate(CURVE_ANGLES)}
    row = {
        "model": run.label,
        "parameters": count_parameters(run.network),
        **{f"dice_{angle:g}": float(test_curve[at[angle]]) for angle in TABLE_ANGLES},
        "equivariance_dice_45": float(equivariance_curve[at[45.0]]),
        "max_error_90": max_error_90(run.predict, run.images[:4]),
        "train_s_per_epoch": epoch_seconds(run.train_log.read_text()) if run.train_log else float("nan"),
        "inference_ms_per_image": inference_ms(run.predict, run.images),
        "test_images": len(run.images),
    }
    return row, {"test_dice": test_curve, "equivariance_dice": equivariance_curve}


def format_table(rows: Sequence[Mapping], title: str) -> str:
    """A Markdown table of :func:`evaluate` rows."""
    head = (
        "| model | parameters | test Dice 0° | 30° | 45° | 90° | equivariance Dice 45° | max error 90° "
        "| train s/epoch | inference ms/image |"
    )
    lines = [f"{title} ({rows[0]['test_images']} test images)" if rows else title, "", head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['dice_0']:.3f} | {r['dice_30']:.3f} | {r['dice_45']:.3f} "
            f"| {r['dice_90']:.3f} | {r['equivariance_dice_45']:.3f} | {r['max_error_90']:.1e} "
            f"| {r['train_s_per_epoch']:.2f} | {r['inference_ms_per_image']:.2f} |"
        )
    return "\n".join(lines)


def write_outputs(rows: Sequence[Mapping], curves: Mapping[str, Mapping[str, np.ndarray]], title: str, out_dir: Path) -> None:
    """``table.csv``, ``table.md`` and ``curves.csv`` (model, measure, angle, value) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "table.md").write_text(format_table(rows, title) + "\n")
    with open(out_dir / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "model", "measure", "angle", "value"])
        for model, measures in curves.items():
            for measure, values in measures.items():
                for angle, value in zip(CURVE_ANGLES, values):
                    writer.writerow([title, model, measure, angle, f"{value:.6f}"])


def read_curves(path: str | Path) -> tuple[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """(title, {model: {measure: (angles, values)}}) from a ``curves.csv``."""
    data: dict[str, dict[str, list[tuple[float, float]]]] = {}
    title = ""
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            title = row["title"]
            data.setdefault(row["model"], {}).setdefault(row["measure"], []).append((float(row["angle"]), float(row["value"])))
    return title, {
        model: {m: (np.array([a for a, _ in v]), np.array([y for _, y in v])) for m, v in measures.items()}
        for model, measures in data.items()
    }


def plot_comparison(curve_files: Sequence[str | Path], path: str | Path) -> Path:
    """One figure: a row per ``curves.csv`` (training-set size), test Dice and equivariance Dice vs the input's
    rotation angle, every curve drawn only through its measured points (0° to 360°)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curve_files), 2, figsize=(11, 3.6 * len(curve_files)), squeeze=False)
    styles = ["-o", "-s", "--o", "--s", ":^"]
    for row, file in enumerate(curve_files):
        title, curves = read_curves(file)
        for col, (measure, ylabel) in enumerate(
            [("test_dice", "test Dice (input and mask rotated)"), ("equivariance_dice", "Dice of rotate(f(x)) vs f(rotate(x))")]
        ):
            ax = axes[row, col]
            for i, (model, measures) in enumerate(curves.items()):
                angles, values = measures[measure]
                ax.plot(angles, values, styles[i % len(styles)], markersize=3, linewidth=1.2, label=model)
            ax.set_xticks(range(0, 361, 45))
            ax.set_xlim(0, 360)
            ax.set_xlabel("input rotation (degrees), measured every 15°")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle("polyp bundle, synthetic endoscopy test split: equal parameters", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="evaluate trained runs and print one table")
    table.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="the bundle folder (configs/)")
    table.add_argument("--title", required=True)
    table.add_argument("--out-dir", required=True)
    table.add_argument("--set", default="{}", help="JSON overrides shared by every run")
    table.add_argument("--run", action="append", required=True,
                       help='JSON: {"label": ..., "bundle_root": ..., "train_log": ..., <overrides>}')
    figure = sub.add_parser("figure", help="draw the curves of one or more tables")
    figure.add_argument("curves", nargs="+")
    figure.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "figure":
        print(f"figure: {plot_comparison(args.curves, args.out)}")
        return
    shared = json.loads(args.set)
    rows, curves = [], {}
    for spec in args.run:
        run_args = {**shared, **json.loads(spec)}
        label, log = run_args.pop("label"), run_args.pop("train_log", None)
        row, curve = evaluate(load_bundle_run(label, args.bundle, run_args, log))
        rows.append(row)
        curves[label] = curve
    write_outputs(rows, curves, args.title, Path(args.out_dir))
    print(format_table(rows, args.title))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
