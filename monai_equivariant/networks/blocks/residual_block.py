"""Residual unit on group tensors: two group convs with norm and activation, plus an identity or 1×1
group-conv shortcut (ResNet "basic block" on any group)."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act
from monai.networks.layers.utils import get_act_layer

from monai_equivariant.groups import Group
from monai_equivariant.networks.blocks.conv_block import GroupConvBlock

__all__ = ["GroupResidualBlock"]


class GroupResidualBlock(nn.Module):
    """``act(norm(conv(act(norm(conv(x))))) + shortcut(x))`` on group tensors.

    (B, C_in·|G|, *spatial) -> (B, C_out·|G|, *spatial). The shortcut is the identity when C_in == C_out, else a
    1×1 group conv followed by a group norm. Every piece is equivariant, so the block is.

    Args:
        group: the group of the fields.
        in_fields, out_fields: fields C_in, C_out.
        kernel_size: odd kernel size of the two convs.
        act, norm: MONAI-style specs (``"relu"``; ``"batch"``, ``"instance"``, None).
        dropout: dropout probability after the first activation.
        bias: conv biases.
    """

    def __init__(
        self,
        group: Group,
        in_fields: int,
        out_fields: int,
        kernel_size: int = 3,
        act: str | tuple | None = Act.RELU,
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        unit = dict(kernel_size=kernel_size, norm=norm, bias=bias)
        self.residual = nn.Sequential(
            GroupConvBlock(group, in_fields, out_fields, act=act, dropout=dropout, **unit),
            GroupConvBlock(group, out_fields, out_fields, act=None, **unit),
        )
        if in_fields == out_fields:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = GroupConvBlock(group, in_fields, out_fields, kernel_size=1, act=None, norm=norm, bias=bias)
        self.act = get_act_layer(act) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in·|G|, *spatial) -> (B, C_out·|G|, *spatial)."""
        return self.act(self.residual(x) + self.shortcut(x))
