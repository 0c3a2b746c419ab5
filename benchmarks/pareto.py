"""Accuracy per unit of training time: the augmented plain net, the full group net and the separable group net,
each at several widths, on three tasks; score against measured training time, with a reading at equal time.

Tasks (every training loop and score is reused from the benchmark of that task):

- ``polyp``: the built-in synthetic endoscopy frames (:func:`monai_equivariant.data.synthetic_polyp`, as the polyp
  bundle writes them), U-Nets of 3 → 1 channels, test Dice mean over the test frames rotated 0°…330° (30° steps);
- ``nuclei``: the real BBBC038 nuclei sample: ``benchmarks/nuclei_benchmark.py``'s split (train on crops of the left
  half), sampler, training loop and rotated test Dice on the right half's two 256² quadrants;
- ``nodule``: the synthetic 3D nodule task of ``benchmarks/nodule_comparison.py`` (its training loop with precise
  batch norm, its AUC): GroupCNN classifiers, test AUC on patches at random 3D orientations.

Families: ``plain_aug`` (the plain net, ``group="trivial"``, with rotation augmentation: a uniform random angle
in 2D, the bundles' ``--augmentation rotate``; a random cube rotation, ``RandGroupElementd("O")``, in 3D as
nodule_comparison does), ``group`` (the full group net: p4 in 2D, O in 3D, no augmentation) and ``separable``
(the same with ``separable=True``). A width is the first level's channels (plain) or fields (group nets); the
levels double it. Train seconds are the CPU seconds of the training process (``time.process_time``) with one
torch thread — what the run takes on an idle core, and not inflated by other jobs on a shared machine; wall
seconds are in the CSV too.

The reading: each family's frontier (its points sorted by train time, keeping those that score above every
cheaper one) is interpolated linearly in log-time (flat after its best point); over the time range the plain
family and the equivariant nets (full and separable pooled: the best equivariant choice at each time) share,
is the equivariant frontier at least the plain one?

Usage::

    python benchmarks/pareto.py                       # the three tasks (benchmarks/results/pareto_*), see --help
    python benchmarks/pareto.py --tasks polyp nuclei --jobs 2
    python benchmarks/pareto.py --quick --out-dir /tmp/pareto   # seconds (tests)
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules reused below
import nodule_comparison  # noqa: E402
import nuclei_benchmark  # noqa: E402
from cost_table import forward_gflops  # noqa: E402
from polyp_comparison import rotated_dice  # noqa: E402

from monai_equivariant.networks.nets import GroupCNN, GroupUNet, count_parameters  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FAMILIES = {
    "plain_aug": "plain + rotation aug.",
    "group": "full group net",
    "separable": "separable group net",
}
EQUIVARIANT = ("group", "separable")


@dataclass(frozen=True)
class Task:
    """One task's protocol: data sizes, training, the widths of every family and the test angles (2D)."""

    name: str
    group: str  # the equivariant families' group
    score: str  # "Dice" or "AUC"
    widths: dict[str, tuple[int, ...]]  # family -> first-level widths
    levels: int  # channels of a width w: (w, 2w, 4w, ...)
    steps: int
    batch: int
    lr: float
    size: int  # polyp frame side / nuclei crop side / nodule patch side
    train_samples: int = 0  # polyp frames / nodule patches (nuclei: crops of the left half)
    test_samples: int = 0
    angles: tuple[float, ...] = tuple(float(a) for a in range(0, 360, 30))  # 2D test rotations
    seeds: tuple[int, ...] = (0,)

    def channels(self, width: int) -> tuple[int, ...]:
        return tuple(width * 2**i for i in range(self.levels))

    def describe(self) -> str:
        data = {
            "polyp": f"{self.train_samples} synthetic training frames of {self.size}², {self.test_samples} test "
                     "frames",
            "nuclei": f"{self.size}² crops of the BBBC038 sample's left half, its right half's two 256² quadrants "
                      "as test",
            "nodule": f"{self.train_samples} synthetic training patches of {self.size}³, {self.test_samples} test "
                      "patches",
        }[self.name]
        test = (f"test {self.score} mean over the test images rotated by {len(self.angles)} angles "
                f"({self.angles[0]:g}°…{self.angles[-1]:g}°)" if self.name != "nodule"
                else "test AUC on patches at random 3D orientations")
        return (f"{data}; {self.steps} Adam steps (lr {self.lr:g}) of batch {self.batch}; {test}; "
                f"{len(self.seeds)} seed(s)")


U_NET_WIDTHS = {"plain_aug": (4, 8, 16, 24), "group": (2, 4, 6), "separable": (4, 8, 12)}
TASKS = {
    "polyp": Task("polyp", "p4", "Dice", U_NET_WIDTHS, levels=4, steps=150, batch=4, lr=1e-3, size=64,
                  train_samples=64, test_samples=16),
    "nuclei": Task("nuclei", "p4", "Dice", U_NET_WIDTHS, levels=4, steps=150, batch=4, lr=1e-3, size=64),
    "nodule": Task("nodule", "O", "AUC", {"plain_aug": (6, 12, 24, 48), "group": (1, 2, 3), "separable": (1, 2, 3)},
                   levels=2, steps=60, batch=8, lr=3e-3, size=16, train_samples=64, test_samples=200),
}
"""The full run's settings: sized so that the three tasks finish in about 25 minutes on a shared 2-core machine
(two one-thread runs side by side). Small widths and few steps: the nets are far from converged."""

_QUICK_2D = dict(widths={"plain_aug": (2, 4, 8), "group": (1, 2, 3), "separable": (1, 2, 4)}, levels=2, steps=2,
                 batch=2, angles=(0.0, 45.0))
QUICK = {
    "polyp": replace(TASKS["polyp"], size=16, train_samples=4, test_samples=2, **_QUICK_2D),
    "nuclei": replace(TASKS["nuclei"], size=16, **_QUICK_2D),
    "nodule": replace(TASKS["nodule"], widths={"plain_aug": (2, 4, 6), "group": (1, 2, 3), "separable": (1, 2, 3)},
                      levels=1, steps=2, batch=4, size=8, train_samples=8, test_samples=8),
}
"""Tiny settings for the tests: every code path in seconds (scores are meaningless)."""


# --------------------------------------------------------------------------------------------------- networks
def build(task: Task, family: str, width: int) -> nn.Module:
    """The net of ``family`` at ``width`` for ``task``: a GroupUNet (2D, segmentation) or GroupCNN (3D, two
    classes); the plain family is the same class with ``group="trivial"``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    group = "trivial" if family == "plain_aug" else task.group
    separable = family == "separable"
    channels = task.channels(width)
    if task.name == "nodule":
        return GroupCNN(3, 1, 2, channels, group=group, separable=separable)
    in_channels = 3 if task.name == "polyp" else 1
    return GroupUNet(2, in_channels, 1, channels, group=group, separable=separable)


# ------------------------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=4)
def polyp_data(size: int, train_samples: int, test_samples: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train", "test"}: (images (N, 3, size, size), masks (N, 1, size, size)) of synthetic polyp frames (the
    bundle's generator; training and test frames from different seeds)."""
    from monai_equivariant.data import synthetic_polyp

    def frames(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        pairs = [synthetic_polyp(rng, size) for _ in range(count)]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))

    return {"train": frames(train_samples, 0), "test": frames(test_samples, 10_000)}


def frame_sampler(images: torch.Tensor, labels: torch.Tensor, batch: int, augment: bool,
                  seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A function returning one training batch ((batch, C, H, W) images, (batch, 1, H, W) masks) per call: frames
    drawn at random, each rotated by a uniform random angle when ``augment`` (the bundles' ``--augmentation
    rotate``, as ``nuclei_benchmark.crop_sampler``). The frames of a seed are the same for every family."""
    from monai.transforms import Compose

    from monai_equivariant.bundle import augmentation

    keys = ["image", "label"]
    rotations = Compose(augmentation("rotate" if augment else "none", keys, 2, "p4", ["bilinear", "nearest"]))
    rotations.set_random_state(seed + 1000)
    generator = torch.Generator().manual_seed(seed)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(len(images), (batch,), generator=generator).tolist()
        samples = [rotations({"image": images[i], "label": labels[i]}) for i in picks]
        return tuple(torch.stack([torch.as_tensor(s[k]).float() for s in samples]) for k in keys)

    return sample


# ---------------------------------------------------------------------------------------------- one training
@dataclass(frozen=True)
class Run:
    task: Task
    family: str
    width: int
    seed: int


def _segmentation(run: Run, net: nn.Module) -> tuple[float, float, list[float]]:
    """Train a U-Net of the polyp or nuclei task; (CPU s, wall s, Dice per test angle)."""
    task = run.task
    config = nuclei_benchmark.Config(steps=task.steps, batch=task.batch, crop=task.size, lr=task.lr)
    augment = run.family == "plain_aug"
    if task.name == "polyp":
        data = polyp_data(task.size, task.train_samples, task.test_samples)
        sample = frame_sampler(*data["train"], task.batch, augment, run.seed)
        test = data["test"]
    else:
        regions = nuclei_benchmark.split(*nuclei_benchmark.load_bbbc038_sample())
        sample = nuclei_benchmark.crop_sampler(regions["left_half"], config, augment, run.seed)
        test = regions["test"]
    cpu = time.process_time()
    wall = nuclei_benchmark.train(net, sample, config)
    cpu = time.process_time() - cpu
    net.eval()
    return cpu, wall, [float(d) for d in rotated_dice(net, *test, task.angles)]


def _classification(run: Run) -> tuple[nn.Module, float, float, list[float]]:
    """Train a GroupCNN of the nodule task by nodule_comparison's loop; (net, CPU s, wall s, [test AUC])."""
    task = run.task
    group = "trivial" if run.family == "plain_aug" else task.group
    samples = _nodules(task.train_samples, task.size, run.seed)
    cpu = time.process_time()
    net, wall = nodule_comparison.train(group, task.channels(run.width), samples, "O" if run.family == "plain_aug"
                                        else None, task.steps, task.batch, task.lr, run.seed,
                                        separable=run.family == "separable")
    cpu = time.process_time() - cpu
    from monai.inferers import SimpleInferer

    images, labels = nodule_comparison._stack(_nodules(task.test_samples, task.size, 10_000))
    return net, cpu, wall, [float(nodule_comparison.test(net, SimpleInferer(), images, labels)["auc"])]


@functools.lru_cache(maxsize=4)
def _nodules(count: int, size: int, seed: int) -> list[dict]:
    from monai_equivariant.data import synthetic_nodules

    return synthetic_nodules(count, size=size, seed=seed)


def run_one(run: Run) -> dict:
    """Train and test one (task, family, width, seed) with one torch thread; the CSV row."""
    torch.set_num_threads(1)
    torch.manual_seed(run.seed)
    if run.task.name == "nodule":
        net, cpu, wall, scores = _classification(run)
    else:
        net = build(run.task, run.family, run.width)
        cpu, wall, scores = _segmentation(run, net)
    return {"task": run.task.name, "family": run.family, "width": run.width,
            "channels": "-".join(map(str, run.task.channels(run.width))), "params": count_parameters(net),
            "steps": run.task.steps, "seed": run.seed, "train_s": round(cpu, 3), "train_wall_s": round(wall, 3),
            "score": float(np.mean(scores)), "score_worst": float(np.min(scores))}


def gflops(task: Task, family: str, width: int) -> float:
    """Forward GFLOPs of one test-sized input (a 64² frame, a 256² quadrant, a patch) in eval mode."""
    side = 256 if task.name == "nuclei" and task.size >= 64 else task.size
    shape = (1, 1) + (side,) * 3 if task.name == "nodule" else (1, 3 if task.name == "polyp" else 1, side, side)
    torch.manual_seed(0)
    return forward_gflops(build(task, family, width), torch.zeros(shape))


def task_gflops(task: Task) -> dict[tuple[str, int], float]:
    """{(family, width): :func:`gflops`} of every net of ``task``."""
    return {(f, w): gflops(task, f, w) for f in FAMILIES for w in task.widths[f]}


def plan(tasks: Sequence[Task], flops: dict[str, dict[tuple[str, int], float]]) -> list[Run]:
    """Every run of ``tasks``, task by task in the given order, within a task the most expensive first (forward
    FLOPs × steps × batch, ``flops[task]`` of :func:`task_gflops`), so a pool ends each task evenly."""
    runs = []
    for t in tasks:
        mine = [Run(t, f, w, s) for f in FAMILIES for w in t.widths[f] for s in t.seeds]
        runs += sorted(mine, key=lambda r: -flops[t.name][r.family, r.width])
    return runs


def run_all(runs: Sequence[Run], jobs: int, done: Callable[[str, list[dict]], None]) -> list[dict]:
    """:func:`run_one` of every run, ``jobs`` at a time (forked processes; in this process when ``jobs`` ≤ 1);
    ``done(task, rows)`` is called as soon as every run of a task has finished."""
    left = {name: sum(r.task.name == name for r in runs) for name in {r.task.name for r in runs}}
    rows: list[dict] = []

    def collect(row: dict) -> None:
        rows.append(_report(row))
        left[row["task"]] -= 1
        if not left[row["task"]]:
            done(row["task"], [r for r in rows if r["task"] == row["task"]])

    if jobs <= 1:
        for run in runs:
            collect(run_one(run))
        return rows
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        for future in as_completed([pool.submit(run_one, run) for run in runs]):
            collect(future.result())
    return rows


def _report(row: dict) -> dict:
    print(f"  {row['task']:6s} {row['family']:9s} width {row['width']:3d} seed {row['seed']} params "
          f"{row['params']:>9,} train {row['train_s']:7.1f} CPU s ({row['train_wall_s']:.1f} wall) score "
          f"{row['score']:.3f}", flush=True)
    return row


# ---------------------------------------------------------------------------------------------------- reading
@dataclass
class Points:
    """One family's measured points: mean train seconds and mean score per width (over seeds)."""

    widths: list[int]
    seconds: list[float]
    scores: list[float]
    spread: list[float] = field(default_factory=list)  # score s.d. over seeds (0 for one seed)


def family_points(rows: Sequence[dict]) -> dict[str, Points]:
    """{family: Points} from CSV rows of one task (seeds averaged)."""
    points = {}
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        widths = sorted({int(r["width"]) for r in mine})
        if not widths:
            continue
        by_width = [[r for r in mine if int(r["width"]) == w] for w in widths]
        points[family] = Points(
            widths,
            [float(np.mean([float(r["train_s"]) for r in rs])) for rs in by_width],
            [float(np.mean([float(r["score"]) for r in rs])) for rs in by_width],
            [float(np.std([float(r["score"]) for r in rs], ddof=1)) if len(rs) > 1 else 0.0 for rs in by_width],
        )
    return points


def frontier(seconds: Sequence[float], scores: Sequence[float]) -> list[tuple[float, float]]:
    """The points (seconds, score) that score above every cheaper point, by increasing time."""
    best, kept = -math.inf, []
    for t, s in sorted(zip(seconds, scores)):
        if s > best:
            kept.append((float(t), float(s)))
            best = s
    return kept


def frontier_at(front: Sequence[tuple[float, float]], t: np.ndarray) -> np.ndarray:
    """The frontier's score at times ``t`` (within the family's range): linear in log-time between frontier
    points, flat after the last one."""
    times = np.log([p[0] for p in front])
    return np.interp(np.log(t), times, [p[1] for p in front])


def compare(plain: Points, equivariant: Sequence[Points], samples: int = 200) -> dict | None:
    """The equivariant frontier (all points of ``equivariant`` pooled) minus the plain one, over the train times
    both cover (log-spaced samples); None when the ranges do not overlap.

    Returns {"range": (lo, hi) s, "share": fraction of the range where equivariant ≥ plain, "mean", "min",
    "max": the difference, "worst_at": the time of the minimum}."""
    seconds = [t for p in equivariant for t in p.seconds]
    scores = [s for p in equivariant for s in p.scores]
    lo, hi = max(min(plain.seconds), min(seconds)), min(max(plain.seconds), max(seconds))
    if lo > hi:
        return None
    t = np.geomspace(lo, hi, samples) if hi > lo else np.array([lo])
    diff = frontier_at(frontier(seconds, scores), t) - frontier_at(frontier(plain.seconds, plain.scores), t)
    return {"range": (lo, hi), "share": float(np.mean(diff >= 0)), "mean": float(diff.mean()),
            "min": float(diff.min()), "max": float(diff.max()), "worst_at": float(t[int(np.argmin(diff))])}


def reading(points: dict[str, Points], score: str) -> str:
    """One line from the data: at equal training time, does the equivariant net (full or separable) score at
    least the augmented plain net's? Then the same for each equivariant family alone."""
    if "plain_aug" not in points or not any(f in points for f in EQUIVARIANT):
        return "Reading: needs the plain family and at least one equivariant family."
    parts = []
    for label, families in (("the equivariant nets (full or separable)", EQUIVARIANT), ("full", ("group",)),
                            ("separable", ("separable",))):
        result = compare(points["plain_aug"], [points[f] for f in families if f in points]) \
            if any(f in points for f in families) else None
        if result is None:
            parts.append(f"{label}: no train time in common with the plain family")
            continue
        lo, hi = result["range"]
        verdict = ("yes" if result["share"] == 1.0 else "no" if result["share"] == 0.0
                   else f"partly ({100 * result['share']:.0f} % of the range)")
        parts.append(f"{label}: {verdict} over {lo:.0f}–{hi:.0f} s (difference {result['mean']:+.3f} on average, "
                     f"{result['min']:+.3f} at worst, at {result['worst_at']:.0f} s)")
    head, *rest = parts
    return (f"Reading (computed from the points above): at equal training time, do {head.split(':')[0]} score at "
            f"least the augmented plain net's {score}? {head.split(': ', 1)[1]}. Alone — " + "; ".join(rest) + ".")


# ----------------------------------------------------------------------------------------------------- report
def write_csv(rows: Sequence[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(task: Task, rows: Sequence[dict], flops: dict[tuple[str, int], float]) -> str:
    """Markdown: one row per (family, width), seeds averaged, the frontier points marked; then the reading."""
    points = family_points(rows)
    seeds = len({r["seed"] for r in rows})
    lines = [f"| family | {task.group} fields / plain channels per level | params | GFLOPs/image | train CPU s "
             f"| test {task.score}{' (mean ± s.d.)' if seeds > 1 else ''} | on the frontier |",
             "|---|---|---|---|---|---|---|"]
    for family, p in points.items():
        front = set(frontier(p.seconds, p.scores))
        for i, width in enumerate(p.widths):
            mine = next(r for r in rows if r["family"] == family and int(r["width"]) == width)
            score = f"{p.scores[i]:.3f}" + (f" ± {p.spread[i]:.3f}" if seeds > 1 else "")
            on = "yes" if (p.seconds[i], p.scores[i]) in front else ""
            lines.append(f"| {FAMILIES[family]} | {mine['channels']} | {int(mine['params']):,} "
                         f"| {flops[family, width]:.3f} | {p.seconds[i]:.1f} | {score} | {on} |")
    return "\n".join(lines) + "\n\n" + reading(points, task.score)


def plot(task: Task, rows: Sequence[dict], path: Path) -> Path:
    """Test score vs train CPU seconds (log axis): one line per family, each point labelled by its width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for (family, p), style in zip(family_points(rows).items(), ("-o", "-s", "-^")):
        order = np.argsort(p.seconds)
        x, y = np.asarray(p.seconds)[order], np.asarray(p.scores)[order]
        line, = ax.plot(x, y, style, label=FAMILIES[family], markersize=5)
        if any(p.spread):
            ax.errorbar(x, y, yerr=np.asarray(p.spread)[order], fmt="none", ecolor=line.get_color(), capsize=2)
        for i in order:
            ax.annotate(str(p.widths[i]), (p.seconds[i], p.scores[i]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
    ax.set_xscale("log")
    seconds = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(seconds)
    ax.xaxis.set_minor_formatter(seconds)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("training time (CPU seconds, one thread)")
    ax.set_ylabel(f"test {task.score}" + (" (mean over rotated test images)" if task.name != "nodule" else
                                          " (random 3D orientations)"))
    ax.set_title(f"{task.name}: {task.group} nets vs plain + augmentation (labels: first-level width)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_task(task: Task, rows: Sequence[dict], flops: dict[tuple[str, int], float], out_dir: Path, command: str,
               wall_s: float, jobs: int) -> dict[str, Path]:
    """``pareto_<task>.csv``, ``.png`` and ``.md`` in ``out_dir`` (``flops`` of :func:`task_gflops`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"pareto_{task.name}.{ext}" for kind, ext in
             (("csv", "csv"), ("figure", "png"), ("table", "md"))}
    write_csv(rows, paths["csv"])
    plot(task, rows, paths["figure"])
    image = {"polyp": f"{task.size}² frame", "nuclei": "256² quadrant", "nodule": f"{task.size}³ patch"}[task.name]
    header = (f"**{task.name}** — {task.describe()}. Widths: the first level's channels (plain) or {task.group} "
              f"fields (group nets), doubled per level. GFLOPs: one forward of a {image}. Train CPU s: the "
              f"training process's CPU seconds with one torch thread ({jobs} run(s) side by side on a shared "
              f"2-core machine).\n\nCommand: `{command}` — this task's results were complete {wall_s / 60:.1f} min "
              "after the command started (tasks run in the order given).\n\n")
    paths["table"].write_text(header + table(task, rows, flops) + "\n")
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--steps", type=int, help="Adam steps per run (default per task: "
                        + ", ".join(f"{k} {t.steps}" for k, t in TASKS.items()) + ")")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0)")
    parser.add_argument("--jobs", type=int, help="runs side by side (processes of one thread each; default 2, "
                        "with --quick 1)")
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--quick", action="store_true", help="tiny settings for the tests")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be positive, got {args.steps}")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be positive, got {args.jobs}")
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, Path]]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = QUICK if args.quick else TASKS
    tasks = []
    for name in dict.fromkeys(args.tasks):
        task = base[name]
        if args.steps is not None:
            task = replace(task, steps=args.steps)
        if args.seeds is not None:
            task = replace(task, seeds=tuple(args.seeds))
        tasks.append(task)
    jobs = args.jobs or (1 if args.quick else 2)
    flops = {task.name: task_gflops(task) for task in tasks}
    runs = plan(tasks, flops)
    print(f"{len(runs)} runs, {jobs} at a time", flush=True)
    command = ("python benchmarks/pareto.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    by_name = {task.name: task for task in tasks}
    written = {}

    def done(name: str, rows: list[dict]) -> None:
        mine = sorted(rows, key=lambda r: (list(FAMILIES).index(r["family"]), r["width"], r["seed"]))
        written[name] = write_task(by_name[name], mine, flops[name], Path(args.out_dir), command,
                                   time.perf_counter() - start, jobs)
        print(written[name]["table"].read_text(), flush=True)

    run_all(runs, jobs, done)
    print(f"wrote {len(written)} task(s) to {args.out_dir} in {(time.perf_counter() - start) / 60:.1f} min")
    return written


if __name__ == "__main__":
    main()
