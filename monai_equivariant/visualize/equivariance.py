"""Pictures of equivariance: measure-vs-angle (or group element) curves for several networks, per-angle box
plots, and the comparison figure of several runs' per-angle CSVs.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state, no backend switch), so
they work headless, in notebooks and inside training handlers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.utils import convert_to_numpy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "AXES",
    "MEASURE_LABELS",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "plot_per_angle_csvs",
    "read_per_angle_csv",
    "save_figure",
]

AXES = ("angle", "element")
"""What the x axis holds: rotation angles in degrees, or a group's element indices (named g0, g1, ...)."""
_XLABELS = {"angle": "rotation angle (°)", "element": "group element"}

MEASURE_LABELS = {
    "dice": "Dice( g·f(x), f(g·x) )",
    "iou": "IoU( g·f(x), f(g·x) )",
    "mad": "mean |g·f(x) − f(g·x)|",
    "agreement": "argmax agreement",
    "logit_change": "max |Δ logit|",
}


def _array(values: Any) -> np.ndarray:
    return np.asarray(convert_to_numpy(values, wrap_sequence=True), dtype=np.float64)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")


def _tick_labels(values: np.ndarray, axis: str) -> list[str]:
    return [f"g{int(v)}" if axis == "element" else format(v, "g") for v in values]


def _tile(angles: np.ndarray, values: np.ndarray, period: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Repeat a curve measured on [0, period] up to ``end`` (drops the duplicate point at each seam)."""
    inner = angles < period - 1e-9
    reps = int(round(end / period))
    tiled_a = np.concatenate([angles[inner] + k * period for k in range(reps)] + [angles[~inner] + (reps - 1) * period])
    tiled_v = np.concatenate([values[inner]] * reps + [values[~inner]])
    return tiled_a, tiled_v


PERIOD_MATCH_TOLERANCE = 1e-3
"""A curve is repeated past its measured period only when its value at the period equals its value at 0° to
within this fraction of max(1, |value at 0°|): the net was measured exact there (a Dice of 1 or an error at
round-off), so its curve has that period. A net that is not exact at the period is drawn only where measured."""


def _periodic_at(angles: np.ndarray, values: np.ndarray, period: float) -> bool:
    """True when ``values`` were measured at 0 and at ``period`` and agree there (the net is exact at the period)."""
    at_zero, at_period = np.isclose(angles, 0.0), np.isclose(angles, period)
    if not (at_zero.any() and at_period.any()):
        return False
    start, end = float(values[at_zero][0]), float(values[at_period][0])
    if not (np.isfinite(start) and np.isfinite(end)):
        return False
    return abs(end - start) <= PERIOD_MATCH_TOLERANCE * max(1.0, abs(start))


def plot_equivariance_curves(
    angles: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    measure: str = "dice",
    period: float | None = 90.0,
    full_turn: bool = True,
    xlabel: str | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    axis: str = "angle",
) -> Figure:
    """One figure, one curve per network: ``measure`` (e.g. per-angle mean Dice) against the angle or element.

    Args:
        angles: (A,) angles in degrees, or group element indices with ``axis="element"``
            (``EquivarianceMetric.axis_values``).
        curves: network name -> (A,) values (e.g. ``EquivarianceMetric.aggregate()["dice"]``); NaN points
            (nothing to compare there) are left as gaps.
        measure: key into :data:`MEASURE_LABELS` for the y label (any string is accepted).
        period: (angles) draw a vertical line at every multiple (the 90° period of grid symmetries); None for none.
        full_turn: (angles) show 0°–360°; a curve measured only on [0, period] is repeated (dotted) with the period
            only when its measured value at the period equals its value at 0° (the net is exact there, see
            :data:`PERIOD_MATCH_TOLERANCE`); any other curve is drawn only where it was measured.
        xlabel, title: axis label (default from ``axis``) and title.
        path: when given, also save the PNG there.
        axis: ``"angle"`` or ``"element"`` (``EquivarianceMetric.axis``): elements are labelled g0, g1, …,
            with no period and no full turn.
    """
    _check_axis(axis)
    if axis == "element":
        period, full_turn = None, False
    angles_np = _array(angles)
    if angles_np.ndim != 1 or not len(curves):
        raise ValueError("expected 1-D angles/elements and at least one curve")
    fig = _new_figure(8.0, 4.0)
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(len(curves))]
    end = 360.0 if full_turn and period else float(angles_np.max())
    for colour, (name, values) in zip(colours, curves.items()):
        values_np = _array(values)
        if values_np.shape != angles_np.shape:
            raise ValueError(f"curve {name!r} has shape {values_np.shape}, angles have {angles_np.shape}")
        ax.plot(angles_np, values_np, "-o", color=colour, markersize=3, label=name)
        repeat = full_turn and period and angles_np.max() <= period + 1e-9 and end > period
        if repeat and _periodic_at(angles_np, values_np, period):
            tiled_a, tiled_v = _tile(angles_np, values_np, period, end)
            later = tiled_a >= angles_np.max() - 1e-9
            ax.plot(tiled_a[later], tiled_v[later], ":", color=colour)
    if period:
        for k in range(int(end // period) + 1):
            ax.axvline(k * period, color="0.75", linewidth=0.8, zorder=0)
        ax.set_xticks(np.arange(0, end + 1e-9, period / 2))
    if axis == "element":
        ax.set_xticks(angles_np)
        ax.set_xticklabels(_tick_labels(angles_np, axis), rotation=90 if len(angles_np) > 24 else 0)
        ax.set_xlim(float(angles_np.min()) - 0.5, float(angles_np.max()) + 0.5)
    else:
        ax.set_xlim(float(min(0.0, angles_np.min())), end)
    ax.set_xlabel(_XLABELS[axis] if xlabel is None else xlabel)
    ax.set_ylabel(MEASURE_LABELS.get(measure, measure))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title, fontsize="medium")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_equivariance_boxplots(
    angles: Sequence[float],
    per_image: Mapping[str, Any],
    measure: str = "dice",
    xlabel: str | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    axis: str = "angle",
) -> Figure:
    """Per-angle (per-element) box plots of the per-image values (outliers visible), networks side by side.

    Args:
        angles: (A,) angles, or element indices with ``axis="element"`` (tick labels).
        per_image: network name -> (N, A) values (``EquivarianceMetric.aggregate("none")[measure]``); NaN
            values (nothing to compare) are left out of each box.
        axis: ``"angle"`` or ``"element"``.
    """
    _check_axis(axis)
    angles_np = _array(angles)
    n_angles, n_nets = len(angles_np), len(per_image)
    if n_angles == 0 or n_nets == 0:
        raise ValueError("expected at least one angle/element and one network")
    width = 0.8 / n_nets
    fig = _new_figure(min(24.0, max(6.0, 0.3 * n_angles * n_nets + 2)), 4.0)
    ax = fig.add_subplot()
    handles = []
    for j, (name, values) in enumerate(per_image.items()):
        values_np = _array(values)
        if values_np.ndim != 2 or values_np.shape[1] != n_angles:
            raise ValueError(f"{name!r}: expected (N, {n_angles}) per-image values, got {values_np.shape}")
        positions = np.arange(n_angles) + (j - (n_nets - 1) / 2) * width
        boxes = ax.boxplot(
            [values_np[~np.isnan(values_np[:, i]), i] for i in range(n_angles)],
            positions=positions,
            widths=width * 0.9,
            patch_artist=True,
            manage_ticks=False,
            flierprops={"markersize": 3},
            medianprops={"color": "black"},
        )
        for box in boxes["boxes"]:
            box.set_facecolor(f"C{j}")
            box.set_alpha(0.6)
        handles.append((boxes["boxes"][0], name))
    ax.set_xticks(np.arange(n_angles))
    ax.set_xticklabels(_tick_labels(angles_np, axis), rotation=90 if n_angles > 24 else 0)
    ax.set_xlabel(_XLABELS[axis] if xlabel is None else xlabel)
    ax.set_ylabel(MEASURE_LABELS.get(measure, measure))
    ax.grid(alpha=0.3, axis="y")
    ax.legend([h for h, _ in handles], [n for _, n in handles], loc="best")
    if title:
        ax.set_title(title, fontsize="medium")
    if path is not None:
        save_figure(fig, path)
    return fig


def read_per_angle_csv(path: str | Path, measure: str = "dice") -> tuple[str, list[float], list[float]]:
    """The last epoch of an ``equivariance_per_angle.csv`` (written by ``EquivarianceSaver``; columns
    ``epoch, network, angle|element, <measures>``): ``(axis, x values, measure values)``.

    With several networks in the file (the handler's ``networks=``), the first one's rows are used."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no per-angle equivariance CSV at {path} (expected from EquivarianceSaver)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    if not rows or measure not in columns:
        raise ValueError(f"{path} has no {measure!r} column (columns: {columns})")
    axis = next((a for a in AXES if a in columns), None)
    if axis is None:
        raise ValueError(f"{path} has neither an 'angle' nor an 'element' column (columns: {columns})")
    last = max(int(r["epoch"]) for r in rows)
    rows = [r for r in rows if int(r["epoch"]) == last]
    if "network" in columns:
        rows = [r for r in rows if r["network"] == rows[0]["network"]]
    rows.sort(key=lambda r: float(r[axis]))
    return axis, [float(r[axis]) for r in rows], [float(r[measure]) for r in rows]


def plot_per_angle_csvs(
    csvs: Mapping[str, str | Path], path: str | Path, measure: str = "dice", title: str | None = None
) -> Figure:
    """One curve figure from several runs' ``equivariance_per_angle.csv`` (written by ``EquivarianceSaver``):
    the last epoch of each file, labelled by the mapping's keys (e.g. ``{"P4UNet": ..., "U-Net": ...}``).
    The runs must share their angles (or group elements)."""
    curves: dict[str, list[float]] = {}
    axis, values = "", []
    for name, csv_path in csvs.items():
        run_axis, run_values, curves[name] = read_per_angle_csv(csv_path, measure)
        if values and (run_axis, run_values) != (axis, values):
            raise ValueError(f"{csv_path} measured {run_axis}s {run_values}, the other runs {axis}s {values}")
        axis, values = run_axis, run_values
    return plot_equivariance_curves(values, curves, measure=measure, title=title, path=path, axis=axis)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
