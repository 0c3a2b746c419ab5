"""GroupUNet: one U-Net for every group (p4, p4m, SE(2,N), cube groups, trivial = plain baseline)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Pool

from monai_equivariant.groups import Group, as_group, check_plan, kernel_shape
from monai_equivariant.networks.blocks import GroupDoubleConv, GroupResidualUnit, as_kernel_size
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    check_adn_ordering,
    check_separable,
)
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.heads import segmentation_head
from monai_equivariant.networks.nets.presets import Preset
from monai_equivariant.networks.nets.input_check import (
    ParameterDtype,
    Stride,
    axis_products,
    check_input,
    check_levels,
)
from monai_equivariant.networks.nets.route import RoutedNetwork, check_route, set_network_route
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

    Channels are rounded to the nearest integer (at least 1), so matches are approximate for small widths. The rule
    counts the |G|·C² of the inner convs only (not the lifting layer, the head, shortcuts or norms, nor MONAI's
    strided and transposed convs): for a swap at a given cost pass ``channels_as="params"`` (or ``"flops"``) to
    the net instead, which solves for the fields on the real nets (:mod:`.channel_budget`).

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


_UNET_DIFFERENCES = """
    Differences from ``monai.networks.nets.UNet`` (same argument names and order, so it swaps in):

    - ``channels`` counts *fields* per level (``channels_as="fields"``, the default): the tensors carry
      fields·|G| channels (|G| = 4 for p4), so equal ``channels`` mean |G|× wider feature maps and about |G|×
      the parameters. ``channels_as="params"`` (or ``"flops"``) reads ``channels`` as the plain
      ``monai.networks.nets.UNet``'s and picks the fields giving that net's parameters (conv multiply-adds per pixel)
      within a few %: ``P4UNet(2, 3, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2,
      channels_as="params")`` has UNet's 1.6M parameters, not 8.3M;
    - defaults ReLU + batch norm (group-shared statistics) instead of PReLU + instance norm;
    - down-sampling is max-pooling by ``strides`` and up-sampling (bi/tri)linear interpolation, instead of
      strided convs and transposed convs: a stride-2 3×3 conv does not map the pixel grid onto itself under
      rotations, so it is not exactly equivariant;
    - ``num_res_units=0`` gives two conv-norm-act units per level (the classic U-Net level; MONAI: one strided
      conv); ``num_res_units=n > 0`` one residual unit of n units per level, as MONAI;
    - ``up_kernel_size`` is the kernel of the decoder's convs (MONAI: of its transposed convs);
    - the output head is a group max-pool (invariant fields) and a 1×1 conv (with ``label_permutation``: the
      lateral head).
"""


def _check_num_res_units(num_res_units: int) -> int:
    if isinstance(num_res_units, bool) or not isinstance(num_res_units, numbers.Integral) or num_res_units < 0:
        raise ValueError(f"num_res_units must be an integer ≥ 0, got {num_res_units!r}")
    return int(num_res_units)


class GroupUNet(ParameterDtype, RoutedNetwork, UNetSkeleton):
    """U-Net whose every conv is a group conv; equivariant to ``group`` (exactly, for grid groups).

    Layout per level: (lifting at level 0, else group) conv-norm-act units (two, or one residual unit of
    ``num_res_units``); spatial max-pool down by ``strides``; (bi/tri)linear upsampling + skip concat + the same
    units up; then group max-pool (invariant fields) and a 1×1 plain conv.

    Args:
        spatial_dims: 2 or 3 (must match the group).
        in_channels: channels of the plain input.
        out_channels: channels of the plain output.
        channels: fields per level (the tensors carry fields·|G| channels).
        group: group name (``"p4"``, ``"p4m"``, ``"se2_8"``, ``"O"``, ``"trivial"``...) or a
            :class:`~monai_equivariant.groups.Group`.
        strides: down-sampling factor between consecutive levels (default 2 each; max-pool kernel = stride): an int,
            or one int per axis as MONAI's (``((2, 1), (2, 2))``). Per-axis strides that differ admit only the
            group elements mapping each axis onto one of the same stride (in 2D not the 90° rotations: the axis
            flips); a group with other elements is refused (ValueError naming the level and the largest named
            group that fits).
        kernel_size: odd kernel size of the encoder convs: an int, or one odd side per axis as MONAI's (``(1, 3, 3)``),
            which admits only the group elements mapping each axis onto one of the same side (D4h, not O; checked
            with the strides by :func:`~monai_equivariant.groups.check_plan`, ValueError naming the largest group
            that fits).
        up_kernel_size: odd kernel size of the decoder convs (same forms).
        num_res_units: 0 for two conv-norm-act units per level; n > 0 for one residual unit (n units and a
            1×1 group-conv shortcut) per level, as MONAI's UNet.
        act: MONAI act spec (``"relu"``, ``("leakyrelu", {"negative_slope": 0.1})``, None).
        norm: MONAI norm spec: ``"batch"``, ``"instance"`` (group-shared statistics), ``("batch", {"momentum":
            0.01})``, ``"groupbatch"``, or None.
        dropout: probability or MONAI dropout spec, in every conv unit.
        bias: conv biases.
        adn_ordering: order of norm (N), dropout (D) and act (A) after every conv, as MONAI's (default ``"NDA"``:
            norm, dropout, act).
        route: how every group conv computes: ``"auto"`` (default), ``"filter"`` or ``"input"`` (see
            :attr:`~monai_equivariant.layers.GroupConv.route`); ``net.route = ...`` sets every layer later.
        channels_as: how ``channels`` is read: ``"fields"`` (default: fields per level), ``"params"`` (the channels
            of the plain twin, ``monai.networks.nets.UNet`` with the same channels, strides, kernel sizes,
            ``num_res_units`` and bias and MONAI's default act and norm, which hold under 1 % of its parameters; the
            fields are the channels scaled uniformly so that this net's parameter count is the closest to the
            twin's) or ``"flops"`` (the same, matching conv multiply-adds per pixel). ``net.channels`` holds the
            fields built. MONAI's UNet is the twin because it is what a swap replaces (strided and transposed convs
            included); ``GroupUNet(group="trivial")`` is the same architecture without the group.
        separable: every group conv after the lifting (but the 1×1 shortcuts) is a
            :class:`~monai_equivariant.layers.SeparableGroupConv`: pointwise group mixing then a depthwise conv of
            the group-transformed kernels, exact too, about k^d× fewer weights and mixing FLOPs at equal fields.
        label_permutation: lateral labels (a group with reflections, e.g. ``[0, 2, 1]`` for background, left,
            right): the head is a :class:`~monai_equivariant.layers.LateralGroupHead` instead of group pooling and a
            1×1 conv, so ``f(g·x) = P_g g·f(x)`` with P_g this permutation for reflections, the identity for
            rotations (:mod:`~monai_equivariant.layers.lateral_head`). None (default): invariant labels.

    Input (B, in_channels, *spatial) with every spatial size divisible by prod(strides) (with per-axis strides: each
    axis by the product of its strides); output (B, out_channels, *spatial). For grid groups ``f(g·x) == g·f(x)``
    to float round-off; other sizes raise ValueError naming the multiple.
    """

    __doc__ += _UNET_DIFFERENCES

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        group: str | Group = "p4",
        strides: Sequence[Stride | Sequence[int]] | None = None,
        kernel_size: Sequence[int] | int = 3,
        up_kernel_size: Sequence[int] | int = 3,
        num_res_units: int = 0,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        adn_ordering: str = "NDA",
        route: str = "auto",
        channels_as: str = "fields",
        separable: bool = False,
        label_permutation: Sequence[int] | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        group = as_group(group, spatial_dims)
        route = check_route(route)
        channels_as = check_channels_as(channels_as)
        channels, strides = check_levels(channels, strides, min_levels=2, spatial_dims=spatial_dims)
        kernel_size = _kernel_sides(kernel_size, group, "kernel_size")
        up_kernel_size = _kernel_sides(up_kernel_size, group, "up_kernel_size")
        check_plan(group, {"strides": strides, "kernel_size": [kernel_size], "up_kernel_size": [up_kernel_size]},
                   between_levels=("strides",))
        num_res_units = _check_num_res_units(num_res_units)
        multiples = axis_products(strides, spatial_dims)
        channels = list(budget_fields(
            channels_as, channels,
            lambda fields: GroupUNet(spatial_dims, in_channels, out_channels, fields, group, strides, kernel_size,
                                     up_kernel_size, num_res_units, act, norm, dropout, bias, adn_ordering,
                                     separable=separable),
            lambda: _monai_unet(spatial_dims, in_channels, out_channels, channels, strides, kernel_size,
                                up_kernel_size, num_res_units, bias),
            (in_channels, *(2 * m for m in multiples)), group.order,
        ))
        common = dict(group=group, act=act, norm=norm, dropout=dropout, bias=bias,
                      adn_ordering=check_adn_ordering(adn_ordering), separable=check_separable(separable))

        def level(in_fields: int, out_fields: int, size: int, lifting: bool = False) -> nn.Module:
            if num_res_units > 0:
                return GroupResidualUnit(
                    in_fields, out_fields, kernel_size=size, subunits=num_res_units, lifting=lifting, **common
                )
            return GroupDoubleConv(in_fields, out_fields, kernel_size=size, lifting=lifting, **common)

        pool_cls = Pool[Pool.MAX, spatial_dims]
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        encoder = nn.ModuleList([level(in_channels, channels[0], kernel_size, lifting=True)])
        for i in range(1, len(channels)):
            encoder.append(
                nn.Sequential(pool_cls(strides[i - 1]), level(channels[i - 1], channels[i], kernel_size))
            )
        decoder = nn.ModuleList(
            [
                GroupUpStep(
                    nn.Upsample(scale_factor=_scale_factor(strides[i]), mode=mode, align_corners=False),
                    level(channels[i + 1] + channels[i], channels[i], up_kernel_size),
                )
                for i in range(len(channels) - 2, -1, -1)
            ]
        )
        project, head = segmentation_head(channels[0], out_channels, group, label_permutation)
        super().__init__(encoder, decoder, project, head, in_channels, math.lcm(*multiples), spatial_dims)
        self.group = group
        self.out_channels = int(out_channels)
        self.channels, self.strides = tuple(channels), tuple(strides)
        self.channels_as = channels_as
        # per-axis size multiples where the strides differ between axes (None: one multiple, as before)
        self.axis_multiples = multiples if len(set(multiples)) > 1 else None
        self.kernel_size, self.up_kernel_size = kernel_size, up_kernel_size
        self.num_res_units = num_res_units
        self.adn_ordering = common["adn_ordering"]
        self.separable = common["separable"]
        self.label_permutation = None if label_permutation is None else list(head.label_permutation)
        set_network_route(self, route)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("axis_multiples", None)  # pickled before per-axis strides
        self.__dict__.setdefault("channels_as", "fields")
        self.__dict__.setdefault("label_permutation", None)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, *spatial), B ≥ 1, with positive sizes divisible by
        ``size_multiple`` (per axis by ``axis_multiples`` when the strides differ between axes), in the network's
        dtype."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.parameter_dtype(),
                    self.axis_multiples)


def _kernel_sides(kernel_size: Sequence[int] | int, group: Group, name: str) -> int | tuple[int, ...]:
    """An odd kernel as MONAI gives it: the side (an int) of a square/cubic kernel, or odd per-axis sides (``(1, 3,
    3)``) as a tuple where :func:`~monai_equivariant.groups.check_plan` finds that ``group`` maps them onto themselves
    (D4h does, O does not). Otherwise :func:`as_kernel_size`'s ValueError naming ``name`` (followed by the plan
    check's reason for per-axis sides)."""
    try:
        return as_kernel_size(kernel_size, group.spatial_dims, name)
    except ValueError as cubic_error:
        try:
            sides = kernel_shape(kernel_size, group.spatial_dims)
        except ValueError:
            raise cubic_error from None
        if any(side % 2 == 0 for side in sides):
            raise cubic_error from None
        try:
            check_plan(group, {name: [sides]})
        except ValueError as misfit:
            raise ValueError(f"{cubic_error}; per-axis sides need a group that maps them onto themselves: "
                             f"{misfit}") from None
        return sides


def _scale_factor(stride: Stride) -> float | tuple[float, ...]:
    """``nn.Upsample``'s scale factor undoing a (per-axis) max-pool stride."""
    return tuple(float(s) for s in stride) if isinstance(stride, tuple) else float(stride)


def _monai_unet(
    spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[Stride],
    kernel_size: int, up_kernel_size: int, num_res_units: int, bias: bool,
) -> nn.Module:
    """The plain twin of ``channels_as="params"``/``"flops"``: MONAI's UNet with the same structure (its own act
    and norm defaults)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims, in_channels, out_channels, channels, strides, kernel_size, up_kernel_size,
                num_res_units, bias=bias)


class P4UNet(Preset, GroupUNet):
    """:class:`GroupUNet` for p4 (90° rotations), with ``monai.networks.nets.UNet``'s argument order.

    Defaults: fields (8, 16, 32, 64, 128), ≈1.96M parameters with 3 input channels, the same budget as the plain
    U-Net with channels (16, 32, 64, 128, 256). Arguments as :class:`GroupUNet` (without ``group``), in MONAI's
    order up to ``adn_ordering``, then ``route``, ``channels_as`` and ``separable``: a swap for
    ``UNet(2, 3, 1, channels, strides, ...)`` keeping its arguments and cost is
    ``P4UNet(2, 3, 1, channels, strides, ..., channels_as="params")``.
    """

    __doc__ += _UNET_DIFFERENCES
    preset_defaults = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1, "channels": (8, 16, 32, 64, 128)}

    def preset_group(self, values: dict) -> str:
        return "p4"


class P4MUNet(Preset, GroupUNet):
    """:class:`GroupUNet` for p4m (90° rotations and reflections), with ``monai.networks.nets.UNet``'s argument
    order.

    Default fields (6, 11, 23, 45, 91) match the plain U-Net (16, ..., 256) parameter budget (see
    :func:`matched_channels`). Arguments as :class:`P4UNet`.
    """

    __doc__ += _UNET_DIFFERENCES
    preset_defaults = {**P4UNet.preset_defaults, "channels": (6, 11, 23, 45, 91)}

    def preset_group(self, values: dict) -> str:
        return "p4m"
