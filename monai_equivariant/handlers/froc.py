"""LUNA16 FROC of a candidate classifier, computed by an evaluator: mean sensitivity at 1/8 … 8 false
positives per scan over the candidates it sees (each item carries its ``seriesuid``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler
from monai.handlers.utils import from_engine

from monai_equivariant.metrics.froc import LUNA16_FP_RATES, LUNA16FROCMetric

__all__ = ["LUNA16FROCHandler"]


def _scan_ids(batch: Any, key: str) -> list | None:
    """The scan id of every item of a (decollated or collated) batch; None when no item has one."""
    if isinstance(batch, Mapping):
        return list(batch[key]) if key in batch else None
    items = list(batch)
    found = [key in item for item in items if isinstance(item, Mapping)]
    if not any(found):
        return None
    if not all(found) or len(found) != len(items):
        raise ValueError(f"some items of the batch have a {key!r} and others not: FROC needs it on every candidate")
    return [item[key] for item in items]


class LUNA16FROCHandler(IgniteMetricHandler):
    """LUNA16 FROC as a MONAI ``IgniteMetricHandler`` over :class:`~monai_equivariant.metrics.LUNA16FROCMetric`.

    Each iteration takes (probability of class ``positive_index``, label) from the engine output
    (``output_transform``, default ``from_engine(["pred", "label"])``) and the scan of each candidate from the
    batch (``batch[scan_key]``). At the end of the run, ``engine.state.metrics`` gets ``{name}`` (the score,
    default name ``froc``) and ``{name}_{rate}`` (the sensitivity at each rate, e.g. ``froc_0.125``);
    ``engine.state.metric_details[name]`` gets the (N, 2) [probability, label] of every candidate (for
    ``MetricsSaver``). Candidates are gathered across ranks (MONAI's Cumulative buffers).

    Items without a scan id (synthetic data, NoduleMNIST3D) are not scans: the handler then writes nothing.
    It can be listed among ``val_handlers`` (attached as ``name``) or in ``additional_metrics``.
    """

    def __init__(
        self,
        positive_index: int = 1,
        fp_rates: Sequence[float] | None = None,
        output_transform: Callable = from_engine(["pred", "label"]),
        scan_key: str = "seriesuid",
        name: str = "froc",
        save_details: bool = True,
    ) -> None:
        metric = LUNA16FROCMetric(positive_index, LUNA16_FP_RATES if fp_rates is None else fp_rates)
        super().__init__(metric_fn=metric, output_transform=output_transform, save_details=save_details)
        self.scan_key = scan_key
        self.name = name

    def attach(self, engine: Engine, name: str | None = None) -> None:  # type: ignore[override]
        """Attach under ``name`` (default: the constructor's ``name``), so it also works as a val_handler."""
        super().attach(engine, self.name if name is None else name)

    def iteration_completed(self, engine: Engine) -> None:
        scans = _scan_ids(engine.state.batch, self.scan_key)
        if scans is None:
            return
        y_pred, y = self._output_transform(engine.state.output)
        self.metric_fn(y_pred, y, scans=scans)

    def compute(self) -> Any:
        """:meth:`LUNA16FROCMetric.aggregate`'s dict (MONAI's ``compute``), with the details as (N, 2)
        [probability, label] rather than the raw buffers (scan keys dropped)."""
        result = super().compute()
        if self.save_details:
            probs, labels, _ = self.metric_fn.candidates()
            self._engine.state.metric_details[self._name] = torch.cat([probs, labels], dim=1)
        return result

    def completed(self, engine: Engine, name: str) -> None:
        if self.metric_fn.candidates() is None:  # no scans seen (nothing to score)
            return
        result = self.compute()
        engine.state.metrics[name] = float(result["score"])
        for rate, sensitivity in zip(result["fp_rates"], result["sensitivities"]):
            engine.state.metrics[f"{name}_{rate:g}"] = float(sensitivity)
