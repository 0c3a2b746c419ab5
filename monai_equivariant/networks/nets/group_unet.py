"""GroupUNet: one U-Net for every group (p4, p4m, SE(2,N), cube groups, trivial = plain baseline)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers import GroupPool
from monai_equivariant.networks.blocks import GroupDoubleConv
from monai_equivariant.networks.nets.input_check import check_levels
from monai_equivariant.networks.nets.unet_skeleton import UNetSkeleton

__all__ = ["GroupUNet", "P4UNet", "P4MUNet", "matched_channels"]


def matched_channels(
    channels: Sequence[int],
    from_group: str | Group,
    to_group: str | Group,
    spatial_dims: int | None = None,
    by: str = "params",
) -> tuple[int, ...]:
    """Channels giving (about) the same parameter count, or the same conv FLOPs, under another group.

    A group conv from C_in to C_out fields expands into one planar conv with C_out·|G| output and C_in·|G|
    input channels (C_in input channels for the lifting conv), and stores C_out·C_in·|G| weights per tap:

    - ``by="params"``: equal weights, |G_from|·C_from² = |G_to|·C_to², so
      ``C_to = C_from · sqrt(|G_from| / |G_to|)``. Example: p4 fields (8, 16, 32, 64, 128) <-> plain channels
      (16, 32, 64, 128, 256).
    - ``by="flops"``: equal multiply-adds, (C_from·|G_from|)² = (C_to·|G_to|)² per tap and pixel, so
      ``C_to = C_from · |G_from| / |G_to|``: the same feature-map widths (lifting conv and 1×1 head: the same
      up to the group pooling before the head). Example: p4 fields (8, ..., 128) <-> plain channels
      (32, ..., 512). Interpolated groups (se2_N) count their disk-masked taps too: the planar conv runs them.

    Channels are rounded to the nearest integer (at least 1), so matches are approximate for small widths.

    Args:
        channels: channels (fields) per level under ``from_group``.
        from_group, to_group: group names or :class:`Group` (``"trivial"`` = plain).
        spatial_dims: resolves group names valid in several dimensions (``"trivial"``).
        by: ``"params"`` or ``"flops"``.
    """
    if by not in ("params", "flops"):
        raise ValueError(f"by must be 'params' or 'flops', got {by!r}")
    g_from, g_to = as_group(from_group, spatial_dims), as_group(to_group, spatial_dims)
    ratio = g_from.order / g_to.order
    scale = math.sqrt(ratio) if by == "params" else ratio
    return tuple(max(1, int(round(c * scale))) for c in channels)


class GroupUpStep(nn.Module):
    """Upsample the coarse group tensor, concatenate the skip (fields first), then two group convs."""

    def __init__(self, upsample: nn.Module, block: nn.Module) -> None:
        super().__init__()
        self.upsample = upsample
        self.block = block

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C1·|G|, *s/stride), skip (B, C2·|G|, *s) -> (B, C_out·|G|, *s)."""
        return self.block(torch.cat([skip, self.upsample(x)], dim=1))


class GroupUNet(UNetSkeleton):
    """U-Net whose every conv is a group conv; equivariant to ``group`` (exactly, for grid groups).

    Layout per level: (lifting at level 0, else group) conv + norm + act, group conv + norm + act; spatial
    max-pool down by ``strides``; (bi/tri)linear upsampling + skip concat + two group convs up; then group
    max-pool (invariant fields) and a 1×1 plain conv.

    Args:
        spatial_dims: 2 or 3 (must match the group).
        in_channels: channels of the plain input.
        out_channels: channels of the plain output.
        channels: fields per level (the tensor carries fields·|G| channels).
        group: group name (``"p4"``, ``"p4m"``, ``"O"``, ``"trivial"``...) or a :class:`Group`.
        strides: down-sampling factor between consecutive levels (default 2 each; max-pool kernel = stride).
        kernel_size: odd kernel size.
        act, norm: MONAI-style specs (``"relu"``, ``("leakyrelu", {...})``; ``"batch"``, ``"instance"``).
        dropout: dropout probability after every activation.
        bias: conv biases.

    Input (B, in_channels, *spatial) with every spatial size divisible by prod(strides); output
    (B, out_channels, *spatial). For grid groups ``f(g·x) == g·f(x)`` to float round-off.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        group: str | Group = "p4",
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        act: str | tuple | None = Act.RELU,
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        group = as_group(group, spatial_dims)
        channels, strides = check_levels(channels, strides, min_levels=2)
        block = dict(kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias)
        pool_cls = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        mode = "bilinear" if spatial_dims == 2 else "trilinear"

        encoder = nn.ModuleList([GroupDoubleConv(group, in_channels, channels[0], lifting=True, **block)])
        for level in range(1, len(channels)):
            encoder.append(
                nn.Sequential(
                    pool_cls(strides[level - 1]),
                    GroupDoubleConv(group, channels[level - 1], channels[level], **block),
                )
            )
        decoder = nn.ModuleList(
            [
                GroupUpStep(
                    nn.Upsample(scale_factor=float(strides[level]), mode=mode, align_corners=False),
                    GroupDoubleConv(group, channels[level + 1] + channels[level], channels[level], **block),
                )
                for level in range(len(channels) - 2, -1, -1)
            ]
        )
        project = GroupPool(group.order, mode="max")
        conv_cls = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        head = conv_cls(channels[0], out_channels, kernel_size=1)
        super().__init__(encoder, decoder, project, head, in_channels, math.prod(strides), spatial_dims)
        self.group = group
        self.out_channels = int(out_channels)
        self.channels, self.strides = tuple(channels), tuple(strides)


class P4UNet(GroupUNet):
    """:class:`GroupUNet` for p4 (90° rotations). Defaults: fields (8, 16, 32, 64, 128), ≈1.96M parameters
    with 3 input channels, the same budget as the plain U-Net with channels (16, 32, 64, 128, 256)."""

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        **kwargs,
    ) -> None:
        if "group" in kwargs:
            raise TypeError("P4UNet fixes group='p4'; use GroupUNet for another group")
        super().__init__(spatial_dims, in_channels, out_channels, channels, group="p4", **kwargs)


class P4MUNet(GroupUNet):
    """:class:`GroupUNet` for p4m (90° rotations and reflections). Default fields (6, 11, 23, 45, 91) match the
    plain U-Net (16, ..., 256) parameter budget (see :func:`matched_channels`)."""

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (6, 11, 23, 45, 91),
        **kwargs,
    ) -> None:
        if "group" in kwargs:
            raise TypeError("P4MUNet fixes group='p4m'; use GroupUNet for another group")
        super().__init__(spatial_dims, in_channels, out_channels, channels, group="p4m", **kwargs)
