"""metrics for monai_equivariant."""

from monai_equivariant.metrics.froc import LUNA16_FP_RATES, classification_scores, froc_curve, luna16_froc  # noqa: E402

__all__ = ["LUNA16_FP_RATES", "classification_scores", "froc_curve", "luna16_froc"]
