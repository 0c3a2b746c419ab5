"""Real-data benchmark: the main job's rows trained on the BBBC038 nuclei sample, Dice on rotated held-out data.

The sample shipped with the package (``monai_equivariant/data/bbbc038_sample/``: one 512×512 fluorescence image
of nuclei and its labels, BBBC038v1 / Data Science Bowl 2018, CC0) is split by columns: the left half trains, the
right half (its two 256×256 quadrants) is the test set. Two data settings: random crops from the whole left
half, and a low-data one with crops from the top-left quadrant only. Every row is trained from scratch per seed
(Adam, DiceCE loss, random ``--crop``² crops, ``--batch`` per step) and evaluated by test Dice with the test
images and masks rotated by 0°…360° in 15° steps (bilinear / nearest, zero padding: the background is dark).

Rows (the main job's, ``scripts/main.sh``, plus the other equivariant U-Nets and the equal-FLOPs plain net):
P4UNet; P4UNet + rotation augmentation; the plain U-Net of equal parameters, without and with rotation
augmentation; plain + augmentation + p4 test-time ensemble (``GroupEnsembleInferer``, no retraining); the plain
U-Net of equal FLOPs (|G| = 4 times the parameters) + augmentation; P4MUNet, SE2UNet (N = 12) and SteerableUNet
(C8, escnn) of equal parameters. Rotation augmentation is the bundles' ``--augmentation rotate`` (uniform angle).

Usage::

    python benchmarks/nuclei_benchmark.py                      # the full run (benchmarks/results/nuclei_*)
    python benchmarks/nuclei_benchmark.py --quick --rows p4 plain --out-dir /tmp/nuclei   # seconds (tests)

Each training run uses one torch thread; ``--jobs`` runs go side by side (default 2, one per core).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import multiprocessing
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules reused below
from cost_table import _search_equal_params, forward_gflops, unet_plain  # noqa: E402
from polyp_comparison import CURVE_ANGLES, inference_ms, rotated_dice  # noqa: E402

from monai_equivariant.data import load_bbbc038_sample  # noqa: E402
from monai_equivariant.networks.nets import (  # noqa: E402
    P4MUNet,
    P4UNet,
    SE2UNet,
    count_parameters,
    matched_channels,
)

RESULTS = Path(__file__).resolve().parent / "results"
TABLE_ANGLES = (0.0, 45.0, 90.0)


@dataclass(frozen=True)
class Config:
    """What one full run is: the p4 fields per level every row is matched to, and the training protocol."""

    fields: tuple[int, ...] = (8, 16, 32, 64)  # ~490k parameters, as the issue measured
    steps: int = 300
    batch: int = 4
    crop: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)
    settings: tuple[str, ...] = ("left_half", "quadrant")


QUICK = Config(fields=(1, 2, 4), steps=3, batch=2, crop=16, seeds=(0,))

SETTINGS = {
    "left_half": "crops from the left half (256×512 px)",
    "quadrant": "low data: crops from the top-left quadrant only (256×256 px)",
}


# --------------------------------------------------------------------------------------------------- networks
def steerable_unet(channels: Sequence[int]) -> nn.Module:
    """SteerableUNet (escnn) of regular C8 fields, one input and one output channel."""
    from monai_equivariant.networks.nets import SteerableUNet

    return SteerableUNet(2, 1, 1, tuple(channels), num_rotations=8)


plain_unet = unet_plain(1, 1)
"""The plain U-Net (GroupUNet of the trivial group) of given channels, one input and one output channel."""


def network_channels(fields: Sequence[int], nets: Sequence[str] = ("p4", "plain", "plain_flops", "p4m", "se2",
                                                                   "steerable")) -> dict[str, tuple[int, ...]]:
    """Channels of each network in ``nets`` (keys of :data:`BUILDERS`), matched to the P4UNet of ``fields``: equal
    parameters (equal FLOPs for ``plain_flops``); SteerableUNet's basis has no |G|·C² rule, so its fields are
    searched (the closest count; cost_table's search)."""
    fields = tuple(fields)
    rules = {"plain": ("trivial", "params"), "plain_flops": ("trivial", "flops"),
             "p4m": ("p4m", "params"), "se2": ("se2_12", "params")}
    channels = {}
    for net in nets:
        if net == "p4":
            channels[net] = fields
        elif net == "steerable":
            target = count_parameters(P4UNet(2, 1, 1, fields))
            start = matched_channels(fields, "p4", "se2_8", 2)
            channels[net] = _search_equal_params(steerable_unet, start, target)
        else:
            group, by = rules[net]
            channels[net] = matched_channels(fields, "p4", group, 2, by=by)
    return channels


BUILDERS: dict[str, Callable[[Sequence[int]], nn.Module]] = {
    "p4": lambda ch: P4UNet(2, 1, 1, tuple(ch)),
    "plain": plain_unet,
    "plain_flops": plain_unet,
    "p4m": lambda ch: P4MUNet(2, 1, 1, tuple(ch)),
    "se2": lambda ch: SE2UNet(2, 1, 1, tuple(ch), num_rotations=12),
    "steerable": steerable_unet,
}


@dataclass(frozen=True)
class Training:
    """One trained network: which architecture (a key of :data:`BUILDERS`) and whether to augment."""

    net: str
    augment: bool


@dataclass(frozen=True)
class Row:
    label: str
    training: str  # key of TRAININGS
    ensemble: bool = False  # p4 test-time ensemble around the trained net


TRAININGS = {
    "p4": Training("p4", False),
    "p4_aug": Training("p4", True),
    "plain": Training("plain", False),
    "plain_aug": Training("plain", True),
    "plain_flops_aug": Training("plain_flops", True),
    "p4m": Training("p4m", False),
    "se2": Training("se2", False),
    "steerable": Training("steerable", False),
}
ROWS = {
    "p4": Row("P4UNet", "p4"),
    "p4_aug": Row("P4UNet + rotation aug.", "p4_aug"),
    "plain": Row("U-Net (plain), equal params", "plain"),
    "plain_aug": Row("U-Net + rotation aug., equal params", "plain_aug"),
    "plain_aug_ensemble": Row("U-Net + rotation aug. + p4 ensemble", "plain_aug", ensemble=True),
    "plain_flops_aug": Row("U-Net + rotation aug., equal FLOPs", "plain_flops_aug"),
    "p4m": Row("P4MUNet", "p4m"),
    "se2": Row("SE2UNet (N=12)", "se2"),
    "steerable": Row("SteerableUNet (C8)", "steerable"),
}
_COST_ORDER = ("se2", "p4m", "p4", "p4_aug", "plain_flops_aug", "steerable", "plain", "plain_aug")
"""Slowest trainings first, so the process pool ends evenly."""


class Ensemble(nn.Module):
    """The network under the p4 test-time ensemble (mean of g⁻¹·f(g·x)), as a module (for the FLOP count)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        from monai_equivariant.inferers import GroupEnsembleInferer

        self.network = network
        self.inferer = GroupEnsembleInferer("p4")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inferer(x, self.network)


# ------------------------------------------------------------------------------------------------------- data
def split(image: torch.Tensor, foreground: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The training regions {setting: (image, mask)} ((1, h, w) each) and ``"test"``: the right half's two
    quadrants stacked ((2, 1, H/2, W/2) each). Image and mask (1, H, W), H = W even."""
    _, height, width = image.shape
    if height != width or height % 2:
        raise ValueError(f"the benchmark splits a square image of even side into quadrants; got {height}x{width}")
    half = width // 2
    test = [(image[:, r:r + half, half:], foreground[:, r:r + half, half:]) for r in (0, half)]
    return {
        "left_half": (image[:, :, :half], foreground[:, :, :half]),
        "quadrant": (image[:, :half, :half], foreground[:, :half, :half]),
        "test": (torch.stack([t[0] for t in test]), torch.stack([t[1] for t in test])),
    }


def crop_sampler(region: tuple[torch.Tensor, torch.Tensor], config: Config, augment: bool, seed: int):
    """A function returning one training batch ((batch, 1, crop, crop) image, mask) per call: random crops of the
    region (MONAI ``RandSpatialCropSamplesd``), rotated by a uniform random angle when ``augment`` (the bundles'
    ``--augmentation rotate``). The crops of a seed are the same for every row."""
    from monai.transforms import Compose, RandSpatialCropSamplesd

    from monai_equivariant.bundle import augmentation

    keys = ["image", "label"]
    crops = RandSpatialCropSamplesd(keys, roi_size=config.crop, num_samples=config.batch, random_size=False)
    crops.set_random_state(seed)
    rotations = Compose(augmentation("rotate" if augment else "none", keys, 2, "p4", ["bilinear", "nearest"]))
    rotations.set_random_state(seed + 1000)
    data = {"image": region[0], "label": region[1]}

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        samples = [rotations(sample) for sample in crops(data)]
        return tuple(torch.stack([torch.as_tensor(s[k]).float() for s in samples]) for k in keys)

    return batch


# ------------------------------------------------------------------------------------------- train, evaluate
def train(net: nn.Module, sample: Callable[[], tuple[torch.Tensor, torch.Tensor]], config: Config) -> float:
    """``config.steps`` Adam steps of the DiceCE loss (sigmoid) on sampled batches; returns the wall seconds."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    net.train()
    start = time.perf_counter()
    for _ in range(config.steps):
        image, label = sample()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(image), label).backward()
        optimizer.step()
    return time.perf_counter() - start


@dataclass
class Result:
    """One row, one setting, one seed."""

    row: str
    setting: str
    seed: int
    train_s: float
    inference_ms: float
    dice: list[float] = field(default_factory=list)  # at CURVE_ANGLES


def run_training(task: tuple[str, int, str, Config, dict[str, tuple[int, ...]], tuple[str, ...], int]) -> list[Result]:
    """Train one network (setting, seed, training key) and evaluate every requested row built on it."""
    setting, seed, key, config, channels, rows, threads = task
    torch.set_num_threads(threads)
    regions = split(*load_bbbc038_sample())
    test_images, test_labels = regions["test"]
    spec = TRAININGS[key]
    torch.manual_seed(seed)
    net = BUILDERS[spec.net](channels[spec.net])
    seconds = train(net, crop_sampler(regions[setting], config, spec.augment, seed), config)
    net.eval()
    results = []
    for name in rows:
        row = ROWS[name]
        if row.training != key:
            continue
        model = Ensemble(net) if row.ensemble else net
        with torch.no_grad():
            dice = rotated_dice(model, test_images, test_labels, CURVE_ANGLES)
            ms = inference_ms(model, test_images, repeats=1)
        results.append(Result(name, setting, seed, seconds, ms, [float(d) for d in dice]))
    return results


def describe_rows(rows: Sequence[str], channels: dict[str, tuple[int, ...]], side: int) -> dict[str, dict]:
    """{row: {"channels", "params", "gflops"}}: counted once (seed 0), GFLOPs of one (1, 1, side, side) image."""
    described = {}
    x = torch.zeros(1, 1, side, side)
    for name in rows:
        row = ROWS[name]
        net_key = TRAININGS[row.training].net
        torch.manual_seed(0)
        net = BUILDERS[net_key](channels[net_key])
        model = Ensemble(net) if row.ensemble else net
        described[name] = {"channels": channels[net_key], "params": count_parameters(net),
                           "gflops": forward_gflops(model, x)}
    return described


def run(config: Config, rows: Sequence[str], jobs: int = 2, threads: int = 1) -> list[Result]:
    """Every (setting, seed, training) the requested rows need, ``jobs`` at a time (forked processes)."""
    trainings = sorted({ROWS[r].training for r in rows}, key=_COST_ORDER.index)
    channels = network_channels(config.fields, sorted({TRAININGS[t].net for t in trainings}))
    tasks = [(s, seed, key, config, channels, tuple(rows), threads)
             for key in trainings for s in config.settings for seed in config.seeds]
    if jobs <= 1:
        batches = [run_training(t) for t in tasks]
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            batches = list(pool.map(run_training, tasks))
    return [result for batch in batches for result in batch]


# ----------------------------------------------------------------------------------------------------- report
def _spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    return float(np.mean(values)), (float(statistics.stdev(values)) if len(values) > 1 else 0.0)


def summarise(results: Sequence[Result], setting: str, rows: Sequence[str]) -> list[dict]:
    """Per row of ``setting``: Dice at the table angles, mean over 0–360°, the worst angle of the mean curve
    (each mean ± s.d. over seeds), train seconds and inference ms (means)."""
    at = {angle: i for i, angle in enumerate(CURVE_ANGLES)}
    summary = []
    for name in rows:
        mine = [r for r in results if r.row == name and r.setting == setting]
        curves = np.array([r.dice for r in mine])  # (seeds, angles)
        mean_curve = curves.mean(axis=0)
        worst = int(np.argmin(mean_curve))
        summary.append({
            "row": name,
            "seeds": len(mine),
            **{f"dice_{a:g}": _spread(curves[:, at[a]]) for a in TABLE_ANGLES},
            "dice_mean": _spread(curves[:, :-1].mean(axis=1)),  # 0°..345° (360° repeats 0°)
            "dice_worst": _spread(curves[:, worst]),
            "worst_angle": CURVE_ANGLES[worst],
            "mean_curve": mean_curve,
            "min_curve": curves.min(axis=0),
            "max_curve": curves.max(axis=0),
            "train_s": float(np.mean([r.train_s for r in mine])),
            "inference_ms": float(np.mean([r.inference_ms for r in mine])),
        })
    return summary


def format_table(summary: Sequence[dict], described: dict[str, dict], title: str) -> str:
    """A Markdown table of :func:`summarise` rows."""
    fmt = lambda v: f"{v[0]:.3f} ± {v[1]:.3f}"  # noqa: E731
    lines = [
        f"**{title}** ({summary[0]['seeds']} seeds, mean ± s.d.)" if summary else title,
        "",
        "| model | channels | params | GFLOPs/256² | Dice 0° | 45° | 90° | mean 0–345° | worst angle | train s "
        "| inference ms/256² |",
        "|" + "---|" * 11,
    ]
    for s in summary:
        d = described[s["row"]]
        lines.append(
            f"| {ROWS[s['row']].label} | ({', '.join(map(str, d['channels']))}) | {d['params']:,} | {d['gflops']:.3f} "
            f"| {fmt(s['dice_0'])} | {fmt(s['dice_45'])} | {fmt(s['dice_90'])} | {fmt(s['dice_mean'])} "
            f"| {fmt(s['dice_worst'])} at {s['worst_angle']:g}° | {s['train_s']:.0f} | {s['inference_ms']:.0f} |"
        )
    return "\n".join(lines)


def write_runs(results: Sequence[Result], path: Path) -> None:
    """Every (row, setting, seed): train seconds, inference ms and the Dice curve, one column per angle."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "setting", "seed", "train_s", "inference_ms"] + [f"dice_{a:g}" for a in CURVE_ANGLES])
        for r in results:
            writer.writerow([r.row, r.setting, r.seed, f"{r.train_s:.2f}", f"{r.inference_ms:.2f}"]
                            + [f"{d:.6f}" for d in r.dice])


def plot(summaries: dict[str, list[dict]], path: Path, config: Config) -> Path:
    """Test Dice vs rotation angle: one panel per setting, one line per row (mean over seeds, band = min–max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(6.5 * len(summaries), 4.6), squeeze=False, sharey=True)
    styles = ["-o", "-s", "--o", "--s", ":^", "-.v", "-D", "--x", ":+"]
    for ax, (setting, summary) in zip(axes[0], summaries.items()):
        for i, s in enumerate(summary):
            line, = ax.plot(CURVE_ANGLES, s["mean_curve"], styles[i % len(styles)], markersize=3, linewidth=1.2,
                            label=ROWS[s["row"]].label)
            if s["seeds"] > 1:
                ax.fill_between(CURVE_ANGLES, s["min_curve"], s["max_curve"], color=line.get_color(), alpha=0.12)
        ax.set_xticks(range(0, 361, 45))
        ax.set_xlim(0, 360)
        ax.set_xlabel("rotation of the test images (degrees), measured every 15°")
        ax.set_title(SETTINGS[setting], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test Dice (right half, rotated)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"BBBC038 nuclei: {config.steps} Adam steps on {config.crop}² crops, {len(config.seeds)} seed(s): line = mean, "
        "band = min–max", fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: Sequence[Result], config: Config, rows: Sequence[str], out_dir: Path, command: str,
                 wall_s: float, jobs: int) -> dict[str, Path]:
    """``nuclei_table.md``, ``nuclei_runs.csv`` and ``nuclei_dice_vs_angle.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    channels = network_channels(config.fields, sorted({TRAININGS[ROWS[r].training].net for r in rows}))
    described = describe_rows(rows, channels, 256)
    summaries = {setting: summarise(results, setting, rows) for setting in config.settings}
    paths = {"table": out_dir / "nuclei_table.md", "runs": out_dir / "nuclei_runs.csv",
             "figure": out_dir / "nuclei_dice_vs_angle.png"}
    header = (
        f"BBBC038 nuclei sample (one 512×512 image): train on crops of the left half, test Dice on the right half's "
        f"two 256² quadrants rotated 0°–360° (15° steps). {config.steps} Adam steps (lr {config.lr:g}, DiceCE), batch "
        f"{config.batch} of {config.crop}² crops; P4UNet fields {config.fields}, every other row matched to it at "
        f"equal parameters, one plain row at equal FLOPs. Train s: wall seconds of one training run (mean over seeds), "
        f"1 torch thread, {jobs} run(s) side by side on a shared 2-core CPU machine (other jobs running): compare them "
        f"within this table only. Inference: the two test quadrants, ms per 256² image.\n\n"
        f"Command: `{command}` — wall time {wall_s / 60:.1f} min.\n"
    )
    tables = [format_table(summaries[s], described, SETTINGS[s]) for s in config.settings]
    paths["table"].write_text(header + "\n" + "\n\n".join(tables) + "\n")
    write_runs(results, paths["runs"])
    plot(summaries, paths["figure"], config)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="rows to run")
    parser.add_argument("--fields", type=int, nargs="+", help=f"P4UNet fields per level (default {Config.fields})")
    parser.add_argument("--steps", type=int, help=f"Adam steps per run (default {Config.steps})")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"seeds (default {Config.seeds})")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="data settings (default both)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs side by side (processes)")
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny setting for tests: fields {QUICK.fields}, {QUICK.steps} steps, {QUICK.crop}² crops, "
                             f"seed {QUICK.seeds}, one process")
    args = parser.parse_args(argv)
    for name in ("fields", "steps"):
        value = getattr(args, name)
        if value is not None and (min(value) if isinstance(value, list) else value) < 1:
            parser.error(f"--{name} must be positive, got {value}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = QUICK if args.quick else Config()
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in
                 dict(fields=args.fields, steps=args.steps, seeds=args.seeds, settings=args.settings).items()
                 if v is not None}
    config = Config(**{**asdict(base), **overrides})
    jobs = 1 if args.quick else args.jobs
    results = run(config, args.rows, jobs=jobs)
    command = "python benchmarks/nuclei_benchmark.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:]))
    paths = write_report(results, config, args.rows, Path(args.out_dir), command.strip(), time.perf_counter() - start,
                         jobs)
    print(paths["table"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {(time.perf_counter() - start) / 60:.1f} min")
    return paths


if __name__ == "__main__":
    main()
