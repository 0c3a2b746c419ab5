"""Equivariance checks and export to plain torch."""

from monai_equivariant.utils.equivariance import (
    FIELD_TYPES,
    assert_equivariant,
    check_equivariance,
    disk_mask,
    rotation_error_curve,
)
from monai_equivariant.utils.export import export

__all__ = [
    "FIELD_TYPES",
    "assert_equivariant",
    "check_equivariance",
    "disk_mask",
    "export",
    "rotation_error_curve",
]
