"""Conv → norm → activation → dropout units on group tensors, and the two-conv U-Net level."""

from __future__ import annotations

import torch.nn as nn
from monai.networks.layers.factories import Act
from monai.networks.layers.utils import get_act_layer

from monai_equivariant.groups import Group
from monai_equivariant.layers import GroupConv, LiftingConv, get_group_norm

__all__ = ["GroupConvBlock", "GroupDoubleConv"]


class GroupConvBlock(nn.Sequential):
    """One (lifting or group) conv, group norm, pointwise activation and dropout.

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial); ``lifting=True`` takes a plain input.
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
        lifting: bool = False,
    ) -> None:
        conv_cls = LiftingConv if lifting else GroupConv
        layers: list[nn.Module] = [conv_cls(in_fields, out_fields, group, kernel_size, bias=bias)]
        layers.append(get_group_norm(norm, out_fields, group.order, group.spatial_dims))
        if act is not None:
            layers.append(get_act_layer(act))
        if dropout:
            layers.append(nn.Dropout(float(dropout)))
        super().__init__(*layers)


class GroupDoubleConv(nn.Sequential):
    """Two :class:`GroupConvBlock` in a row (one U-Net level); the first lifts when ``lifting=True``."""

    def __init__(self, group: Group, in_fields: int, out_fields: int, lifting: bool = False, **kwargs) -> None:
        super().__init__(
            GroupConvBlock(group, in_fields, out_fields, lifting=lifting, **kwargs),
            GroupConvBlock(group, out_fields, out_fields, **kwargs),
        )
