"""Equivariance metrics (MONAI Cumulative metrics) and their plots; LUNA16 FROC and AUC/accuracy."""

from monai_equivariant.metrics.equivariance import (
    CLASSIFICATION_MEASURES,
    DEFAULT_ANGLES_2D,
    SEGMENTATION_MEASURES,
    EquivarianceMetric,
    valid_region,
)
from monai_equivariant.metrics.froc import LUNA16_FP_RATES, classification_scores, froc_curve, luna16_froc
from monai_equivariant.metrics.plots import (
    plot_equivariance_boxplots,
    plot_equivariance_curves,
    plot_per_angle_csvs,
    save_figure,
)

__all__ = [
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "LUNA16_FP_RATES",
    "SEGMENTATION_MEASURES",
    "EquivarianceMetric",
    "classification_scores",
    "froc_curve",
    "luna16_froc",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "plot_per_angle_csvs",
    "save_figure",
    "valid_region",
]
