"""Real dataset loaders and built-in synthetic defaults."""

from monai_equivariant.data.polyp import find_polyp_pairs, polyp_datalist, split_datalist
from monai_equivariant.data.synthetic import synthetic_polyp, write_synthetic_polyp_dataset

__all__ = ["find_polyp_pairs", "polyp_datalist", "split_datalist", "synthetic_polyp", "write_synthetic_polyp_dataset"]
