"""SE(2,N) networks (Bekkers et al.): the SE(2,N) U-Net and a rotation-invariant patch classifier.

Both sample N planar rotations; kernels are rotated by the group's bilinear interpolation operator inside
the disk mask, so any N works. They are exactly equivariant (invariant) under 90° rotations when 4 divides
N, and approximately in between (see :func:`monai_equivariant.utils.rotation_error_curve`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act

from monai_equivariant.groups import Group, get_group
from monai_equivariant.layers import GroupPool
from monai_equivariant.networks.blocks import GroupDoubleConv
from monai_equivariant.networks.nets.group_unet import GroupUNet

__all__ = ["SE2CNN", "SE2UNet", "se2_group"]


def se2_group(num_rotations: int) -> Group:
    """The group ``se2_<num_rotations>``; ValueError unless num_rotations is an integer ≥ 1."""
    if isinstance(num_rotations, bool) or not isinstance(num_rotations, numbers.Integral) or num_rotations < 1:
        raise ValueError(f"num_rotations must be an integer ≥ 1, got {num_rotations!r}")
    return get_group(f"se2_{int(num_rotations)}")


class SE2UNet(GroupUNet):
    """:class:`GroupUNet` for SE(2,N): N sampled rotations, interpolated kernels.

    Default fields (5, 9, 18, 37, 74) give, at the default N=12, the plain U-Net's (16, ..., 256) budget:
    1,955,673 parameters with 3 input channels (plain U-Net 1,965,569, see :func:`matched_channels`), of
    which 1,087,071 are unmasked (the disk mask zeroes the corner taps of 3×3 kernels). With fixed fields the
    parameter count grows linearly with N. Exactly equivariant under 90° rotations when 4 divides N.

    Args:
        spatial_dims: must be 2.
        in_channels, out_channels, channels: as :class:`GroupUNet` (channels count fields per level).
        num_rotations: N ≥ 1.
        **kwargs: the other :class:`GroupUNet` arguments (strides, kernel_size, act, norm, dropout, bias).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (5, 9, 18, 37, 74),
        num_rotations: int = 12,
        **kwargs,
    ) -> None:
        if "group" in kwargs:
            raise TypeError("SE2UNet sets the group from num_rotations; use GroupUNet for another group")
        if spatial_dims != 2:
            raise ValueError(f"SE2UNet is 2D: spatial_dims must be 2, got {spatial_dims}")
        group = se2_group(num_rotations)
        super().__init__(spatial_dims, in_channels, out_channels, channels, group=group, **kwargs)
        self.num_rotations = group.order


class SE2CNN(nn.Module):
    """Rotation-invariant patch classifier (Bekkers et al.'s SE(2,N) CNN for mitosis / PCam-style patches).

    lifting conv block + group conv block (level 0), then per further level a 2×2 max-pool and two group
    conv blocks; projection (max over the N orientations); global spatial average; linear layer.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of the plain input patch.
        out_channels: number of logits.
        num_rotations: N ≥ 1 sampled rotations.
        channels: fields per level (the group tensors carry fields·N channels).
        kernel_size: odd kernel size; the disk mask keeps 13 of the 25 taps of a 5×5 kernel (5 of 9 at 3×3).
        act, norm, dropout, bias: as :class:`GroupUNet`; ``dropout`` also applies before the linear layer.

    Input (B, in_channels, H, W) with H and W divisible by 2^(len(channels) - 1); output (B, out_channels)
    logits, invariant to rotations of the input by multiples of 90° (exactly, when 4 divides N).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        num_rotations: int = 8,
        channels: Sequence[int] = (8, 16, 32),
        kernel_size: int = 5,
        act: str | tuple | None = Act.RELU,
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"SE2CNN is 2D: spatial_dims must be 2, got {spatial_dims}")
        self.group = se2_group(num_rotations)
        self.num_rotations = self.group.order
        channels = [int(c) for c in channels]
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels needs at least one positive entry, got {channels}")
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ValueError(f"in_channels and out_channels must be ≥ 1, got {in_channels}, {out_channels}")
        self.spatial_dims = 2
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.channels = tuple(channels)
        self.size_multiple = 2 ** (len(channels) - 1)
        block = dict(kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias)
        levels: list[nn.Module] = [GroupDoubleConv(self.group, self.in_channels, channels[0], lifting=True, **block)]
        for level in range(1, len(channels)):
            levels += [nn.MaxPool2d(2), GroupDoubleConv(self.group, channels[level - 1], channels[level], **block)]
        self.features = nn.Sequential(*levels)
        self.project = GroupPool(self.group.order, mode="max")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(float(dropout)) if dropout else nn.Identity()
        self.classifier = nn.Linear(channels[-1], self.out_channels)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, H, W) with H, W divisible by 2^(levels - 1)."""
        if x.dim() != 4:
            raise ValueError("SE2CNN expects a (B, C, H, W) input, got " + str(x.dim()) + " dims")
        if x.shape[1] != self.in_channels:
            raise ValueError("expected " + str(self.in_channels) + " input channels, got " + str(x.shape[1]))
        for size in x.shape[2:]:
            if size % self.size_multiple != 0:
                raise ValueError(
                    "spatial size " + str(size) + " is not a multiple of " + str(self.size_multiple)
                    + " (2 ** number of 2x2 max-pools); rotation invariance needs every spatial size divisible"
                    " by it: crop or pad the input"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels) logits."""
        self.check_input(x)
        fields = self.project(self.features(x))  # (B, channels[-1], H', W'), rotates with the input
        return self.classifier(self.dropout(torch.flatten(self.pool(fields), 1)))
