"""Data efficiency on the synthetic nodule task: the O-group GroupCNN vs the plain GroupCNN of equal parameters,
trained on growing training sets (each structure at a random 3D orientation, no augmentation) and tested on a
fixed test set at random (non-cube) orientations. Writes a CSV and a PNG (test AUC vs training-set size).

Usage (the small setting reported in the README, about 10 min on one thread):
    OMP_NUM_THREADS=1 python benchmarks/data_efficiency.py --sizes 16 32 64 128 --seeds 0 1 \
        --patch 16 --channels 2 4 --steps 80 --test-size 300 --out-dir benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from monai_equivariant.data import synthetic_nodules
from monai_equivariant.metrics import classification_scores
from monai_equivariant.networks.nets import GroupCNN, count_parameters, matched_channels


def _stack(samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([s["image"] for s in samples]))
    labels = torch.tensor([s["label"] for s in samples], dtype=torch.long)
    return images, labels


def train_and_test(
    group: str,
    channels: tuple[int, ...],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> dict:
    """Train a GroupCNN for ``steps`` Adam steps on random mini-batches; return test AUC/accuracy and timing."""
    torch.manual_seed(seed)
    net = GroupCNN(3, 1, 2, channels, group=group)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    images, labels = train
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    net.train()
    for _ in range(steps):
        index = torch.randperm(len(labels), generator=generator)[:batch]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(images[index]), labels[index]).backward()
        opt.step()
    train_seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        probs = torch.cat([net(chunk).softmax(1)[:, 1] for chunk in test[0].split(64)])
    scores = classification_scores(probs, test[1])
    return {"parameters": count_parameters(net), "train_seconds": train_seconds, **scores}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for group in dict.fromkeys(r["group"] for r in rows):
        sizes = sorted({r["train_size"] for r in rows if r["group"] == group})
        aucs = [[r["test_auc"] for r in rows if r["group"] == group and r["train_size"] == n] for n in sizes]
        mean = np.array([np.mean(a) for a in aucs])
        low, high = mean - np.array([np.min(a) for a in aucs]), np.array([np.max(a) for a in aucs]) - mean
        label = f"{group} ({rows[[r['group'] for r in rows].index(group)]['parameters']:,} params)"
        ax.errorbar(sizes, mean, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training-set size")
    ax.set_ylabel("test AUC (random 3D orientations)")
    ax.set_title("Synthetic nodules: O-CNN vs plain CNN")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--group", default="O")
    parser.add_argument("--channels", type=int, nargs="+", default=[2, 4], help="fields of the group CNN")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    baseline = matched_channels(args.channels, args.group, "trivial", 3)
    models = [(args.group, tuple(args.channels)), ("trivial", baseline)]
    test = _stack(synthetic_nodules(args.test_size, size=args.patch, seed=10_000))
    rows = []
    for seed in args.seeds:
        pool = synthetic_nodules(max(args.sizes), size=args.patch, seed=seed)  # nested training sets
        for n in args.sizes:
            train = _stack(pool[:n])
            for group, channels in models:
                result = train_and_test(group, channels, train, test, args.steps, args.batch, args.lr, seed)
                row = {"group": group, "channels": " ".join(map(str, channels)), "train_size": n, "seed": seed,
                       "steps": args.steps, **result}
                rows.append(row)
                print(f"{group:8s} n={n:4d} seed={seed} params={row['parameters']:,} auc={row['auc']:.3f} "
                      f"acc={row['accuracy']:.3f} ({row['train_seconds']:.0f}s)", flush=True)
    for row in rows:
        row["test_auc"], row["test_accuracy"] = row.pop("auc"), row.pop("accuracy")
    with open(out / "data_efficiency.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "data_efficiency.png")
    print("| train size | " + " | ".join(f"{g} AUC (mean over seeds)" for g, _ in models) + " |")
    print("|---" * (len(models) + 1) + "|")
    for n in args.sizes:
        cells = [np.mean([r["test_auc"] for r in rows if r["group"] == g and r["train_size"] == n]) for g, _ in models]
        print(f"| {n} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print(f"wrote {out / 'data_efficiency.csv'} and {out / 'data_efficiency.png'}")


if __name__ == "__main__":
    main()
