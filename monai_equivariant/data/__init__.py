"""Real dataset loaders and built-in synthetic defaults."""

from monai_equivariant.data.bbbc038 import BBBC038_SAMPLE_DIR, load_bbbc038_sample
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
from monai_equivariant.data.pcam import PCamPatches, histopathology_dataset, pcam_files
from monai_equivariant.data.polyp import (
    find_polyp_pairs,
    mask_image,
    polyp_datalist,
    read_polyp_datalist,
    rgb_image,
    split_datalist,
)
from monai_equivariant.data.synthetic import synthetic_polyp, synthetic_tissue_patch, write_synthetic_polyp_dataset
from monai_equivariant.data.synthetic_nodules import random_rotation, synthetic_nodule_patch, synthetic_nodules
from monai_equivariant.data.decathlon import (
    decathlon_datalist,
    decathlon_labels,
    decathlon_modalities,
    write_decathlon_json,
    write_nifti,
)
from monai_equivariant.data.synthetic_organs import (
    ORGAN_LABELS,
    organ_datalist,
    organ_in_channels,
    organ_label_permutation,
    organ_num_classes,
    synthetic_organ_volume,
    write_synthetic_organ_dataset,
)

__all__ = [
    "BBBC038_SAMPLE_DIR",
    "load_bbbc038_sample",
    "MetaImageHeader",
    "NODULE_MNIST3D_FILES",
    "PCamPatches",
    "extract_patch",
    "find_polyp_pairs",
    "histopathology_dataset",
    "luna16_patches",
    "mask_image",
    "nodule_mnist3d",
    "nodule_mnist3d_path",
    "pcam_files",
    "polyp_datalist",
    "read_polyp_datalist",
    "random_rotation",
    "read_candidates",
    "rgb_image",
    "read_metaimage",
    "read_metaimage_header",
    "split_datalist",
    "synthetic_nodule_patch",
    "synthetic_nodules",
    "synthetic_polyp",
    "synthetic_tissue_patch",
    "world_to_voxel",
    "write_synthetic_polyp_dataset",
    "decathlon_datalist",
    "decathlon_labels",
    "decathlon_modalities",
    "write_decathlon_json",
    "write_nifti",
    "ORGAN_LABELS",
    "organ_datalist",
    "organ_in_channels",
    "organ_label_permutation",
    "organ_num_classes",
    "synthetic_organ_volume",
    "write_synthetic_organ_dataset",
]
