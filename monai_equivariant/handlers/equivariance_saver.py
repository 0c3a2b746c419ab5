"""Ignite handler saving what :class:`~monai_equivariant.handlers.EquivarianceHandler` measured: a curve PNG, a
box-plot PNG and the per-angle CSV (one row per validation run, network and transformation; history kept).

Saving is its own handler, as MONAI's ``MetricsSaver`` is beside ``MeanDice``: it runs on
:data:`~monai_equivariant.handlers.EquivarianceEvents.MEASURED`, so the handlers' order does not matter.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from monai_equivariant.handlers.equivariance_events import (
    EquivarianceEvents,
    EquivarianceReport,
    register_equivariance_events,
)
from monai_equivariant.visualize import plot_equivariance_boxplots, plot_equivariance_curves

__all__ = ["EquivarianceSaver"]


class EquivarianceSaver:
    """Write ``{prefix}_curve.png`` (every network; angles shown over 0°–360°), ``{prefix}_boxplot.png`` (per
    image) and ``{prefix}_per_angle.csv`` into ``output_dir`` after each measurement of the
    ``EquivarianceHandler`` with the same ``prefix``.

    The CSV's columns are ``epoch, network, angle`` (``element`` for a group), then the measures; it keeps the
    rows of every earlier run of this saver (:attr:`history`). Read it back with
    :func:`monai_equivariant.visualize.read_per_angle_csv` / ``plot_per_angle_csvs``.

    Args:
        output_dir: folder of the files (made when missing).
        prefix: the handler's prefix (its report is ``engine.state.equivariance[prefix]``) and the files' prefix.
        measure: the measure plotted (default: the first measure the handler logs).
        curve, boxplot, per_angle: which files to write.
    """

    def __init__(
        self,
        output_dir: str | Path,
        prefix: str = "equivariance",
        measure: str | None = None,
        curve: bool = True,
        boxplot: bool = True,
        per_angle: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.measure = measure
        self.curve, self.boxplot, self.per_angle = bool(curve), bool(boxplot), bool(per_angle)
        self.history: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Save after every measurement (:data:`EquivarianceEvents.MEASURED`)."""
        register_equivariance_events(engine)
        if not engine.has_event_handler(self, EquivarianceEvents.MEASURED):
            engine.add_event_handler(EquivarianceEvents.MEASURED, self)

    def __call__(self, engine: Engine) -> None:
        """Record and write the report of the handler with this saver's prefix, if it measured."""
        report = getattr(engine.state, "equivariance", {}).get(self.prefix)
        if report is None:
            return
        self.record(report)
        self.write(report)

    def record(self, report: EquivarianceReport) -> None:
        """Append the report's per-angle means (one row per network and transformation) to :attr:`history`."""
        for name, result in report.results.items():
            axis = result["axis"]
            for i, value in enumerate(result["values"]):
                self.history.append(
                    {"epoch": report.epoch, "network": name, axis: value if axis == "angle" else int(value),
                     **{k: float(v[i]) for k, v in result["means"].items()}}
                )

    def write(self, report: EquivarianceReport) -> dict[str, Path]:
        """Write the report's figures and the CSV of :attr:`history`; returns the paths written."""
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        main = report.results[report.network_name]
        measure = self.measure or report.measures[0]
        if measure not in main["means"]:
            raise ValueError(f"measure {measure!r} not among the measures {list(main['means'])}")
        axis, paths = main["axis"], {}
        if self.curve:
            paths["curve"] = out / f"{self.prefix}_curve.png"
            plot_equivariance_curves(
                main["values"], {n: r["means"][measure] for n, r in report.results.items()}, measure, axis=axis,
                path=paths["curve"],
            )
        if self.boxplot:
            paths["boxplot"] = out / f"{self.prefix}_boxplot.png"
            plot_equivariance_boxplots(
                main["values"], {n: r["per_image"][measure] for n, r in report.results.items()}, measure,
                axis=axis, path=paths["boxplot"],
            )
        if self.per_angle and self.history:
            paths["per_angle"] = out / f"{self.prefix}_per_angle.csv"
            with open(paths["per_angle"], "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.history[0]))
                writer.writeheader()
                writer.writerows(self.history)
        return paths
