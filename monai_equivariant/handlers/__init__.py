"""Ignite handlers (equivariance measured during validation)."""

from monai_equivariant.handlers.equivariance import EquivarianceHandler

__all__ = ["EquivarianceHandler"]
