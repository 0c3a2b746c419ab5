"""Real dataset loaders and built-in synthetic defaults."""

from monai_equivariant.data.pcam import PCamPatches, histopathology_dataset, pcam_files
from monai_equivariant.data.polyp import find_polyp_pairs, polyp_datalist, split_datalist
from monai_equivariant.data.synthetic import synthetic_polyp, synthetic_tissue_patch, write_synthetic_polyp_dataset

__all__ = [
    "PCamPatches",
    "find_polyp_pairs",
    "histopathology_dataset",
    "pcam_files",
    "polyp_datalist",
    "split_datalist",
    "synthetic_polyp",
    "synthetic_tissue_patch",
    "write_synthetic_polyp_dataset",
]
