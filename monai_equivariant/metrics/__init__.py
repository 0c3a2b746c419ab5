"""Equivariance metrics (one ``EquivarianceHelper`` under ``compute_equivariance`` and the MONAI Cumulative metric);
LUNA16 FROC and AUC/accuracy. The plots live in :mod:`monai_equivariant.visualize` (re-exported here for older code)."""

from monai_equivariant.metrics.equivariance import (
    CLASSIFICATION_MEASURES,
    DEFAULT_ANGLES_2D,
    SEGMENTATION_MEASURES,
    EquivarianceMetric,
    Transformations,
    compute_equivariance,
    equivariance_transformations,
    valid_region,
)
from monai_equivariant.metrics.equivariance_helper import EquivarianceHelper, reduce_metric
from monai_equivariant.metrics.froc import (
    LUNA16_FP_RATES,
    LUNA16FROCMetric,
    classification_scores,
    froc_curve,
    luna16_froc,
)

# thin re-export for code written before the plots moved to monai_equivariant.visualize (kept: users import them here)
from monai_equivariant.visualize import (
    plot_equivariance_boxplots,
    plot_equivariance_curves,
    plot_per_angle_csvs,
    save_figure,
)

__all__ = [
    "CLASSIFICATION_MEASURES",
    "DEFAULT_ANGLES_2D",
    "LUNA16_FP_RATES",
    "LUNA16FROCMetric",
    "SEGMENTATION_MEASURES",
    "EquivarianceHelper",
    "EquivarianceMetric",
    "Transformations",
    "classification_scores",
    "compute_equivariance",
    "equivariance_transformations",
    "froc_curve",
    "luna16_froc",
    "plot_equivariance_boxplots",
    "plot_equivariance_curves",
    "plot_per_angle_csvs",
    "reduce_metric",
    "save_figure",
    "valid_region",
]
