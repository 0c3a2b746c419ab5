"""LUNA16 evaluation of candidate classifiers: FROC (mean sensitivity at 1/8 … 8 false positives per scan)
on top of ``monai.metrics`` FROC utilities, and AUC/accuracy with ``monai.metrics.ROCAUCMetric``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import ROCAUCMetric, compute_froc_curve_data, compute_froc_score

__all__ = ["LUNA16_FP_RATES", "classification_scores", "froc_curve", "luna16_froc"]

LUNA16_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per scan at which LUNA16 averages the sensitivity."""


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def froc_curve(
    probs,
    labels,
    num_scans: int,
    num_targets: int | None = None,
    nodule_ids: Sequence | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """FROC curve of candidate scores: (false positives per scan, sensitivity), one point per threshold.

    Args:
        probs: (N,) scores of all candidates of all scans.
        labels: (N,) 1 for candidates on a nodule, 0 otherwise.
        num_scans: scans evaluated (the FP rate's denominator).
        num_targets: nodules to find (default: the distinct nodules among the candidates); more than that
            counts nodules that no candidate hit.
        nodule_ids: optional (N,) nodule identity of each positive candidate: a nodule hit by several
            candidates counts once, with its highest score (LUNA16 rule).
    """
    probs, labels = _as_numpy(probs).astype(np.float64).reshape(-1), _as_numpy(labels).reshape(-1)
    if probs.shape != labels.shape:
        raise ValueError(f"probs and labels must have the same length, got {probs.shape} and {labels.shape}")
    if not set(np.unique(labels)).issubset({0, 1}):
        raise ValueError(f"labels must be 0 or 1, got {np.unique(labels)}")
    if num_scans < 1:
        raise ValueError(f"num_scans must be ≥ 1, got {num_scans}")
    positive = labels == 1
    tp_probs = probs[positive]
    if nodule_ids is not None:
        ids = np.asarray(nodule_ids, dtype=object).reshape(-1)
        if ids.shape != labels.shape:
            raise ValueError(f"nodule_ids must have one entry per candidate ({labels.size}), got {ids.size}")
        best: dict = {}
        for nodule, p in zip(ids[positive], tp_probs):
            best[nodule] = max(best.get(nodule, -np.inf), p)
        tp_probs = np.asarray(list(best.values()), dtype=np.float64)
    targets = tp_probs.size if num_targets is None else int(num_targets)
    if targets < max(1, tp_probs.size):
        raise ValueError(
            f"num_targets ({targets}) must be ≥ 1 and ≥ the nodules found among the candidates ({tp_probs.size})"
        )
    # MONAI's thresholds skip the lowest score (CAMELYON code); a sentinel below every score, counted as
    # neither TP nor FP at any threshold, makes the curve include the operating point that keeps everything.
    fp_probs = np.append(probs[~positive], min(probs.min(initial=0.0), 0.0) - 1.0)
    return compute_froc_curve_data(fp_probs, tp_probs, targets, num_scans)


def luna16_froc(
    probs,
    labels,
    num_scans: int,
    num_targets: int | None = None,
    nodule_ids: Sequence | None = None,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
) -> dict:
    """LUNA16 FROC score: the mean of the sensitivities at ``fp_rates`` false positives per scan.

    Returns ``{"score", "sensitivities" (one per rate), "fp_rates", "fps_per_scan", "sensitivity"}``;
    arguments as :func:`froc_curve`. Sensitivities between curve points are linearly interpolated
    (``monai.metrics.compute_froc_score``).
    """
    fps, sensitivity = froc_curve(probs, labels, num_scans, num_targets, nodule_ids)
    per_rate = [float(compute_froc_score(fps, sensitivity, (rate,))) for rate in fp_rates]
    return {
        "score": float(compute_froc_score(fps, sensitivity, tuple(fp_rates))),
        "sensitivities": per_rate,
        "fp_rates": tuple(float(r) for r in fp_rates),
        "fps_per_scan": fps,
        "sensitivity": sensitivity,
    }


def classification_scores(probs, labels, threshold: float = 0.5) -> dict:
    """ROC AUC (``monai.metrics.ROCAUCMetric``) and accuracy at ``threshold`` of binary scores (N,)."""
    probs = torch.as_tensor(_as_numpy(probs), dtype=torch.float32).reshape(-1)
    labels = torch.as_tensor(_as_numpy(labels)).reshape(-1)
    if probs.shape != labels.shape or probs.numel() == 0:
        raise ValueError(
            f"need equally long, non-empty probs and labels, got {tuple(probs.shape)}, {tuple(labels.shape)}"
        )
    metric = ROCAUCMetric()
    metric(probs[:, None], labels[:, None])
    auc = float(metric.aggregate()) if labels.unique().numel() == 2 else float("nan")
    accuracy = float(((probs >= threshold).long() == labels.long()).float().mean())
    return {"auc": auc, "accuracy": accuracy}
