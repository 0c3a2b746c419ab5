"""Pictures of equivariance: measure-vs-angle curves for several networks, and per-angle box plots.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state, no backend switch), so
they work headless, in notebooks and inside training handlers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MEASURE_LABELS",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "plot_per_angle_csvs",
    "save_figure",
]

MEASURE_LABELS = {
    "dice": "Dice( rotate(f(x)), f(rotate(x)) )",
    "iou": "IoU( rotate(f(x)), f(rotate(x)) )",
    "mad": "mean |rotate(f(x)) − f(rotate(x))|",
    "agreement": "argmax agreement",
    "logit_change": "max |Δ logit|",
}


def _array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _tile(angles: np.ndarray, values: np.ndarray, period: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Repeat a curve measured on [0, period] up to ``end`` (drops the duplicate point at each seam)."""
    inner = angles < period - 1e-9
    reps = int(round(end / period))
    tiled_a = np.concatenate([angles[inner] + k * period for k in range(reps)] + [angles[~inner] + (reps - 1) * period])
    tiled_v = np.concatenate([values[inner]] * reps + [values[~inner]])
    return tiled_a, tiled_v


def plot_equivariance_curves(
    angles: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    measure: str = "dice",
    period: float | None = 90.0,
    full_turn: bool = True,
    xlabel: str = "rotation angle (°)",
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """One figure, one curve per network: ``measure`` (e.g. per-angle mean Dice) against the angle.

    Args:
        angles: (A,) angles in degrees (or group element indices with ``period=None``).
        curves: network name -> (A,) values (e.g. ``EquivarianceMetric.aggregate()["dice"]``).
        measure: key into :data:`MEASURE_LABELS` for the y label (any string is accepted).
        period: draw a vertical line at every multiple (the 90° period of grid symmetries); None for none.
        full_turn: show 0°–360°; a curve measured only on [0, period] is repeated (dotted) with the period.
        xlabel, title: axis label and title.
        path: when given, also save the PNG there.
    """
    angles_np = _array(angles)
    if angles_np.ndim != 1 or not len(curves):
        raise ValueError("expected 1-D angles and at least one curve")
    fig = _new_figure(8.0, 4.0)
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(len(curves))]
    end = 360.0 if full_turn and period else float(angles_np.max())
    for colour, (name, values) in zip(colours, curves.items()):
        values_np = _array(values)
        if values_np.shape != angles_np.shape:
            raise ValueError(f"curve {name!r} has shape {values_np.shape}, angles have {angles_np.shape}")
        ax.plot(angles_np, values_np, "-o", color=colour, markersize=3, label=name)
        if full_turn and period and angles_np.max() <= period + 1e-9 and end > period:
            tiled_a, tiled_v = _tile(angles_np, values_np, period, end)
            later = tiled_a >= angles_np.max() - 1e-9
            ax.plot(tiled_a[later], tiled_v[later], ":", color=colour)
    if period:
        for k in range(int(end // period) + 1):
            ax.axvline(k * period, color="0.75", linewidth=0.8, zorder=0)
        ax.set_xticks(np.arange(0, end + 1e-9, period / 2))
    ax.set_xlim(float(min(0.0, angles_np.min())), end)
    ax.set_xlabel(xlabel)
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
    xlabel: str = "rotation angle (°)",
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Per-angle box plots of the per-image values (outliers visible), networks side by side.

    Args:
        angles: (A,) angles (tick labels).
        per_image: network name -> (N, A) values (``EquivarianceMetric.aggregate("none")[measure]``).
    """
    angles_np = _array(angles)
    n_angles, n_nets = len(angles_np), len(per_image)
    if n_angles == 0 or n_nets == 0:
        raise ValueError("expected at least one angle and one network")
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
            [values_np[:, i] for i in range(n_angles)],
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
    ax.set_xticklabels([format(a, "g") for a in angles_np], rotation=90 if n_angles > 24 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(MEASURE_LABELS.get(measure, measure))
    ax.grid(alpha=0.3, axis="y")
    ax.legend([h for h, _ in handles], [n for _, n in handles], loc="best")
    if title:
        ax.set_title(title, fontsize="medium")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_per_angle_csvs(
    csvs: Mapping[str, str | Path], path: str | Path, measure: str = "dice", title: str | None = None
) -> Figure:
    """One curve figure from several runs' ``equivariance_per_angle.csv`` (written by ``EquivarianceHandler``):
    the last epoch of each file, labelled by the mapping's keys (e.g. ``{"P4UNet": ..., "U-Net": ...}``)."""
    import csv

    curves: dict[str, list[float]] = {}
    angles: list[float] = []
    for name, csv_path in csvs.items():
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(f"no per-angle equivariance CSV at {csv_path} (expected from EquivarianceHandler)")
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or measure not in rows[0]:
            raise ValueError(f"{csv_path} has no {measure!r} column (columns: {list(rows[0]) if rows else []})")
        last = max(int(r["epoch"]) for r in rows)
        rows = sorted((r for r in rows if int(r["epoch"]) == last), key=lambda r: float(r["angle"]))
        run_angles = [float(r["angle"]) for r in rows]
        if angles and run_angles != angles:
            raise ValueError(f"{csv_path} measured angles {run_angles}, the other runs {angles}")
        angles = run_angles
        curves[name] = [float(r[measure]) for r in rows]
    return plot_equivariance_curves(angles, curves, measure=measure, title=title, path=path)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
