"""Finite groups as data: elements, Cayley table, and their action on kernels and tensors."""

from monai_equivariant.groups.catalogue import GROUP_NAMES, as_group, get_group
from monai_equivariant.groups.group import Group, KernelAction
from monai_equivariant.groups.rotate import resample, rotate, rotation_matrix_2d

__all__ = [
    "GROUP_NAMES",
    "Group",
    "KernelAction",
    "as_group",
    "get_group",
    "resample",
    "rotate",
    "rotation_matrix_2d",
]
