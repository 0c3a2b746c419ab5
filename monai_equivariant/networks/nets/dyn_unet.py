"""GroupDynUNet: the equivariant twin of MONAI's DynUNet (nnU-Net), exact under a grid group, anisotropic plans too."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

from monai_equivariant.groups import Group, as_group, check_plan
from monai_equivariant.groups.admissible import plan_sides
from monai_equivariant.layers.conv import check_route
from monai_equivariant.layers.plain import ScriptsAsExport
from monai_equivariant.networks.blocks import GroupConvBlock, GroupResidualBlock
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    check_separable,
    get_group_dropout_layer,
)
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.group_unet import matched_channels
from monai_equivariant.networks.nets.heads import segmentation_head
from monai_equivariant.networks.nets.input_check import ParameterDtype, check_input
from monai_equivariant.networks.nets.route import RoutedNetwork

__all__ = ["GroupDynUNet", "default_plan", "size_period", "up_kernel_sides"]

Plan = Sequence[Sequence[int] | int]
_DEFAULT_GROUP = {2: "p4", 3: "D4h"}


def up_kernel_sides(upsample_kernel_size: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    """The transposed conv's kernel per axis: an odd side as given, an even one (MONAI's convention: kernel =
    stride) made odd by one more tap, with padding side // 2. Any odd kernel with padding k // 2 maps a coarse side
    m onto ``(m - 1)·s + 1``, the odd grid the strided conv came from; an even kernel would give ``m·s``.

    ``strides`` only checks that the kernel covers the stride (every fine pixel gets a tap)."""
    sides = tuple(int(k) + (1 - int(k) % 2) for k in upsample_kernel_size)
    short = [axis for axis, (k, s) in enumerate(zip(sides, strides)) if k < int(s)]
    if short:
        raise ValueError(f"upsample_kernel_size {tuple(upsample_kernel_size)} is smaller than the stride "
                         f"{tuple(strides)} on axis {short[0]}: fine pixels would get no tap")
    return sides


def size_period(strides: Plan, spatial_dims: int) -> tuple[int, ...]:
    """Per axis the product P of the strides: a :class:`GroupDynUNet` accepts the sides ``1 + m·P`` (m ≥ 0), on which
    every strided conv (kernel k, padding k // 2) samples a grid the group maps onto itself."""
    sides = plan_sides(strides, spatial_dims, "strides")
    return tuple(math.prod(level[axis] for level in sides) for axis in range(spatial_dims))


def default_plan(spatial_dims: int, levels: int) -> dict[str, list]:
    """A DynUNet plan of ``levels`` levels (≥ 3) for the registry's builders: in 3D the anisotropic nnU-Net pattern
    (1×3×3 kernels on the first two levels, in-plane stride (1, 2, 2) into level 1, then 3×3×3 kernels and stride
    2), in 2D 3×3 kernels with stride 1 then 2; ``upsample_kernel_size`` = ``strides[1:]`` as MONAI's.
    Admissible sides: ``1 + m·P`` with P per axis the product of the strides (:func:`size_period`)."""
    if spatial_dims == 3:
        kernels = [[1, 3, 3]] * min(2, levels) + [[3, 3, 3]] * max(0, levels - 2)
        strides = [[1, 1, 1]] + [[1, 2, 2]] * min(1, levels - 1) + [[2, 2, 2]] * max(0, levels - 2)
    else:
        kernels = [[3, 3]] * levels
        strides = [[1, 1]] + [[2, 2]] * max(0, levels - 1)
    return {"kernel_size": kernels, "strides": strides, "upsample_kernel_size": strides[1:]}


def _plain_twin(channels_as: str, same: tuple, filters: Sequence[int], options: dict) -> nn.Module:
    """The plain net ``channels_as`` matches: MONAI's own ``DynUNet`` for ``"params"`` (the net a swap replaces), the
    same plan without the group (``GroupDynUNet(group="trivial")``) for ``"flops"`` (MONAI's DynUNet takes multiples of
    the strides' products, not the odd sides 1 + m·P at which both are counted)."""
    if channels_as == "params":
        from monai.networks.nets import DynUNet

        return DynUNet(*same, filters=list(filters), **options)
    return GroupDynUNet(*same, list(filters), group=as_group("trivial", same[0]), **options)


class GroupDynUpBlock(nn.Module):
    """MONAI's ``UnetUpBlock`` on group tensors: transposed group conv (+ dropout), concatenation with the skip
    (up-sampled fields first, as MONAI), then the two conv units of the level.

    x (B, C_in·|G|, *m), skip (B, C_out·|G|, *((m - 1)·stride + 1)) -> (B, C_out·|G|, *((m - 1)·stride + 1)).
    """

    def __init__(self, transposed: nn.Module, dropout: nn.Module | None, block: nn.Module) -> None:
        super().__init__()
        self.transp_conv = transposed
        self.dropout = dropout if dropout is not None else nn.Identity()
        self.conv_block = block

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.dropout(self.transp_conv(x)), skip], dim=1))


class GroupDynUNet(ParameterDtype, RoutedNetwork, ScriptsAsExport, nn.Module):
    """MONAI's ``DynUNet`` (nnU-Net) with group convolutions: exactly equivariant to a grid group on its admissible
    input sizes, also for anisotropic plans (per-level kernels like 1×3×3 and strides like (1, 2, 2)).

    Layout as MONAI's: an input block (lifting conv units), ``len(strides) - 2`` down-sampling blocks and a bottleneck
    (the first conv of each strided by ``strides[level]``), up-sampling blocks (transposed group conv, skip
    concatenation, two conv units), then group max-pooling (invariant fields) and a 1×1 plain conv; deep-supervision
    heads (group pooling and a 1×1 conv) on the ``deep_supr_num`` levels above the output. The arguments are MONAI's,
    in its order, then ``group``, ``route``, ``separable``, ``label_permutation`` and ``channels_as``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the plain input.
        out_channels: channels of the plain output.
        kernel_size: per level an int or one odd side per axis (e.g. ``[[1, 3, 3], [1, 3, 3], 3, 3]``).
        strides: per level an int or one per axis (``strides[0]`` is the input block's, usually 1).
        upsample_kernel_size: per up-sampling level (``len(strides) - 1``) an int or one per axis; MONAI's usual
            ``strides[1:]`` (kernel = stride) is read as the odd kernel one tap larger (see :func:`up_kernel_sides`).
        filters: *fields* per level (the tensors carry fields·|G| channels). Default: MONAI's default channels
            (``min(2**(5+i), 320 or 512)``) scaled by ``1/sqrt(|G|)``, about MONAI's default parameter count (the
            odd up-sampling kernels add taps: 6.19M vs DynUNet's 5.41M for the nnU-Net plan of the tests, D4h).
        dropout: probability or MONAI dropout spec, after every conv (as MONAI).
        norm_name: ``"instance"`` (default, with ``affine``; statistics shared over the group axis), ``"batch"`` or
            None (MONAI's spec forms).
        act_name: MONAI act spec; default leaky ReLU with slope 0.01 (nnU-Net).
        deep_supervision: in training, return (B, 1 + deep_supr_num, out_channels, *spatial) as MONAI: the output
            and the heads of the next ``deep_supr_num`` levels, up-sampled to the output's size.
        deep_supr_num: number of deep-supervision heads (≥ 1, < len(strides) - 1).
        res_block: residual conv blocks (MONAI's ``UnetResBlock``) in the encoder.
        trans_bias: bias of the transposed convs.
        group: a grid group (name or :class:`~monai_equivariant.groups.Group`); default D4h in 3D (in-plane
            rotations and flips, axis 0 = depth kept), p4 in 2D. It must map every level's kernel, stride and
            up-sampling kernel onto itself: otherwise ValueError naming the level and the largest group that fits
            (:func:`~monai_equivariant.groups.largest_admissible_group`). ``"trivial"`` is the plain net.
        label_permutation: lateral labels under the group's reflections (e.g. ``[0, 2, 1]``): the output head and
            every deep-supervision head is a :class:`~monai_equivariant.layers.LateralGroupHead`, so
            ``f(g·x) = P_g g·f(x)`` with P_g this permutation for reflections (D4h's flips), the identity for
            rotations.
        route: how the stride-1 group convs with cubic kernels compute (``"auto"``, ``"filter"``, ``"input"``; see
            :attr:`~monai_equivariant.layers.GroupConv.route`; ``"input"`` needs equal spatial sizes there);
            strided, transposed and anisotropic convs always expand their filter.
        separable: every conv after the lifting input block but the transposed ones and the 1×1 shortcuts is a
            :class:`~monai_equivariant.layers.SeparableGroupConv` (pointwise group mixing, then a depthwise conv of
            the group-transformed kernels, strided and per-axis kernels too; exact on the same sizes).
        channels_as: how ``filters`` is read: ``"fields"`` (default), ``"params"`` (MONAI's ``DynUNet`` filters: the
            fields are solved so that this net's parameters are the closest to that ``DynUNet``'s, the net a swap
            replaces) or ``"flops"`` (conv multiply-adds per pixel equal to those of the same plan without the group,
            ``GroupDynUNet(group="trivial")``: MONAI's DynUNet takes other sides). ``net.filters`` holds the fields.

    Input (B, in_channels, *spatial) with every side ``1 + m·P`` (P per axis: the product of that axis's strides,
    :attr:`size_period`); other sizes raise ValueError naming the sizes accepted. Output (B, out_channels, *spatial')
    with ``spatial' = (spatial - 1) / strides[0] + 1`` (MONAI: spatial / strides[0]).

    Differences from ``monai.networks.nets.DynUNet`` (same arguments, so it swaps in):

    - admissible sizes are odd-grid sides ``1 + m·P`` (MONAI: multiples of P): a stride-2 conv with a 3-tap kernel
      maps the grid onto itself under flips and rotations only on sides n with (n - 1) divisible by 2; the
      transposed convs use odd kernels so that they restore exactly those sides;
    - ``filters`` count fields, so the feature maps are |G|× wider than MONAI's for equal ``filters``;
    - the output head (and every deep-supervision head) group-max-pools to invariant fields before its 1×1 conv (or,
      with ``label_permutation``, is the lateral head);
    - deep-supervision maps are up-sampled by (bi/tri)linear interpolation with ``align_corners=True`` (MONAI:
      nearest), which the group maps onto itself on these grids;
    - the up-sampling blocks' conv units have no residual form (as MONAI's ``UnetUpBlock``), the residual blocks no
      dropout in their second conv.
    """

    __jit_unused_properties__ = ["route"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Plan,
        strides: Plan,
        upsample_kernel_size: Plan,
        filters: Sequence[int] | None = None,
        dropout: DropoutSpec = None,
        norm_name: NormSpec = ("INSTANCE", {"affine": True}),
        act_name: ActSpec = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        deep_supervision: bool = False,
        deep_supr_num: int = 1,
        res_block: bool = False,
        trans_bias: bool = False,
        group: str | Group | None = None,
        route: str = "auto",
        separable: bool = False,
        label_permutation: Sequence[int] | None = None,
        channels_as: str = "fields",
    ) -> None:
        super().__init__()
        channels_as = check_channels_as(channels_as)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        group = as_group(_DEFAULT_GROUP[spatial_dims] if group is None else group, spatial_dims)
        route = check_route(route)
        kernels = plan_sides(kernel_size, spatial_dims, "kernel_size")
        steps = plan_sides(strides, spatial_dims, "strides")
        levels = len(steps)
        if len(kernels) != levels or levels < 3:
            raise ValueError(f"kernel_size and strides need one entry per level and at least 3 levels (as MONAI's "
                             f"DynUNet), got {len(kernels)} and {levels}")
        even = [(level, k) for level, k in enumerate(kernels) if any(side % 2 == 0 for side in k)]
        if even:
            raise ValueError(f"kernel_size[{even[0][0]}] = {even[0][1]}: every level's kernel needs odd sides (its "
                             "stride-1 conv keeps the grid only with a centre tap)")
        given_up = plan_sides(upsample_kernel_size, spatial_dims, "upsample_kernel_size")
        if len(given_up) != levels - 1:
            raise ValueError(f"upsample_kernel_size needs len(strides) - 1 = {levels - 1} entries, got {len(given_up)}")
        up_kernels = [up_kernel_sides(k, s) for k, s in zip(given_up, steps[1:])]
        _check_group(group, kernels, steps, up_kernels)
        deep_supervision, deep_supr_num = bool(deep_supervision), _check_supr_num(deep_supr_num, levels)
        if filters is None:
            plain = [min(2 ** (5 + i), 320 if spatial_dims == 3 else 512) for i in range(levels)]
            fields = list(matched_channels(plain, "trivial", group, spatial_dims))
        else:
            fields = [int(f) for f in filters]
            if len(fields) < levels or min(fields) < 1:
                raise ValueError(f"filters needs at least len(strides) = {levels} positive entries, got {filters!r}")
            fields = fields[:levels]
        if channels_as != "fields":
            same = (spatial_dims, in_channels, out_channels, kernel_size, strides, upsample_kernel_size)
            options = dict(dropout=dropout, norm_name=norm_name, act_name=act_name, deep_supervision=deep_supervision,
                           deep_supr_num=deep_supr_num, res_block=res_block, trans_bias=trans_bias)
            fields = list(budget_fields(
                channels_as, fields,
                lambda f: GroupDynUNet(*same, f, group=group, separable=separable,
                                       label_permutation=label_permutation, **options),
                lambda: _plain_twin(channels_as, same, fields, options),
                (in_channels, *(1 + 2 * p for p in size_period(steps, spatial_dims))), group.order,
            ))
        get_group_dropout_layer(dropout)  # ValueError naming a bad dropout spec, before anything is built
        unit = dict(group=group, act=act_name, norm=norm_name, dropout=dropout, adn_ordering="DNA",
                    separable=check_separable(separable))

        def conv_block(c_in: int, c_out: int, kernel: tuple, stride: tuple, lifting: bool, residual: bool):
            size = _compact(kernel)
            if residual:
                return GroupResidualBlock(c_in, c_out, kernel_size=size, stride=_compact(stride), lifting=lifting,
                                          bias=False, **unit)
            return nn.Sequential(
                GroupConvBlock(c_in, c_out, kernel_size=size, stride=_compact(stride), lifting=lifting, bias=False,
                               **unit),
                GroupConvBlock(c_out, c_out, kernel_size=size, bias=False, **unit),
            )

        encoder = [conv_block(in_channels, fields[0], kernels[0], steps[0], True, res_block)]
        for level in range(1, levels):
            encoder.append(conv_block(fields[level - 1], fields[level], kernels[level], steps[level], False,
                                      res_block))
        decoder = []
        for level in range(levels - 2, -1, -1):  # deepest first: from level + 1 up to level
            transposed = Conv["groupconvtrans", spatial_dims](
                fields[level + 1], fields[level], group, kernel_size=_compact(up_kernels[level]),
                stride=_compact(steps[level + 1]), bias=trans_bias,
            )
            decoder.append(GroupDynUpBlock(transposed, get_group_dropout_layer(dropout),
                                           conv_block(2 * fields[level], fields[level], kernels[level + 1],
                                                      (1,) * spatial_dims, False, False)))
        self.encoder, self.decoder = nn.ModuleList(encoder), nn.ModuleList(decoder)
        self.project, self.head = _output_head(fields[0], out_channels, group, label_permutation)
        self.head_dropout = get_group_dropout_layer(dropout) or nn.Identity()
        self.deep_supervision_heads = nn.ModuleList(
            [nn.Sequential(*_output_head(fields[level], out_channels, group, label_permutation))
             for level in range(1, deep_supr_num + 1)] if deep_supervision else []
        )
        self.label_permutation = None if label_permutation is None else list(self.head.label_permutation)
        self.spatial_dims, self.in_channels, self.out_channels = int(spatial_dims), int(in_channels), int(out_channels)
        self.group = group
        self.kernel_size = [_compact(k) for k in kernels]
        self.strides = [_compact(s) for s in steps]
        self.upsample_kernel_size = [_compact(k) for k in up_kernels]
        self.filters = tuple(fields)
        self.deep_supervision, self.deep_supr_num = deep_supervision, deep_supr_num
        self.res_block, self.trans_bias = bool(res_block), bool(trans_bias)
        self.separable = unit["separable"]
        self.channels_as = channels_as
        self.size_period: List[int] = list(size_period(steps, spatial_dims))
        self.interpolation = "bilinear" if spatial_dims == 2 else "trilinear"
        self.route = route

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError unless x is (B, in_channels, *spatial) in the network's dtype with every side ``1 + m·P``
        (P = :attr:`size_period` per axis), naming the sizes accepted."""
        check_input(x, self.spatial_dims, self.in_channels, 1, self.parameter_dtype())
        for axis in range(self.spatial_dims):
            size, period = int(x.shape[2 + axis]), self.size_period[axis]
            if (size - 1) % period != 0:
                below = size - 1 - (size - 1) % period + 1
                raise ValueError(
                    "spatial size " + str(size) + " on axis " + str(axis) + " (shape " + str(list(x.shape))
                    + ") is not admissible: GroupDynUNet accepts sides 1 + m·P with P = " + str(self.size_period)
                    + " per axis (the products of the strides), here " + str(below) + " or " + str(below + period)
                    + "; its strided convs map the grid onto itself under the group only then: crop or pad the input"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, out_channels, *spatial'), or in training with deep supervision
        (B, 1 + deep_supr_num, out_channels, *spatial')."""
        self.check_input(x)
        skips: List[torch.Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                skips.append(x)
            x = block(x)
        features: List[torch.Tensor] = []
        for step, up in enumerate(self.decoder):
            x = up(x, skips[len(skips) - 1 - step])
            features.append(x)
        out = self.head_dropout(self.head(self.project(x)))
        if self.training and self.deep_supervision:
            outputs = [out]
            for i, head in enumerate(self.deep_supervision_heads):  # head i sits on level i + 1
                level_out = head(features[len(features) - 2 - i])
                outputs.append(F.interpolate(level_out, size=out.shape[2:], mode=self.interpolation,
                                             align_corners=True))
            return torch.stack(outputs, dim=1)
        return out


def _output_head(fields: int, out_channels: int, group: Group, label_permutation: Sequence[int] | None
                 ) -> tuple[nn.Module, nn.Module]:
    """``(project, head)`` of the output or a deep-supervision level: group pooling and a 1×1 plain conv initialised
    as MONAI's DynUNet initialises its convs, or with ``label_permutation`` the lateral head
    (:func:`~monai_equivariant.networks.nets.heads.segmentation_head`)."""
    project, head = segmentation_head(fields, out_channels, group, label_permutation)
    if label_permutation is None:
        nn.init.kaiming_normal_(head.weight, a=0.01)
        nn.init.zeros_(head.bias)
    return project, head


def _compact(sides: Sequence[int]) -> int | tuple[int, ...]:
    return int(sides[0]) if len(set(sides)) == 1 else tuple(int(s) for s in sides)


def _check_supr_num(deep_supr_num: object, levels: int) -> int:
    if isinstance(deep_supr_num, bool) or not isinstance(deep_supr_num, numbers.Integral) or not (
            1 <= deep_supr_num < levels - 1):
        raise ValueError(f"deep_supr_num must be an integer ≥ 1 and < the number of up-sampling levels "
                         f"({levels - 1}), got {deep_supr_num!r}")
    return int(deep_supr_num)


def _check_group(group: Group, kernels: list, strides: list, up_kernels: list) -> None:
    """ValueError naming the first level whose kernel, stride or up-sampling kernel ``group`` does not map onto
    itself, and the largest named group that fits the whole plan."""
    if not group.is_grid:
        raise ValueError(f"GroupDynUNet needs a grid group (flips and axis permutations; strided convs are exact "
                         f"only for those), got {group.name!r}, which interpolates its kernels")
    check_plan(group, {"kernel_size": kernels, "strides": strides, "upsample_kernel_size": up_kernels})
