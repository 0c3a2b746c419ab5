"""Equivariance checks, export to plain torch, and distributed shutdown."""

from monai_equivariant.utils.equivariance import (
    FIELD_TYPES,
    assert_equivariant,
    check_equivariance,
    disk_mask,
    rotation_error_curve,
)
from monai_equivariant.utils.distributed import shutdown_distributed
from monai_equivariant.utils.export import export, scriptable

__all__ = [
    "FIELD_TYPES",
    "assert_equivariant",
    "check_equivariance",
    "disk_mask",
    "export",
    "rotation_error_curve",
    "scriptable",
    "shutdown_distributed",
]
