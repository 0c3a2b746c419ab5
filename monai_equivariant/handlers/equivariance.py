"""Ignite handler measuring a network's rotation equivariance on a fixed set of images during validation.

Per-angle values go to ``engine.state.metrics`` (so ``StatsHandler`` / ``TensorBoardStatsHandler`` log them)
and, with ``output_dir``, to a curve PNG, a box-plot PNG and CSV files.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.utils import convert_to_tensor

from monai_equivariant.metrics.equivariance import EquivarianceMetric

__all__ = ["EquivarianceHandler"]


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

    - ``{prefix}_{measure}_{angle}`` for each measure in ``log_measures`` and each angle (``45``, ``22.5``,
      or ``g7`` for group elements), e.g. ``equivariance_dice_45``;
    - ``{prefix}_{measure}`` (mean over the angles) for every measure.

    The network runs through the engine's inferer (``engine.inferer``, if any) in eval mode; its previous
    mode is restored. With ``output_dir``: ``{prefix}_curve.png`` (all networks, 0°–360°), ``{prefix}_boxplot.png``
    (per image, first logged measure), ``{prefix}_per_angle.csv`` (one row per epoch, network, angle; history
    kept) and ``{prefix}_per_image.csv`` (latest run).

    Args:
        images: fixed images, or None to take the first ``num_images`` of the engine's data.
        num_images: how many images to use.
        image_key: key of the images in dict batches / dataset items.
        network: the network to measure (default: ``engine.network``).
        networks: more named networks drawn on the same figure and written to the CSVs (not logged).
        network_name: the name of the main network in figures and CSVs.
        batch_size: images per forward pass.
        use_inferer: run the networks through ``engine.inferer`` when the engine has one.
        prefix: prefix of the metric names and output files.
        log_measures: measures logged per angle (default: ``dice`` for segmentation, ``agreement`` for classifiers).
        output_dir: where to save PNGs and CSVs (None: nothing saved).
        angles, group, task, activation, threshold, include_background, valid_region, margin, mode, input_padding: passed to
            :class:`EquivarianceMetric`.
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
        angles: Sequence[float] | None = None,
        group: str | None = None,
        task: str = "auto",
        activation: str | None = "sigmoid",
        threshold: float = 0.5,
        include_background: bool = True,
        valid_region: str = "rotated",
        margin: int = 0,
        mode: str = "bilinear",
        input_padding: str = "zeros",
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
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.metric_args = dict(
            angles=angles, group=group, task=task, activation=activation, threshold=threshold,
            include_background=include_background, valid_region=valid_region, margin=margin, mode=mode,
            input_padding=input_padding,
        )
        EquivarianceMetric(**self.metric_args)  # validate the arguments now, not at the first epoch
        self._images: torch.Tensor | None = None if images is None else self._take(images)
        self._collected: list[torch.Tensor] = []
        self._done_this_epoch = False
        self.results: dict[str, dict[str, Any]] = {}
        """Latest results: network name -> {"angles", "labels", "per_angle": {measure: (A,)},
        "per_image": {measure: (N, A)}}."""
        self.history: list[dict[str, Any]] = []

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
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

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

    def _measure(self, engine: Engine, network: Callable, device: torch.device) -> EquivarianceMetric:
        inferer = getattr(engine, "inferer", None) if self.use_inferer else None
        forward = (lambda x: inferer(x, network)) if inferer is not None else network
        metric = EquivarianceMetric(forward, **self.metric_args)
        modules = [network] if isinstance(network, torch.nn.Module) else []
        training = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            for start in range(0, len(self._images), self.batch_size):
                metric(self._images[start : start + self.batch_size].to(device))
        finally:
            for m, was_training in zip(modules, training):
                m.train(was_training)
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
        epoch = int(getattr(engine.state, "epoch", 0) or 0)
        self.results = {}
        for name, network in {self.network_name: main, **self.networks}.items():
            metric = self._measure(engine, network, device)
            per_angle = {k: v.cpu() for k, v in metric.aggregate().items()}
            self.results[name] = {
                "angles": list(metric.angles),
                "labels": list(metric.labels),
                "per_angle": per_angle,
                "per_image": {k: v.cpu() for k, v in metric.aggregate("none").items()},
            }
            for i, angle in enumerate(metric.angles):
                self.history.append(
                    {"epoch": epoch, "network": name, "angle": angle, **{k: float(v[i]) for k, v in per_angle.items()}}
                )
        logged = self._logged_values(self.results[self.network_name])
        engine.state.metrics.update(logged)
        self._done_this_epoch = True
        if self.output_dir is not None:
            self.save(self.output_dir)
        return logged

    def _logged_values(self, result: dict[str, Any]) -> dict[str, float]:
        per_angle = result["per_angle"]
        measures = self.log_measures or (("agreement",) if "agreement" in per_angle else ("dice",))
        unknown = set(measures) - set(per_angle)
        if unknown:
            raise ValueError(f"log_measures {sorted(unknown)} not among the measures {list(per_angle)}")
        values = {f"{self.prefix}_{m}": float(v.mean()) for m, v in per_angle.items()}
        for m in measures:
            for label, value in zip(result["labels"], per_angle[m]):
                values[f"{self.prefix}_{m}_{label}"] = float(value)
        return values

    def save(self, output_dir: str | Path) -> dict[str, Path]:
        """Write the curve and box-plot PNGs and the CSVs of the latest results into ``output_dir``."""
        from monai_equivariant.metrics.plots import plot_equivariance_boxplots, plot_equivariance_curves

        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        main = self.results[self.network_name]
        measure = (self.log_measures or (("agreement",) if "agreement" in main["per_angle"] else ("dice",)))[0]
        grid = main["labels"][0].startswith("g")
        axis = dict(xlabel="group element" if grid else "rotation angle (°)")
        paths = {
            "curve": out / f"{self.prefix}_curve.png",
            "boxplot": out / f"{self.prefix}_boxplot.png",
            "per_angle": out / f"{self.prefix}_per_angle.csv",
            "per_image": out / f"{self.prefix}_per_image.csv",
        }
        plot_equivariance_curves(
            main["angles"], {n: r["per_angle"][measure] for n, r in self.results.items()}, measure,
            period=None if grid else 90.0, full_turn=not grid, path=paths["curve"], **axis,
        )
        plot_equivariance_boxplots(
            main["angles"], {n: r["per_image"][measure] for n, r in self.results.items()}, measure,
            path=paths["boxplot"], **axis,
        )
        with open(paths["per_angle"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.history[0]))
            writer.writeheader()
            writer.writerows(self.history)
        with open(paths["per_image"], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["network", "image", "angle", *main["per_image"]])
            for name, result in self.results.items():
                values = result["per_image"]
                n_images = len(next(iter(values.values())))
                for i in range(n_images):
                    for j, angle in enumerate(result["angles"]):
                        writer.writerow([name, i, angle, *(float(v[i, j]) for v in values.values())])
        return paths
