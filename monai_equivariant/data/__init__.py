"""Real dataset loaders and built-in synthetic defaults."""

from monai_equivariant.data.luna16 import (
    MetaImageHeader,
    extract_patch,
    luna16_patches,
    read_candidates,
    read_metaimage,
    read_metaimage_header,
    world_to_voxel,
)
from monai_equivariant.data.nodule_mnist3d import NODULE_MNIST3D_FILES, nodule_mnist3d, nodule_mnist3d_path
from monai_equivariant.data.synthetic import synthetic_polyp
from monai_equivariant.data.synthetic_nodules import random_rotation, synthetic_nodule_patch, synthetic_nodules

__all__ = [
    "MetaImageHeader",
    "NODULE_MNIST3D_FILES",
    "extract_patch",
    "luna16_patches",
    "nodule_mnist3d",
    "nodule_mnist3d_path",
    "random_rotation",
    "read_candidates",
    "read_metaimage",
    "read_metaimage_header",
    "synthetic_nodule_patch",
    "synthetic_nodules",
    "synthetic_polyp",
    "world_to_voxel",
]
