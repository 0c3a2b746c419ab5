"""Plots, as ``monai.visualize``: equivariance curves over angles or group elements, per-image box plots."""

from monai_equivariant.visualize.equivariance import (
    AXES,
    MEASURE_LABELS,
    plot_equivariance_boxplots,
    plot_equivariance_curves,
    plot_per_angle_csvs,
    read_per_angle_csv,
    save_figure,
)

__all__ = [
    "AXES",
    "MEASURE_LABELS",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "plot_per_angle_csvs",
    "read_per_angle_csv",
    "save_figure",
]
