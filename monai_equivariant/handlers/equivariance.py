"""Ignite handler reporting a network's rotation equivariance on a fixed set of images during validation.

Per-angle (or per-group-element) means go to ``engine.state.metrics`` (so ``StatsHandler`` /
``TensorBoardStatsHandler`` log them), per-image values to ``engine.state.metric_details`` (so MONAI's
``MetricsSaver(metric_details=[...])`` writes them). It only reports: the curve and box-plot PNGs and the
per-angle CSV are :class:`~monai_equivariant.handlers.EquivarianceSaver`'s job (as ``MetricsSaver`` is separate
from ``MeanDice``), which it finds on the engine through :data:`EquivarianceEvents.MEASURED`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.utils import convert_to_tensor

from monai_equivariant.handlers.equivariance_events import (
    EquivarianceEvents,
    EquivarianceReport,
    register_equivariance_events,
)
from monai_equivariant.handlers.equivariance_saver import EquivarianceSaver
from monai_equivariant.metrics.equivariance import EquivarianceMetric
from monai_equivariant.metrics.equivariance_helper import EquivarianceHelper, reduce_metric

__all__ = ["EquivarianceEvents", "EquivarianceHandler", "EquivarianceReport", "register_equivariance_events"]


def _as_float(item: Any) -> torch.Tensor:
    tensor = convert_to_tensor(item, track_meta=False)
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"cannot read images from a {type(item).__name__}")
    return tensor.float()


def _batch_images(batch: Any, key: str) -> torch.Tensor:
    """(B, C, *spatial) images of a batch: a tensor, a dict, a decollated list of dicts, or (image, label)."""
    if isinstance(batch, Mapping):
        if key not in batch:
            raise ValueError(f"batch has no {key!r} entry (keys: {list(batch)}); set image_key")
        return _as_float(batch[key])
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise ValueError("empty batch")
        if isinstance(batch[0], Mapping):
            return torch.stack([_item_image(d, key) for d in batch])
        return _as_float(batch[0])
    return _as_float(batch)


def _item_image(item: Any, key: str) -> torch.Tensor:
    """(C, *spatial) image of one dataset item: a tensor, a dict, or (image, label)."""
    if isinstance(item, Mapping):
        if key not in item:
            raise ValueError(f"dataset item has no {key!r} entry (keys: {list(item)}); set image_key")
        return _as_float(item[key])
    if isinstance(item, (list, tuple)):
        return _as_float(item[0])
    return _as_float(item)


class EquivarianceHandler:
    """Evaluate :class:`~monai_equivariant.metrics.EquivarianceMetric` on fixed images at every validation.

    Attach it to a MONAI ``SupervisedEvaluator`` (``val_handlers``) or any engine. The images are ``images``
    (a (N, C, *spatial) tensor, or a dataset/sequence of dicts or tensors: its first ``num_images`` items), or
    else the first ``num_images`` images the engine sees (``engine.state.batch[image_key]``), collected once
    and kept fixed for every later run. The evaluation runs at the start of each epoch (or as soon as the
    images are collected), so the values are in ``engine.state.metrics`` before any handler logs at
    ``EPOCH_COMPLETED``, whatever the handler order:

    - ``{prefix}_{measure}_{label}`` for each measure in ``log_measures`` and each transformation: the angle
      (``45``, ``22.5``) or, with a group, the element (``g7``), e.g. ``equivariance_dice_45``;
    - ``{prefix}_{measure}`` (mean over every image and transformation, NaN skipped) for every measure.

    ``engine.state.metric_details[f"{prefix}_{measure}"]`` holds the (N, A) per-image values of every measure,
    for ``MetricsSaver(metric_details=["equivariance_dice"], ...)`` (a ``{name}_raw.csv`` with one row per image,
    ``class{j}`` = the j-th angle / element). Dice/IoU are NaN (skipped in the means) where both masks are empty
    (``ignore_empty=True``) or an output is non-finite; each evaluation logs how many were skipped. After each
    evaluation ``engine.state.equivariance[prefix]`` holds the :class:`EquivarianceReport` and
    :data:`EquivarianceEvents.MEASURED` fires (what :class:`~monai_equivariant.handlers.EquivarianceSaver` saves).

    The network runs through the engine's inferer (``engine.inferer``, if any) in eval mode; the mode of each
    of its submodules is restored afterwards.

    Args:
        images: fixed images, or None to take the first ``num_images`` of the engine's data.
        num_images: how many images to use.
        image_key: key of the images in dict batches / dataset items.
        network: the network to measure (default: ``engine.network``).
        networks: more named networks measured on the same images (in the report and the saver's files; not
            logged).
        network_name: the name of the main network in figures and CSVs.
        batch_size: images per forward pass.
        use_inferer: run the networks through ``engine.inferer`` when the engine has one.
        prefix: prefix of the metric names (and of the saver's files).
        log_measures: measures logged per angle/element (default: ``dice`` for segmentation, ``agreement`` for
            classifiers).
        output_dir: shorthand for also attaching ``EquivarianceSaver(output_dir, prefix)`` (None: nothing saved).
        options: the measurement's options (``angles``, ``group``, ``task``, ``activation``, ``threshold``,
            ``include_background``, ``ignore_empty``, ``valid_region``, ``margin``, ``mode``, ``input_padding``),
            as for :class:`EquivarianceMetric`.
    """

    def __init__(
        self,
        images: Any = None,
        num_images: int = 4,
        image_key: str = "image",
        network: Callable[[torch.Tensor], torch.Tensor] | None = None,
        networks: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
        network_name: str = "network",
        batch_size: int = 4,
        use_inferer: bool = True,
        prefix: str = "equivariance",
        log_measures: Sequence[str] | None = None,
        output_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        if num_images < 1 or batch_size < 1:
            raise ValueError(f"num_images and batch_size must be >= 1, got {num_images}, {batch_size}")
        self.num_images = int(num_images)
        self.image_key = image_key
        self.network = network
        self.networks = dict(networks or {})
        if network_name in self.networks:
            raise ValueError(f"network_name {network_name!r} is also a key of networks")
        self.network_name = network_name
        self.batch_size = int(batch_size)
        self.use_inferer = use_inferer
        self.prefix = prefix
        self.log_measures = None if log_measures is None else tuple(log_measures)
        EquivarianceHelper(**options)  # validate the options now, not at the first epoch
        self.options = dict(options)
        self.saver = None
        if output_dir is not None:

            self.saver = EquivarianceSaver(output_dir, prefix=prefix)
        self._images: torch.Tensor | None = None if images is None else self._take(images)
        self._collected: list[torch.Tensor] = []
        self._done_this_epoch = False
        self._metrics: dict[str, EquivarianceMetric] = {}
        self.report: EquivarianceReport | None = None

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Latest results: network name -> {"axis", "values", "labels", "means", "per_image"} (see
        :class:`EquivarianceReport`); empty before the first evaluation."""
        return {} if self.report is None else self.report.results

    def _take(self, images: Any) -> torch.Tensor:
        """First ``num_images`` of a (N, C, *spatial) tensor or of a dataset (items: tensors, dicts, pairs)."""
        if isinstance(images, torch.Tensor):
            return _as_float(images[: self.num_images])
        count = min(self.num_images, len(images))
        if count == 0:
            raise ValueError("images is empty")
        return torch.stack([_item_image(images[i], self.image_key) for i in range(count)])

    # ------------------------------------------------------------------------------------------------
    # ignite wiring

    def attach(self, engine: Engine) -> None:
        """Evaluate at EPOCH_STARTED (fixed images), while collecting (first images) and at EPOCH_COMPLETED."""
        register_equivariance_events(engine)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.saver is not None:
            self.saver.attach(engine)

    def __call__(self, engine: Engine) -> None:
        """Evaluate now and write the results into ``engine.state.metrics``."""
        self.evaluate(engine)

    def _epoch_started(self, engine: Engine) -> None:
        self._done_this_epoch = False
        if self._images is not None:
            self.evaluate(engine)

    def _iteration_completed(self, engine: Engine) -> None:
        if self._images is not None or self._done_this_epoch:
            return
        batch = _batch_images(engine.state.batch, self.image_key)
        self._collected.append(batch.detach().cpu())
        if sum(len(b) for b in self._collected) >= self.num_images:
            self._freeze()
            self.evaluate(engine)

    def _epoch_completed(self, engine: Engine) -> None:
        if not self._done_this_epoch and self._collected:  # fewer images than num_images in the whole epoch
            self._freeze()
            self.evaluate(engine)

    def _freeze(self) -> None:
        self._images = torch.cat(self._collected)[: self.num_images]
        self._collected = []

    # ------------------------------------------------------------------------------------------------
    # evaluation

    def _measure(self, engine: Engine, name: str, network: Callable, device: torch.device) -> EquivarianceMetric:
        """The metric of ``name`` (made once, its helper and masks kept), reset and run on the fixed images."""
        if name not in self._metrics:
            inferer = getattr(engine, "inferer", None) if self.use_inferer else None
            self._metrics[name] = EquivarianceMetric(inferer=inferer, **self.options)
        metric = self._metrics[name]
        metric.reset()
        for start in range(0, len(self._images), self.batch_size):
            metric(self._images[start : start + self.batch_size].to(device), network=network)  # eval, restored
        return metric

    def evaluate(self, engine: Engine) -> dict[str, float]:
        """Measure every network on the fixed images; write and return the logged values."""
        if self._images is None:
            raise RuntimeError("no images yet: give images= or run the engine on data first")
        main = self.network if self.network is not None else getattr(engine, "network", None)
        if main is None:
            raise ValueError("the engine has no .network: pass network= to EquivarianceHandler")
        device = getattr(engine.state, "device", None)
        if device is None and isinstance(main, torch.nn.Module):
            device = next(main.parameters(), torch.empty(0)).device
        device = torch.device("cpu") if device is None else device
        results = {}
        for name, network in {self.network_name: main, **self.networks}.items():
            metric = self._measure(engine, name, network, device)
            results[name] = {
                "axis": metric.axis,
                "values": metric.axis_values,
                "labels": metric.labels,
                "means": {k: v.cpu() for k, v in metric.aggregate().items()},
                "per_image": {k: v.cpu() for k, v in metric.aggregate("none").items()},
            }
        result = results[self.network_name]
        measures = self.log_measures or (("agreement",) if "agreement" in result["means"] else ("dice",))
        unknown = set(measures) - set(result["means"])
        if unknown:
            raise ValueError(f"log_measures {sorted(unknown)} not among the measures {list(result['means'])}")
        epoch = int(getattr(engine.state, "epoch", 0) or 0)
        self.report = EquivarianceReport(epoch, self.network_name, tuple(measures), results)
        logged = self._logged_values(result, measures)
        engine.state.metrics.update(logged)
        if not hasattr(engine.state, "metric_details"):
            engine.state.metric_details = {}  # type: ignore[attr-defined]
        for measure, values in result["per_image"].items():
            engine.state.metric_details[f"{self.prefix}_{measure}"] = values  # type: ignore[attr-defined]
        self._report_skipped(engine, result)
        self._done_this_epoch = True
        self._publish(engine)
        return logged

    def _publish(self, engine: Engine) -> None:
        """Put the report on ``engine.state.equivariance[prefix]`` and fire :data:`EquivarianceEvents.MEASURED`."""
        if not hasattr(engine.state, "equivariance"):
            engine.state.equivariance = {}  # type: ignore[attr-defined]
        engine.state.equivariance[self.prefix] = self.report  # type: ignore[attr-defined]
        register_equivariance_events(engine)
        if self.saver is not None and not engine.has_event_handler(self.saver, EquivarianceEvents.MEASURED):
            self.saver.attach(engine)  # evaluate() called without attach(): output_dir still saves
        engine.fire_event(EquivarianceEvents.MEASURED)

    def _report_skipped(self, engine: Engine, result: dict[str, Any]) -> None:
        """Log how many (image, angle/element) values are NaN and why, so a mean is never read blindly."""
        per_image = result["per_image"]
        total = next(iter(per_image.values())).numel()
        invalid = torch.zeros_like(next(iter(per_image.values())), dtype=torch.bool)
        for measure in ("mad", "logit_change"):  # NaN only for non-finite outputs
            if measure in per_image:
                invalid = torch.isnan(per_image[measure])
        pair = f"(image, {result['axis']})"
        lines = []
        if bool(invalid.any()):
            lines.append(f"{int(invalid.sum())} of {total} {pair} pairs have non-finite outputs: all measures NaN")
        if "dice" in per_image:
            empty = torch.isnan(per_image["dice"]) & ~invalid
            if bool(empty.any()):
                lines.append(
                    f"{int(empty.sum())} of {total} {pair} pairs have both masks empty: Dice/IoU NaN, left out of "
                    "the means (ignore_empty=True, as MONAI's DiceMetric)"
                )
        for line in lines:
            engine.logger.info(f"{self.prefix} ({self.network_name}): {line}")

    def _logged_values(self, result: dict[str, Any], measures: Sequence[str]) -> dict[str, float]:
        values = {f"{self.prefix}_{m}": float(reduce_metric(v, "mean")) for m, v in result["per_image"].items()}
        for m in measures:
            for label, value in zip(result["labels"], result["means"][m]):
                values[f"{self.prefix}_{m}_{label}"] = float(value)
        return values

    def save(self, output_dir: str | Path) -> dict[str, Path]:
        """Write the latest report's PNGs and per-angle CSV into ``output_dir`` now (see ``EquivarianceSaver``;
        the CSV holds the attached saver's history, if any, else the latest report)."""

        if self.report is None:
            raise RuntimeError("nothing measured yet: evaluate first")
        saver = EquivarianceSaver(output_dir, prefix=self.prefix)
        saver.history = list(self.saver.history) if self.saver is not None else []
        if not saver.history:
            saver.record(self.report)
        return saver.write(self.report)
