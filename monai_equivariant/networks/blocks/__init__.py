"""Building blocks on group tensors."""

from monai_equivariant.networks.blocks.conv_block import GroupConvBlock, GroupDoubleConv

__all__ = ["GroupConvBlock", "GroupDoubleConv"]
