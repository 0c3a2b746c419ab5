"""Equivariance checks and export to plain torch (TorchScript, ONNX)."""

from monai_equivariant.utils.equivariance import (
    FIELD_TYPES,
    assert_equivariant,
    check_equivariance,
    disk_mask,
    rotation_error_curve,
)
from monai_equivariant.utils.export import add_onnx_metadata, check_onnx_input, export, export_onnx, scriptable

__all__ = [
    "FIELD_TYPES",
    "add_onnx_metadata",
    "assert_equivariant",
    "check_equivariance",
    "check_onnx_input",
    "disk_mask",
    "export",
    "export_onnx",
    "rotation_error_curve",
    "scriptable",
]
