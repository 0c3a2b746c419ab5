"""LUNA16 FROC of a candidate classifier, computed by an evaluator: mean sensitivity at 1/8 … 8 false
positives per scan over the candidates it sees (each item carries its ``seriesuid``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

__all__ = ["LUNA16FROCHandler"]


class LUNA16FROCHandler:
    """Collect (probability of class ``positive_index``, label, seriesuid) per item; at the end of each run
    put ``froc`` (score) and ``froc_{rate}`` (sensitivities) into ``engine.state.metrics``.

    Items without a ``seriesuid`` (synthetic, NoduleMNIST3D) are not scans: the handler then does nothing.
    Built on :func:`monai_equivariant.metrics.froc.luna16_froc` (MONAI's FROC utilities).
    """

    def __init__(self, positive_index: int = 1, fp_rates: Sequence[float] | None = None) -> None:
        self.positive_index = int(positive_index)
        self.fp_rates = fp_rates
        self._probs: list[float] = []
        self._labels: list[int] = []
        self._scans: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._compute)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels, self._scans = [], [], []

    def _collect(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            if "seriesuid" not in item:
                return
            self._probs.append(float(torch.as_tensor(output["pred"]).reshape(-1)[self.positive_index]))
            self._labels.append(int(torch.as_tensor(item["label"]).reshape(-1).argmax()))
            self._scans.append(str(item["seriesuid"]))

    def _compute(self, engine: Engine) -> None:
        if not self._probs:
            return
        from monai_equivariant.metrics.froc import LUNA16_FP_RATES, luna16_froc

        rates = LUNA16_FP_RATES if self.fp_rates is None else self.fp_rates
        result = luna16_froc(self._probs, self._labels, num_scans=len(set(self._scans)), fp_rates=rates)
        engine.state.metrics["froc"] = float(result["score"])
        for rate, sensitivity in zip(result["fp_rates"], result["sensitivities"]):
            engine.state.metrics[f"froc_{rate:g}"] = float(sensitivity)
