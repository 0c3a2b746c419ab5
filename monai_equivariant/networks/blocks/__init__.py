"""Building blocks on group tensors (conv-norm-act units, residual units) and the MONAI-style layer specs they
parse (importing this package registers the group norms in MONAI's ``Norm`` factory)."""

from monai_equivariant.networks.blocks.checkpointing import checkpoint_segment
from monai_equivariant.networks.blocks.conv_block import GroupConvBlock, GroupDoubleConv
from monai_equivariant.networks.blocks.factories import (
    as_kernel_size,
    get_group_act_layer,
    get_group_dropout_layer,
    get_group_norm_layer,
)
from monai_equivariant.networks.blocks.residual_block import GroupResidualBlock, GroupResidualUnit

__all__ = [
    "GroupConvBlock",
    "GroupDoubleConv",
    "GroupResidualBlock",
    "GroupResidualUnit",
    "as_kernel_size",
    "checkpoint_segment",
    "get_group_act_layer",
    "get_group_dropout_layer",
    "get_group_norm_layer",
]
