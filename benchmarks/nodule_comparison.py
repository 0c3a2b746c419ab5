"""Data efficiency on the synthetic nodule task, against what a MONAI user does instead of an equivariant net.

At equal parameters (and one plain row at equal FLOPs), over growing training sets (each structure at a random 3D
orientation), tested on a fixed test set at random (non-cube) orientations:

- the O-group GroupCNN (invariant to the 24 cube rotations by construction);
- the plain CNN (GroupCNN with group "trivial", matched channels), no augmentation;
- the plain CNN at equal FLOPs (|G| = 24 times the O-CNN's fields as channels: the same conv multiply-adds per
  voxel, about 24 times the parameters), no augmentation;
- the plain CNN + O ensemble at inference (``GroupEnsembleInferer("O", mode="classification")``);
- the plain CNN trained with ``RandGroupElementd(group="O")`` (a random cube rotation per sample and step);
- that augmented plain CNN + O ensemble at inference.

Batch-norm running statistics are recomputed after training with the final weights (one pass over the
training loader, cumulative average: "precise BN", :func:`recalibrate_batch_norm`). Without it, the running
averages of a short run (momentum 0.1 over 60 fast-moving Adam steps) mix in the statistics of earlier weights
and shift every eval-mode logit: the nets ranked well (AUC up to 0.99) but put nearly all test patches in one
class at threshold 0.5 (accuracy 0.5–0.6). The test set is balanced (exactly half positives), so the reported
accuracy at 0.5 is also the balanced accuracy.

Writes ``nodule_comparison.csv`` and ``nodule_comparison.png`` (test AUC vs training-set size) and prints a
Markdown table (AUC mean ± spread over seeds, conv multiply-adds per voxel, train seconds per run, inference ms
per patch). ``--table-from a.csv b.csv ...`` rebuilds the table and plot from the CSVs of several runs (e.g. one
per training-set size run side by side) without training.

Usage (the setting reported in bundles/nodule_classification/docs/README.md, "Current defaults"; two runs side by
side, then one table)::

    R=benchmarks/results/nodule_equal_flops
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/nodule_comparison.py --sizes 64 --seeds 0 1 2 3 4 \
        --steps 60 --patch 16 --channels 2 4 --test-size 200 --out-dir $R/n64
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/nodule_comparison.py --sizes 16 256 --seeds 0 1 2 \
        --steps 60 --patch 16 --channels 2 4 --test-size 200 --out-dir $R/n16_n256
    PYTHONPATH=$PWD python benchmarks/nodule_comparison.py --out-dir $R \
        --table-from $R/n16_n256/nodule_comparison.csv $R/n64/nodule_comparison.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.inferers import Inferer, SimpleInferer

from monai_equivariant.data import synthetic_nodules
from monai_equivariant.inferers import GroupEnsembleInferer
from monai_equivariant.metrics import classification_scores
from monai_equivariant.networks.nets import GroupCNN, count_parameters, matched_channels
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel
from monai_equivariant.transforms import RandGroupElementd

MODELS = (
    "O-CNN",
    "plain CNN",
    "plain CNN, equal FLOPs",
    "plain CNN + O ensemble",
    "plain CNN + O augmentation",
    "plain CNN + O augmentation + O ensemble",
)


def _stack(samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([s["image"] for s in samples]))
    labels = torch.tensor([s["label"] for s in samples], dtype=torch.long)
    return images, labels


def train(
    group: str,
    channels: tuple[int, ...],
    samples: list[dict],
    augment: str | None,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    separable: bool = False,
) -> tuple[torch.nn.Module, float]:
    """A GroupCNN trained for ``steps`` Adam steps on shuffled mini-batches of ``samples`` (re-drawn every pass),
    each sample passed through ``RandGroupElementd(group=augment)`` when ``augment``; returns (net, seconds).
    ``separable`` builds the net with separable group convs (``benchmarks/pareto.py``)."""
    torch.manual_seed(seed)
    net = GroupCNN(3, 1, 2, channels, group=group, separable=separable)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    transform = RandGroupElementd(["image"], augment).set_random_state(seed) if augment else None
    data = [{"image": torch.from_numpy(s["image"]), "label": int(s["label"])} for s in samples]
    loader = DataLoader(Dataset(data, transform), batch_size=min(batch, len(data)), shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    net.train()
    done = 0
    while done < steps:
        for item in loader:
            opt.zero_grad(set_to_none=True)
            images = torch.as_tensor(item["image"]).float()
            torch.nn.functional.cross_entropy(net(images), item["label"]).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    recalibrate_batch_norm(net, loader)
    return net.eval(), time.perf_counter() - start


def recalibrate_batch_norm(net: torch.nn.Module, loader: DataLoader) -> None:
    """Recompute every batch-norm layer's running mean/variance with the net's current weights: the cumulative
    average (``momentum=None``) over one pass of ``loader`` (the training data, through its training
    transforms), weights untouched. Batch-norm momentum is restored afterwards."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        for item in loader:
            net(torch.as_tensor(item["image"]).float())
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def test(net: torch.nn.Module, inferer: Inferer, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Test AUC/accuracy through ``inferer`` and its inference milliseconds per patch."""
    predict: Callable[[torch.Tensor], torch.Tensor] = lambda x: inferer(x, net)  # noqa: E731
    with torch.no_grad():
        start = time.perf_counter()
        probs = torch.cat([predict(chunk).softmax(1)[:, 1] for chunk in images.split(50)])
        ms = 1000 * (time.perf_counter() - start) / len(images)
    return {**classification_scores(probs, labels), "inference_ms": ms}


def run(args: argparse.Namespace, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Every (seed, size, model) run as a row; ``on_row`` (if given) gets each row as soon as it is measured."""
    baseline = matched_channels(args.channels, "O", "trivial", 3)
    wide = matched_channels(args.channels, "O", "trivial", 3, by="flops")
    test_images, test_labels = _stack(synthetic_nodules(args.test_size, size=args.patch, seed=10_000))
    simple, ensemble = SimpleInferer(), GroupEnsembleInferer("O", mode="classification")
    rows = []
    for seed in args.seeds:
        pool = synthetic_nodules(max(args.sizes), size=args.patch, seed=seed)  # nested training sets
        for n in args.sizes:
            samples = pool[:n]
            recipes = {"O-CNN": ("O", tuple(args.channels), None), "plain CNN": ("trivial", baseline, None),
                       "plain CNN, equal FLOPs": ("trivial", wide, None),
                       "plain CNN + O augmentation": ("trivial", baseline, "O")}
            trained = {
                name: train(group, channels, samples, augment, args.steps, args.batch, args.lr, seed)
                for name, (group, channels, augment) in recipes.items()
                if any(model.replace(" + O ensemble", "") == name for model in args.models)
            }
            for model in args.models:
                net, seconds = trained[model.replace(" + O ensemble", "")]
                result = test(net, ensemble if model.endswith("O ensemble") else simple, test_images, test_labels)
                macs = conv_macs_per_pixel(net, (1, args.patch, args.patch, args.patch))
                row = {"model": model, "train_size": n, "seed": seed, "steps": args.steps,
                       "parameters": count_parameters(net), "conv_macs_per_voxel": round(macs),
                       "train_seconds": seconds, **result}
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                print(f"{model:40s} n={n:4d} seed={seed} params={row['parameters']:,} auc={row['auc']:.3f} "
                      f"train {seconds:.1f}s infer {row['inference_ms']:.2f} ms/patch", flush=True)
    return rows


def table(rows: list[dict], sizes: list[int]) -> str:
    """Markdown: test AUC (mean ± half-range over seeds) and accuracy at 0.5 (mean) per model and size, plus
    cost columns (conv multiply-adds per input voxel; median over runs: train seconds per run incl. the batch-norm
    pass, so that the first run's one-time setup does not count; inference ms per patch)."""
    head = ("| model | parameters | conv MACs/voxel | " + " | ".join(f"AUC / acc. n={n}" for n in sizes)
            + " | train s/run | infer ms/patch |")
    lines = [head, "|---" * (len(sizes) + 5) + "|"]
    for model in [m for m in MODELS if any(r["model"] == m for r in rows)]:
        mine = [r for r in rows if r["model"] == model]
        cells = []
        for n in sizes:
            aucs = [r["auc"] for r in mine if r["train_size"] == n]
            accuracy = np.mean([r["accuracy"] for r in mine if r["train_size"] == n])
            cells.append(f"{np.mean(aucs):.3f} ± {(max(aucs) - min(aucs)) / 2:.3f} / {accuracy:.2f}")
        lines.append(
            f"| {model} | {mine[0]['parameters']:,} | {mine[0]['conv_macs_per_voxel']:,} | " + " | ".join(cells)
            + f" | {np.median([r['train_seconds'] for r in mine]):.1f}"
            + f" | {np.median([r['inference_ms'] for r in mine]):.2f} |"
        )
    return "\n".join(lines)


def load_rows(paths: list[str]) -> list[dict]:
    """The rows of one or more ``nodule_comparison.csv`` files, numbers parsed (model name kept as text)."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append({k: v if k == "model" else (int(v) if v.lstrip("-").isdigit() else float(v))
                             for k, v in row.items()})
    return rows


def write_outputs(rows: list[dict], sizes: list[int], out: Path) -> None:
    """``nodule_comparison.png`` under ``out`` and the Markdown table on stdout."""
    plot(rows, out / "nodule_comparison.png")
    print(table(rows, sizes))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, style in zip(MODELS, ["-o", "-s", ":s", "--s", "-^", "--^"]):
        if not any(r["model"] == model for r in rows):
            continue
        sizes = sorted({r["train_size"] for r in rows if r["model"] == model})
        aucs = [[r["auc"] for r in rows if r["model"] == model and r["train_size"] == n] for n in sizes]
        mean = np.array([np.mean(a) for a in aucs])
        spread = [mean - np.array([min(a) for a in aucs]), np.array([max(a) for a in aucs]) - mean]
        ax.errorbar(sizes, mean, yerr=spread, fmt=style, capsize=3, markersize=4, label=model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training-set size")
    ax.set_ylabel("test AUC (random 3D orientations)")
    ax.set_title("Synthetic nodules: equal parameters, one plain net at equal FLOPs", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--channels", type=int, nargs="+", default=[2, 4], help="fields of the O-group CNN")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL",
                        help="rows to run (default: all six); e.g. --models O-CNN 'plain CNN'")
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--table-from", nargs="+", metavar="CSV",
                        help="no training: the table and plot of the rows in these CSVs (sizes from the rows)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.table_from:
        rows = load_rows(args.table_from)
        write_outputs(rows, sorted({r["train_size"] for r in rows}), out)
        return
    start = time.perf_counter()
    with open(out / "nodule_comparison.csv", "w", newline="") as handle:  # row by row: a killed run keeps its rows
        writer: list[csv.DictWriter] = []

        def write(row: dict) -> None:
            if not writer:
                writer.append(csv.DictWriter(handle, fieldnames=list(row)))
                writer[0].writeheader()
            writer[0].writerow(row)
            handle.flush()

        rows = run(args, write)
    write_outputs(rows, args.sizes, out)
    print(f"wrote {out / 'nodule_comparison.csv'} and {out / 'nodule_comparison.png'} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
