"""Equivariance metrics (MONAI Cumulative metrics) and their plots."""

from monai_equivariant.metrics.equivariance import (
    CLASSIFICATION_MEASURES,
    DEFAULT_ANGLES_2D,
    SEGMENTATION_MEASURES,
    EquivarianceMetric,
    valid_region,
)
from monai_equivariant.metrics.plots import plot_equivariance_boxplots, plot_equivariance_curves, save_figure

__all__ = [
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "SEGMENTATION_MEASURES",
    "EquivarianceMetric",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "save_figure",
    "valid_region",
]
