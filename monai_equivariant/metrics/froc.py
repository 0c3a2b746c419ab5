"""LUNA16 evaluation of candidate classifiers: FROC (mean sensitivity at 1/8 … 8 false positives per scan)
on top of ``monai.metrics`` FROC utilities (as a function and as a MONAI Cumulative metric), and AUC/accuracy
with ``monai.metrics.ROCAUCMetric``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, ROCAUCMetric, compute_froc_curve_data, compute_froc_score
from monai.utils import convert_to_numpy

__all__ = ["LUNA16_FP_RATES", "LUNA16FROCMetric", "classification_scores", "froc_curve", "luna16_froc", "scan_key"]

LUNA16_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per scan at which LUNA16 averages the sensitivity."""


def _as_numpy(values) -> np.ndarray:
    """Tensors, arrays, sequences of numbers or of 0-d tensors as one array (``monai.utils.convert_to_numpy``)."""
    return np.asarray(convert_to_numpy(values, wrap_sequence=True))


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


def scan_key(seriesuid: str) -> int:
    """A stable 56-bit integer for a scan id (``seriesuid``), so scan identities travel in tensors (and are
    gathered across ranks); only the number of distinct scans is used, and 56-bit collisions are negligible."""
    return int.from_bytes(hashlib.blake2b(str(seriesuid).encode(), digest_size=7).digest(), "little")


class LUNA16FROCMetric(CumulativeIterationMetric):
    """LUNA16 FROC over the candidates of all iterations (and all ranks): a MONAI Cumulative metric.

    Call it with ``y_pred`` (B, K) class probabilities (or (B,) scores of the positive class), ``y`` (B, K)
    one-hot labels (or (B,) 0/1) and ``scans`` (B scan ids, e.g. LUNA16 ``seriesuid`` strings). The number of
    scans (the FP rate's denominator) is the number of distinct scan ids seen. :meth:`aggregate` returns
    :func:`luna16_froc`'s dict (``"score"``, ``"sensitivities"`` per rate, …).

    Args:
        positive_index: the class whose probability scores a candidate (for (B, K) inputs).
        fp_rates: false positives per scan where the sensitivity is averaged (default :data:`LUNA16_FP_RATES`).
    """

    def __init__(self, positive_index: int = 1, fp_rates: Sequence[float] = LUNA16_FP_RATES) -> None:
        super().__init__()
        self.positive_index = int(positive_index)
        self.fp_rates = tuple(float(r) for r in fp_rates)

    def __call__(self, y_pred: Any, y: Any = None, scans: Sequence[Any] | None = None, **kwargs: Any) -> Any:
        if isinstance(y_pred, (list, tuple)):  # decollated items: batch them (one scans list for the batch)
            y_pred = torch.stack([torch.as_tensor(p) for p in y_pred])
        if isinstance(y, (list, tuple)):
            y = torch.stack([torch.as_tensor(t) for t in y])
        return super().__call__(y_pred, y, scans=scans, **kwargs)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, scans: Sequence[Any] | None = None
    ) -> list[torch.Tensor]:
        """(B, 1) probabilities, (B, 1) labels and (B, 1) int64 scan keys (buffered)."""
        if y is None or scans is None:
            raise ValueError("LUNA16FROCMetric needs y_pred, y (labels) and scans (one scan id per candidate)")
        probs = y_pred.reshape(len(y_pred), -1)
        probs = probs[:, self.positive_index] if probs.shape[1] > 1 else probs[:, 0]
        labels = y.reshape(len(y), -1)
        labels = labels.argmax(dim=1) if labels.shape[1] > 1 else labels[:, 0].round().long()
        if not len(probs) == len(labels) == len(scans):
            raise ValueError(f"got {len(probs)} predictions, {len(labels)} labels and {len(scans)} scan ids")
        keys = torch.tensor([scan_key(s) for s in scans], dtype=torch.int64, device=probs.device)
        return [probs.float()[:, None], labels.float()[:, None], keys[:, None]]

    def candidates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(N, 1) probabilities, (N, 1) 0/1 labels and (N, 1) int64 scan keys of every candidate buffered (all
        ranks), or None when there is none yet."""
        buffers = self.get_buffer()
        if buffers is None or len(buffers) != 3 or len(buffers[0]) == 0:
            return None
        probs, labels, keys = buffers
        return probs, labels, keys

    def aggregate(self) -> dict:  # type: ignore[override]
        """:func:`luna16_froc` of every candidate buffered (all ranks)."""
        candidates = self.candidates()
        if candidates is None:
            raise RuntimeError("LUNA16FROCMetric has no candidates: call it on predictions first")
        probs, labels, keys = candidates
        return luna16_froc(
            probs.reshape(-1).cpu(), labels.reshape(-1).long().cpu(), num_scans=int(torch.unique(keys).numel()),
            fp_rates=self.fp_rates,
        )
