"""Building blocks on group tensors."""

from monai_equivariant.networks.blocks.conv_block import GroupConvBlock, GroupDoubleConv
from monai_equivariant.networks.blocks.residual_block import GroupResidualBlock

__all__ = ["GroupConvBlock", "GroupDoubleConv", "GroupResidualBlock"]
