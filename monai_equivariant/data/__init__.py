"""Real dataset loaders and built-in synthetic defaults."""

from monai_equivariant.data.synthetic import synthetic_polyp

__all__ = ["synthetic_polyp"]
