"""Equivariance checks and export to plain torch."""

from monai_equivariant.utils.equivariance import FIELD_TYPES, assert_equivariant, check_equivariance
from monai_equivariant.utils.export import export, scriptable

__all__ = ["FIELD_TYPES", "assert_equivariant", "check_equivariance", "export", "scriptable"]
