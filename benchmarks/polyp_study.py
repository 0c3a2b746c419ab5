"""The seed's polyp study, reproducible where the data (and a GPU) are: Kvasir-SEG and CVC-ClinicDB.

Per dataset: the polyp bundle's seeded 70/15/15 split; the plain U-Net, the p4 U-Net, the SE(2,12) U-Net and the
steerable U-Net trained by ``python -m monai.bundle run`` at the study's sizes (``--network_channels
[8,16,32,64,128]``: P4UNet 1,963,137 parameters and the plain U-Net 1,965,569, the study's 1,964,029 and
1,965,625; SE(2,12) at equal parameters; the steerable net with regular C8 fields of the same widths); then, on
each test split, test Dice and the study's equivariance similarity, Dice(rotate(f(x)), f(rotate(x))), over
0°–90° in 5° steps (two empty masks agree: 1). Writes ``study_table.md``, ``study.csv``, ``equivariance_similarity.png`` and
``test_dice.png`` to ``--out-dir``.

Usage::

    python benchmarks/polyp_study.py --data-dir ~/data --download     # Kvasir-SEG fetched (46 MB) when missing
    python benchmarks/polyp_study.py --kvasir-dir ~/data/Kvasir-SEG --cvc-dir ~/data/CVC-ClinicDB --epochs 100

CVC-ClinicDB (612 frames) is not downloaded: its authors distribute it from the dataset's page
(https://polyp.grand-challenge.org/CVCClinicDB/); unpack it so that the folder holds ``Original/`` and
``Ground Truth/``, and pass it as ``--cvc-dir`` (or put it at ``<data-dir>/CVC-ClinicDB``). A dataset that is not
there is skipped with a message unless it was named explicitly. A run whose ``models/model.pt`` exists is
reused (``--retrain`` trains it again). The bundle trains on CUDA when there is a GPU; ``--eval-device cuda``
evaluates there too.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from polyp_comparison import DEFAULT_BUNDLE, equivariance_dice, load_bundle_run, rotated_dice  # noqa: E402

from monai_equivariant.networks.nets import count_parameters  # noqa: E402

STUDY_NETS = {"plain": "U-Net", "p4": "p4 U-Net", "se2": "SE(2,12) U-Net", "steerable": "steerable U-Net (C8)"}
"""The bundle's ``--network_name`` of each net of the study, and its label."""
STUDY_CHANNELS = (8, 16, 32, 64, 128)
"""The bundle's ``--network_channels`` (p4 fields; the other nets matched by the bundle's factory)."""
STUDY_ANGLES = tuple(float(a) for a in range(0, 91, 5))
"""The equivariance similarity is measured at these angles (0° to 90°, as in the study)."""
DATASETS = {"Kvasir-SEG": "Kvasir-SEG", "CVC-ClinicDB": "CVC-ClinicDB"}
"""Dataset name -> its folder's name under ``--data-dir``."""
CVC_SOURCE = ("CVC-ClinicDB is not downloaded by the package: get it from https://polyp.grand-challenge.org/"
              "CVCClinicDB/ and unpack it so that the folder holds Original/ and 'Ground Truth'/")


@dataclass
class StudyRun:
    """One trained net on one dataset, evaluated on its test split."""

    dataset: str
    net: str
    parameters: int
    train_s: float
    test_dice: float
    similarity: list[float] = field(default_factory=list)  # at STUDY_ANGLES


def resolve_datasets(args: argparse.Namespace) -> dict[str, Path]:
    """{dataset: folder} of the datasets to run; Kvasir-SEG downloaded with ``--download``. A folder named on the
    command line must exist (FileNotFoundError naming it); a default folder that is missing is skipped."""
    from monai_equivariant.data.download import download_kvasir_seg

    data_dir = Path(args.data_dir).expanduser()
    chosen = {"Kvasir-SEG": args.kvasir_dir, "CVC-ClinicDB": args.cvc_dir}
    found = {}
    for name in args.datasets:
        folder = Path(chosen[name]).expanduser() if chosen[name] else data_dir / DATASETS[name]
        if name == "Kvasir-SEG" and args.download and not folder.is_dir():
            folder = download_kvasir_seg(folder.parent)
        if folder.is_dir():
            found[name] = folder
            continue
        how = CVC_SOURCE if name == "CVC-ClinicDB" else (
            "run with --download (46 MB from https://datasets.simula.no/kvasir-seg/) or "
            "`python -m monai_equivariant.data.download kvasir-seg DIR`")
        if chosen[name]:
            raise FileNotFoundError(f"{name} folder {str(folder)!r} does not exist: {how}")
        print(f"skipping {name}: no folder {folder} ({how})", flush=True)
    if not found:
        raise FileNotFoundError(f"no dataset found under {data_dir} ({', '.join(args.datasets)}); see --help")
    return found


def bundle_overrides(dataset_dir: Path, net: str, args: argparse.Namespace) -> dict:
    """The overrides every bundle call of one run takes (training and evaluation alike)."""
    return {"dataset_dir": str(dataset_dir), "network_name": net, "network_channels": list(args.channels),
            "image_size": args.image_size}


def train(root: Path, overrides: dict, args: argparse.Namespace) -> float:
    """``python -m monai.bundle run`` of the polyp bundle's train.json into ``root`` (its log ``train.log``);
    returns the wall seconds, 0 when a trained ``models/model.pt`` is reused."""
    if (root / "models" / "model.pt").is_file() and not args.retrain:
        print(f"  reusing {root}/models/model.pt", flush=True)
        return 0.0
    root.mkdir(parents=True, exist_ok=True)
    configs = Path(args.bundle) / "configs"
    command = [sys.executable, "-W", "ignore", "-m", "monai.bundle", "run",
               "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
               "--config_file", str(configs / "train.json"), "--bundle_root", str(root),
               "--epochs", str(args.epochs), "--val_interval", str(args.val_interval), "--progress", "False"]
    for key, value in {**overrides, **json.loads(args.set)}.items():
        command += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    start = time.perf_counter()
    with open(root / "train.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = (root / "train.log").read_text().splitlines()[-30:]
        raise RuntimeError(f"training {root} failed (exit {done.returncode}); last lines of its log:\n"
                           + "\n".join(tail))
    return time.perf_counter() - start


def evaluate(dataset: str, net: str, root: Path, overrides: dict, args: argparse.Namespace,
             train_s: float) -> StudyRun:
    """Test Dice (0°) and the equivariance similarity over :data:`STUDY_ANGLES` on the run's test split."""
    run = load_bundle_run(STUDY_NETS[net], args.bundle, {"bundle_root": str(root), **overrides},
                          device=args.eval_device)
    dice = float(rotated_dice(run.predict, run.images, run.labels, [0.0])[0])
    similarity = equivariance_dice(run.predict, run.images, STUDY_ANGLES, ignore_empty=False)  # empty = empty
    return StudyRun(dataset, net, count_parameters(run.network), train_s, dice, [float(s) for s in similarity])


def write_csv(runs: Sequence[StudyRun], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "net", "parameters", "train_s", "test_dice"]
                        + [f"similarity_{a:g}" for a in STUDY_ANGLES])
        for r in runs:
            writer.writerow([r.dataset, r.net, r.parameters, f"{r.train_s:.1f}", f"{r.test_dice:.6f}"]
                            + [f"{s:.6f}" for s in r.similarity])


def format_table(runs: Sequence[StudyRun], args: argparse.Namespace) -> str:
    """Markdown: per dataset and net, parameters, test Dice, similarity at 45° and its mean and minimum."""
    at45 = STUDY_ANGLES.index(45.0)
    lines = [f"Polyp study: {args.epochs} epochs at {args.image_size}², network_channels {list(args.channels)}; "
             "similarity = Dice(rotate(f(x)), f(rotate(x))) on the test split, 0°–90° every 5°.", "",
             "| dataset | net | parameters | test Dice | similarity 45° | mean 0–90° | min 0–90° | train s |",
             "|" + "---|" * 8]
    for r in runs:
        s = np.asarray(r.similarity)
        lines.append(f"| {r.dataset} | {STUDY_NETS[r.net]} | {r.parameters:,} | {r.test_dice:.3f} | {s[at45]:.3f} "
                     f"| {s.mean():.3f} | {s.min():.3f} | {r.train_s:.0f} |")
    return "\n".join(lines)


def plot(runs: Sequence[StudyRun], out_dir: Path) -> dict[str, Path]:
    """The study's two figures: similarity over 0°–90° (one panel per dataset) and test Dice per net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in runs))
    nets = list(dict.fromkeys(r.net for r in runs))
    paths = {"similarity": out_dir / "equivariance_similarity.png", "dice": out_dir / "test_dice.png"}
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        for r in (r for r in runs if r.dataset == dataset):
            ax.plot(STUDY_ANGLES, r.similarity, "-o", markersize=3, label=STUDY_NETS[r.net])
        ax.set_title(dataset)
        ax.set_xlabel("rotation angle (°), measured every 5°")
        ax.set_xticks(range(0, 91, 15))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("Dice(rotate(f(x)), f(rotate(x)))")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["similarity"], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(nets) * len(datasets), 3.6))
    width = 0.8 / len(datasets)
    for i, dataset in enumerate(datasets):
        scores = {r.net: r.test_dice for r in runs if r.dataset == dataset}
        bars = ax.bar(np.arange(len(nets)) + i * width, [scores.get(n, np.nan) for n in nets], width, label=dataset)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(nets)) + width * (len(datasets) - 1) / 2, [STUDY_NETS[n] for n in nets])
    ax.set_ylabel("test Dice")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["dice"], dpi=110)
    plt.close(fig)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="~/data", help="folder holding Kvasir-SEG/ and CVC-ClinicDB/")
    parser.add_argument("--kvasir-dir", help="the Kvasir-SEG folder (images/, masks/), if not under --data-dir")
    parser.add_argument("--cvc-dir", help="the CVC-ClinicDB folder (Original/, Ground Truth/)")
    parser.add_argument("--download", action="store_true", help="fetch Kvasir-SEG when it is missing")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--nets", nargs="+", default=list(STUDY_NETS), choices=list(STUDY_NETS))
    parser.add_argument("--channels", type=int, nargs="+", default=list(STUDY_CHANNELS),
                        help="the bundle's --network_channels (p4 fields per level)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--val-interval", type=int, default=5)
    parser.add_argument("--set", default="{}", help='JSON of further bundle overrides, e.g. \'{"batch_size": 16}\'')
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    parser.add_argument("--out-dir", default="runs/polyp_study")
    parser.add_argument("--eval-device", default="cpu", help="where the test split is evaluated (cpu or cuda)")
    parser.add_argument("--retrain", action="store_true", help="train again even where models/model.pt exists")
    args = parser.parse_args(argv)
    for name in ("image_size", "epochs", "val_interval"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    if not isinstance(json.loads(args.set), dict):
        parser.error(f"--set must be a JSON object, got {args.set}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for dataset, folder in resolve_datasets(args).items():
        for net in args.nets:
            root = out_dir / dataset / net
            overrides = bundle_overrides(folder, net, args)
            print(f"{dataset} / {STUDY_NETS[net]}: training in {root}", flush=True)
            seconds = train(root, overrides, args)
            runs.append(evaluate(dataset, net, root, overrides, args, seconds))
            print(f"  test Dice {runs[-1].test_dice:.3f}, similarity at 45° "
                  f"{runs[-1].similarity[STUDY_ANGLES.index(45.0)]:.3f}", flush=True)
    paths = {"table": out_dir / "study_table.md", "csv": out_dir / "study.csv", **plot(runs, out_dir)}
    table = format_table(runs, args)
    paths["table"].write_text(table + "\n")
    write_csv(runs, paths["csv"])
    print(table)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
