"""Generic equivariant layers: one implementation for every group and for 2D/3D."""

from monai_equivariant.layers.conv import GroupConv, LiftingConv, expand_filter
from monai_equivariant.layers.filter_cache import clear_filter_caches, filter_cache_check, frozen_filters
from monai_equivariant.layers.lateral_head import LateralGroupHead
from monai_equivariant.layers.norm import GroupBatchNorm, GroupInstanceNorm
from monai_equivariant.layers.pool import GroupPool
from monai_equivariant.layers.separable import SeparableGroupConv
from monai_equivariant.layers.subgroup_pool import SubgroupPool
from monai_equivariant.layers.transposed import GroupConvTranspose

__all__ = [
    "GroupBatchNorm",
    "GroupConv",
    "GroupConvTranspose",
    "GroupInstanceNorm",
    "GroupPool",
    "LateralGroupHead",
    "LiftingConv",
    "SeparableGroupConv",
    "SubgroupPool",
    "clear_filter_caches",
    "expand_filter",
    "filter_cache_check",
    "frozen_filters",
]
