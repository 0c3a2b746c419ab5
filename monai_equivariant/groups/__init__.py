"""Finite groups as data: elements, Cayley table, and their action on kernels and tensors."""

from monai_equivariant.groups.admissible import check_plan, first_misfit, largest_admissible_group
from monai_equivariant.groups.catalogue import GROUP_NAMES, as_group, get_group
from monai_equivariant.groups.group import Group, KernelAction, kernel_shape
from monai_equivariant.groups.rotate import resample, rotate, rotation_matrix_2d

__all__ = [
    "GROUP_NAMES",
    "Group",
    "KernelAction",
    "as_group",
    "check_plan",
    "first_misfit",
    "get_group",
    "kernel_shape",
    "largest_admissible_group",
    "resample",
    "rotate",
    "rotation_matrix_2d",
]
