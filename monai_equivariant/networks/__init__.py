"""Equivariant networks and their building blocks."""

from monai_equivariant.networks import blocks, nets

__all__ = ["blocks", "nets"]
