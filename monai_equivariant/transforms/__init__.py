"""MONAI transforms over a group: one element, a random element (augmentation over the whole group), invertible."""

from monai_equivariant.transforms.group_element import (
    GroupElement,
    GroupElementd,
    RandGroupElement,
    RandGroupElementd,
    group_element_affine,
    label_layout,
    permute_labels,
)

__all__ = [
    "GroupElement",
    "GroupElementd",
    "RandGroupElement",
    "RandGroupElementd",
    "group_element_affine",
    "label_layout",
    "permute_labels",
]
