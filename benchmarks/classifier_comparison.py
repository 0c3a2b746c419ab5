"""2D classifiers at random angles: plain CNN (equal parameters, equal FLOPs, with and without rotation augmentation)
against the p4, p4m and SE(2,8) ``GroupCNN`` at the plain net's parameter count, over several seeds; train time per
row. A second table takes the SE(2,8) and p4m nets apart (kernel size, the head's invariance); ``--diagnose`` writes
how much of a kernel's shape the interpolated 45° rotation keeps at 3×3, 5×5 and 7×7.

Data: glyphs drawn as soft strokes (24×24, one channel, a random continuous angle, scale, stroke width and shift,
noise). Six classes: "L" and "J", "S" and "Z" (two mirror pairs: a reflection maps one onto the other, and no
rotation does) and the achiral "T" and "I". A classifier invariant to reflections cannot tell a mirror pair apart.

Usage (the tables in docs/which_to_choose.md; the main table about 10 min on one thread, the diagnosis as long):
    OMP_NUM_THREADS=1 python benchmarks/classifier_comparison.py --out-dir benchmarks/results
    OMP_NUM_THREADS=1 python benchmarks/classifier_comparison.py --tables diagnosis --out-dir benchmarks/results
    python benchmarks/classifier_comparison.py --diagnose --out-dir benchmarks/results   # kernel shapes, seconds
``--quick`` runs a tiny setting (seconds; the test uses it).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from monai_equivariant.groups import get_group
from monai_equivariant.networks.nets import GroupCNN, count_parameters
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel, solve_fields

GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    # polylines in (row, column) coordinates of [-1, 1]^2
    "L": [[(-0.8, -0.3), (0.8, -0.3), (0.8, 0.5)]],
    "J": [[(-0.8, 0.3), (0.8, 0.3), (0.8, -0.5)]],
    "S": [[(-0.8, 0.6), (-0.8, 0.0), (0.8, 0.0), (0.8, -0.6)]],
    "Z": [[(-0.8, -0.6), (-0.8, 0.0), (0.8, 0.0), (0.8, 0.6)]],
    "T": [[(-0.8, -0.6), (-0.8, 0.6)], [(-0.8, 0.0), (0.8, 0.0)]],
    "I": [[(-0.8, 0.0), (0.8, 0.0)]],
}
CLASSES = tuple(GLYPHS)
MIRROR_PAIRS = (("L", "J"), ("S", "Z"))


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points (N, 2) to the segment from a to b."""
    ab = b - a
    t = np.clip((points - a) @ ab / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - a - t[:, None] * ab, axis=1)


def glyph_image(rng: np.random.Generator, label: int, size: int = 24) -> np.ndarray:
    """(1, size, size) float32: glyph ``CLASSES[label]`` at a random angle in [0°, 360°), scale, stroke width and
    shift, plus Gaussian noise."""
    angle = rng.uniform(0, 2 * math.pi)
    scale = rng.uniform(0.55, 0.7) * size / 2
    width = rng.uniform(0.9, 1.4)
    shift = rng.uniform(-1.5, 1.5, size=2)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    centre = (size - 1) / 2
    grid = np.stack(np.mgrid[0:size, 0:size], -1).reshape(-1, 2).astype(np.float64) - centre - shift
    distance = np.full(grid.shape[0], np.inf)
    for line in GLYPHS[CLASSES[label]]:
        corners = [rotation @ np.array(p) * scale for p in line]
        for a, b in zip(corners, corners[1:]):
            distance = np.minimum(distance, _segment_distance(grid, a, b))
    ink = 1.0 / (1.0 + np.exp(np.clip((distance - width) / 0.5, -30, 30)))
    image = ink.reshape(1, size, size) + 0.1 * rng.standard_normal((1, size, size))
    return image.astype(np.float32)


def glyph_set(num_samples: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced set: images (N, 1, size, size), labels (N,) long."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % len(CLASSES)
    rng.shuffle(labels)
    images = np.stack([glyph_image(rng, int(y), size) for y in labels])
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def rotate_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every image rotated by its own uniform angle (bilinear, zeros outside): rotation augmentation."""
    angle = torch.rand(images.shape[0], generator=generator, dtype=images.dtype) * 2 * math.pi
    c, s = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ------------------------------------------------------------------------------------------------------ the rows


@dataclass(frozen=True)
class Row:
    """One model: a name, the net from the plain reference's channels, whether to augment, a learning-rate factor."""

    name: str
    build: Callable[[Sequence[int]], torch.nn.Module]
    augment: bool = False
    lr_factor: float = 1.0


def _plain(channels: Sequence[int]) -> GroupCNN:
    return GroupCNN(2, 1, len(CLASSES), tuple(channels), group="trivial")


def _group_at_params(group: str, **kwargs) -> Callable[[Sequence[int]], GroupCNN]:
    """The ``group`` net whose parameter count is closest to the plain 3×3 net of ``channels`` (whatever its own
    kernel size): fields solved as ``channels_as="params"`` does, but against the 3×3 plain row."""

    def build(channels: Sequence[int]) -> GroupCNN:
        target = count_parameters(_plain(channels))
        fields = solve_fields(channels, lambda f: count_parameters(GroupCNN(2, 1, len(CLASSES), f, group=group,
                                                                            **kwargs)),
                              target, 1 / math.sqrt(get_group(group).order))
        return GroupCNN(2, 1, len(CLASSES), fields, group=group, **kwargs)

    return build


def _plain_at_flops_of(group: str) -> Callable[[Sequence[int]], GroupCNN]:
    """The plain net whose conv multiply-adds per pixel are closest to the equal-parameter ``group`` net's."""

    def build(channels: Sequence[int]) -> GroupCNN:
        shape = (1, 8, 8)
        target = conv_macs_per_pixel(_group_at_params(group)(channels), shape)
        fields = solve_fields(channels, lambda f: conv_macs_per_pixel(_plain(f), shape), target, 2.0)
        return _plain(fields)

    return build


MAIN_ROWS = (
    Row("plain CNN", _plain),
    Row("plain CNN + rotation aug.", _plain, augment=True),
    Row("plain CNN, equal FLOPs (p4)", _plain_at_flops_of("p4")),
    Row("plain CNN + rotation aug., equal FLOPs (p4)", _plain_at_flops_of("p4"), augment=True),
    Row("p4", _group_at_params("p4")),
    Row("p4m (default head: rotation-invariant)", _group_at_params("p4m")),
    Row("p4m, invariance='group' (old default)", _group_at_params("p4m", invariance="group")),
    Row("se2_8 (default kernel 5×5)", _group_at_params("se2_8")),
    Row("se2_8, kernel_size=3 (old default)", _group_at_params("se2_8", kernel_size=3)),
)
DIAGNOSIS_ROWS = (
    Row("se2_8, kernel_size=7", _group_at_params("se2_8", kernel_size=7)),
    Row("p4, kernel_size=5", _group_at_params("p4", kernel_size=5)),
    Row("p4m, kernel_size=5", _group_at_params("p4m", kernel_size=5)),
    Row("se2_8, kernel 5×5 + rotation aug.", _group_at_params("se2_8"), augment=True),
    Row("se2_8, kernel_size=3, lr ×1/3", _group_at_params("se2_8", kernel_size=3), lr_factor=1 / 3),
    Row("se2_8, kernel_size=3, lr ×3", _group_at_params("se2_8", kernel_size=3), lr_factor=3.0),
    Row("se2_8 (kernel 5×5), lr ×3", _group_at_params("se2_8"), lr_factor=3.0),
    Row("p4, lr ×3", _group_at_params("p4"), lr_factor=3.0),
    Row("plain CNN + rotation aug., lr ×3", _plain, augment=True, lr_factor=3.0),
    Row("plain CNN, kernel_size=5", _group_at_params("trivial", kernel_size=5)),
    Row("plain CNN, kernel_size=5 + rotation aug.", _group_at_params("trivial", kernel_size=5), augment=True),
)


# ------------------------------------------------------------------------------------------------------ training


def train_and_test(row: Row, channels: Sequence[int], train: tuple[torch.Tensor, torch.Tensor],
                   test: tuple[torch.Tensor, torch.Tensor], steps: int, batch: int, lr: float, seed: int) -> dict:
    """Adam with a cosine schedule for ``steps`` steps on random mini-batches; test error and train seconds."""
    torch.manual_seed(seed)
    net = row.build(channels)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr * row.lr_factor)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    net.train()
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randperm(len(labels), generator=generator)[:batch]
        x = rotate_batch(images[index], generator) if row.augment else images[index]
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), labels[index]).backward()
        optimiser.step()
        schedule.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(chunk).argmax(1) for chunk in test[0].split(256)])
    wrong = predicted != test[1]
    names = np.array(CLASSES)
    mirror = {names.tolist().index(a): names.tolist().index(b) for pair in MIRROR_PAIRS for a, b in (pair, pair[::-1])}
    mirror_confusions = sum(int(p) == mirror.get(int(t), -1) for p, t in zip(predicted[wrong], test[1][wrong]))
    return {"model": row.name, "seed": seed, "parameters": count_parameters(net),
            "fields": "-".join(str(c) for c in net.channels), "kernel": int(np.atleast_1d(net.kernel_size)[0]),
            "macs_per_pixel": conv_macs_per_pixel(net, (1, 8, 8)),
            "test_error": float(wrong.float().mean()), "mirror_share": mirror_confusions / max(1, int(wrong.sum())),
            "train_seconds": seconds}


def summarise(runs: list[dict]) -> list[dict]:
    """Per model (in the order first seen): mean and half-range of the test error over seeds, median train time."""
    table = []
    for name in dict.fromkeys(r["model"] for r in runs):
        rows = [r for r in runs if r["model"] == name]
        errors = [r["test_error"] for r in rows]
        table.append({**{k: rows[0][k] for k in ("model", "parameters", "fields", "kernel", "macs_per_pixel")},
                      "error": statistics.mean(errors), "spread": (max(errors) - min(errors)) / 2,
                      "mirror_share": statistics.mean(r["mirror_share"] for r in rows),
                      "train_seconds": statistics.median(r["train_seconds"] for r in rows), "seeds": len(rows)})
    return table


def markdown(table: list[dict]) -> str:
    head = ("| model | parameters | fields | kernel | conv MACs/pixel | test error (mean ± half-range) | "
            "share of errors that are the mirror class | train s/run |\n|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {t['model']} | {t['parameters']:,} | {t['fields']} | {t['kernel']} | {t['macs_per_pixel']:,.0f} | "
        f"{100 * t['error']:.1f} % ± {100 * t['spread']:.1f} | {100 * t['mirror_share']:.0f} % | "
        f"{t['train_seconds']:.1f} |\n" for t in table)


# ------------------------------------------------------------------------------------------------------ kernels


def kernel_shape_kept(sizes: Sequence[int] = (3, 5, 7)) -> str:
    """Markdown: for smooth kernels (an edge, a bar, a corner detector: Gaussian derivatives, σ = max(k/4, 0.7)) the
    cosine to the truly rotated kernel and the norm ratio of the se2_8 layers' 45° copy (bilinear, disk mask)."""
    group = get_group("se2_8")
    profiles = {
        "edge": lambda u, v, s: u * np.exp(-(u * u + v * v) / (2 * s * s)),
        "bar": lambda u, v, s: (1 - u * u / s**2) * np.exp(-(u * u + v * v) / (2 * s * s)),
        "corner": lambda u, v, s: (u * v + 0.5 * u) * np.exp(-(u * u + v * v) / (2 * s * s)),
    }
    lines = ["| kernel | taps in the disk | " + " | ".join(f"{n}: cosine / norm ratio" for n in profiles) + " |",
             "|---|---|" + "---|" * len(profiles)]
    for k in sizes:
        action = group.kernel_action(k)
        mask = action.mask.double()
        matrix = action.matrix.double() * mask[None, :, None] * mask[None, None, :]
        r = k // 2
        ys, xs = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
        sigma = max(k / 4, 0.7)
        cells = []
        for profile in profiles.values():
            def sampled(angle: float) -> torch.Tensor:
                c, s = math.cos(angle), math.sin(angle)  # value at y of the kernel rotated by angle: f(R^-1 y)
                rotated = profile(c * ys + s * xs, -s * ys + c * xs, sigma)
                return torch.from_numpy(rotated.reshape(-1)) * mask
            estimate = matrix[1] @ sampled(0.0)
            truth = max((sampled(a) for a in (math.pi / 4, -math.pi / 4)),
                        key=lambda t: float(F.cosine_similarity(estimate, t, 0)))
            cells.append(f"{float(F.cosine_similarity(estimate, truth, 0)):.2f} / "
                         f"{float(estimate.norm() / truth.norm()):.2f}")
        lines.append(f"| {k}×{k} | {int(mask.sum())} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ main


def run(channels: Sequence[int], train_size: int, test_size: int, size: int, steps: int, batch: int, lr: float,
        seeds: Sequence[int], rows: Sequence[Row], log: Callable[[str], None] = print) -> list[dict]:
    """Every row on every seed (data seed = the seed; test set fixed); the list of runs."""
    test = glyph_set(test_size, size, seed=10_000)
    runs = []
    for seed in seeds:
        train = glyph_set(train_size, size, seed=seed)
        for row in rows:
            result = train_and_test(row, channels, train, test, steps, batch, lr, seed)
            log(f"seed {seed} {row.name}: error {100 * result['test_error']:.1f} %, {result['train_seconds']:.1f} s")
            runs.append(result)
    return runs


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32], help="the plain CNN's channels")
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", choices=("main", "diagnosis"), default=["main"],
                        help="the tables to train: the main rows, the diagnosis rows (SE(2,8) and p4m taken apart)")
    parser.add_argument("--only", nargs="+", default=None, metavar="MODEL",
                        help="train only the rows of these names (of the tables chosen)")
    parser.add_argument("--diagnose", action="store_true", help="only the kernel-shape table (no training)")
    parser.add_argument("--quick", action="store_true", help="a tiny setting (seconds)")
    parser.add_argument("--out-dir", type=Path, default=None, help="write classifier_comparison{,_diagnosis}.{csv,md}")
    args = parser.parse_args(argv)
    command = "python benchmarks/classifier_comparison.py " + " ".join(
        sys.argv[1:] if argv is None else [str(a) for a in argv])
    if args.diagnose:
        text = kernel_shape_kept()
        print(text)
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            (args.out_dir / "classifier_comparison_kernels.md").write_text(text)
        return []
    if args.quick:
        args.channels, args.train_size, args.test_size, args.size = [4, 8], 24, 24, 8
        args.steps, args.batch, args.seeds = 2, 8, [0]
    torch.set_num_threads(1)
    tables = {"main": ("classifier_comparison", MAIN_ROWS),
              "diagnosis": ("classifier_comparison_diagnosis", DIAGNOSIS_ROWS)}
    outputs = [tables[name] for name in dict.fromkeys(args.tables)]
    if args.only is not None:
        unknown = set(args.only) - {row.name for _, rows in outputs for row in rows}
        if unknown:
            raise SystemExit(f"--only: no rows named {sorted(unknown)} in the tables {args.tables}")
        outputs = [(stem, tuple(row for row in rows if row.name in args.only)) for stem, rows in outputs]
        outputs = [(stem, rows) for stem, rows in outputs if rows]
    every_run = []
    for stem, rows in outputs:
        runs = run(args.channels, args.train_size, args.test_size, args.size, args.steps, args.batch, args.lr,
                   args.seeds, rows)
        every_run += runs
        text = (f"Command: `{command.strip()}` (seeds {', '.join(map(str, args.seeds))}; channels "
                f"{args.channels}, {args.train_size} training / {args.test_size} test images of {args.size}², "
                f"{args.steps} Adam steps of {args.batch}, lr {args.lr:g}, cosine; 1 thread)\n\n"
                + markdown(summarise(runs)))
        print(text)
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            with open(args.out_dir / f"{stem}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(runs[0]))
                writer.writeheader()
                writer.writerows(runs)
            (args.out_dir / f"{stem}.md").write_text(text)
    return every_run


if __name__ == "__main__":
    main()
