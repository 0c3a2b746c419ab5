"""GroupBasicUNet: the equivariant twin of MONAI's BasicUNet (two conv units per level, max-pool down, deconv up)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from monai_equivariant.groups import Group
from monai_equivariant.networks.blocks import GroupDoubleConv
from monai_equivariant.networks.blocks.factories import ActSpec, DropoutSpec, NormSpec
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.route import RoutedNetwork, check_route, set_network_route
from monai_equivariant.networks.nets.group_unet import GroupUpStep, matched_channels
from monai_equivariant.networks.nets.heads import segmentation_head
from monai_equivariant.networks.nets.group_cnn import grid_group
from monai_equivariant.networks.nets.input_check import ParameterDtype, check_input
from monai_equivariant.networks.nets.unet_skeleton import UNetSkeleton

__all__ = ["GroupBasicUNet", "UPSAMPLE_MODES", "group_upsample"]

UPSAMPLE_MODES = ("deconv", "nontrainable")
"""The up-sampling modes that map the grid onto itself: a transposed group conv with kernel = stride = 2
(``"deconv"``, MONAI's default) or a 1×1 group conv and (bi/tri)linear interpolation (``"nontrainable"``). MONAI's
``"pixelshuffle"`` arranges channels into sub-pixel positions, which no group element permutes as it permutes the
pixels: refused."""

_MONAI_FEATURES = (32, 32, 64, 128, 256, 32)


def group_upsample(mode: object, in_fields: int, out_fields: int, group: Group, bias: bool,
                   align_corners: bool = True) -> nn.Module:
    """Up-sampling by 2 of a group tensor as MONAI's ``UpSample`` (scale 2) in ``mode`` (one of
    :data:`UPSAMPLE_MODES`): (B, in_fields·|G|, *m) -> (B, out_fields·|G|, *2m).

    ``"deconv"``: a :class:`~monai_equivariant.layers.GroupConvTranspose` with kernel = stride = 2 (its kernel acted on
    by the group, exact on every size); ``"nontrainable"``: a 1×1 group conv when the widths differ (MONAI's default
    pre-conv), then linear interpolation (``align_corners`` as given), which every flip and axis permutation maps onto
    itself. ValueError naming ``upsample`` for other modes."""
    if not isinstance(mode, str) or mode.lower() not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES} (exact on the pixel grid; 'pixelshuffle' is "
                         f"not equivariant), got {mode!r}")
    dims = group.spatial_dims
    if mode.lower() == "deconv":
        return Conv["groupconvtrans", dims](in_fields, out_fields, group, kernel_size=2, stride=2, bias=bias)
    interpolate = nn.Upsample(scale_factor=2.0, mode="bilinear" if dims == 2 else "trilinear",
                              align_corners=align_corners)
    if in_fields == out_fields:
        return interpolate
    return nn.Sequential(Conv["groupconv", dims](in_fields, out_fields, group, 1, bias=bias), interpolate)


class GroupBasicUNet(ParameterDtype, RoutedNetwork, UNetSkeleton):
    """MONAI's ``BasicUNet`` with group convolutions, exactly equivariant to a grid group on inputs whose sides are
    multiples of 16.

    Layout as MONAI's: two conv-norm-dropout-act units at the input and after each of the four 2×2 max-pools
    (``features[0..4]``), four up-sampling steps (up-sample to half the fields, except the last, concatenate the skip
    first, two conv units; the last step has ``features[5]`` fields), then the head: group max-pooling (invariant
    fields) and a 1×1 conv, or with ``label_permutation`` a :class:`~monai_equivariant.layers.LateralGroupHead`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the plain input.
        out_channels: channels of the plain output.
        features: six *fields* counts (five encoder levels, then the last up-sampling step's). Default: MONAI's
            (32, 32, 64, 128, 256, 32) scaled by 1/sqrt(|G|) (about MONAI's parameters).
        act: MONAI act spec (default leaky ReLU, slope 0.1, as MONAI).
        norm: ``("instance", {"affine": True})`` (default, statistics shared over the group), ``"batch"``, None...
        bias: conv biases.
        dropout: probability or MONAI dropout spec, in every conv unit.
        upsample: ``"deconv"`` (default, transposed group conv k = s = 2) or ``"nontrainable"`` (1×1 group conv and
            linear interpolation, ``align_corners=True`` as MONAI's ``UpCat``); see :data:`UPSAMPLE_MODES`.
        group: a grid group (name or :class:`~monai_equivariant.groups.Group`); default p4 in 2D, O in 3D.
        channels_as: how ``features`` is read: ``"fields"`` (default), ``"params"`` or ``"flops"`` (the features of
            ``monai.networks.nets.BasicUNet`` with the same arguments; the fields are solved to match its parameters or
            conv multiply-adds per pixel, :mod:`.channel_budget`).
        label_permutation: lateral labels (a group with reflections): the output channels permute by it under the
            reflections, ``f(g·x) = P_g g·f(x)`` (see :mod:`~monai_equivariant.layers.lateral_head`).
        route: how every group conv computes: ``"auto"`` (default), ``"filter"`` or ``"input"`` (see
            :attr:`~monai_equivariant.layers.GroupConv.route`); ``net.route = ...`` sets every layer later.

    Input (B, in_channels, *spatial), every side a multiple of 16 (:attr:`size_multiple`); output (B, out_channels,
    *spatial). Other sizes raise ValueError naming the multiple.

    Differences from ``monai.networks.nets.BasicUNet`` (same arguments in the same order, then ``group``,
    ``channels_as``, ``label_permutation`` and ``route``):

    - ``features`` count fields (the tensors carry fields·|G| channels) unless ``channels_as`` says otherwise;
    - sides must be multiples of 16 (MONAI pads the up-sampled maps to the skip's size instead): only then does every
      2×2 max-pool map the grid onto itself;
    - ``upsample="pixelshuffle"`` is refused;
    - the head group-max-pools to invariant fields (or pools the lateral way) before its 1×1 conv.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] | None = None,
        act: ActSpec = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: NormSpec = ("instance", {"affine": True}),
        bias: bool = True,
        dropout: DropoutSpec = 0.0,
        upsample: str = "deconv",
        group: str | Group | None = None,
        channels_as: str = "fields",
        label_permutation: Sequence[int] | None = None,
        route: str = "auto",
    ) -> None:
        route = check_route(route)
        group = grid_group("GroupBasicUNet", spatial_dims, group,
                           "max-pooling and transposed convs are exact only for flips and axis permutations")
        channels_as = check_channels_as(channels_as)
        group_upsample(upsample, 2, 1, group, bias)  # ValueError naming a bad mode before anything else is built
        if features is None:
            fields = (list(matched_channels(_MONAI_FEATURES, "trivial", group, spatial_dims))
                      if channels_as == "fields" else list(_MONAI_FEATURES))
        else:
            fields = [int(f) for f in features] if isinstance(features, Sequence) else []
            if len(fields) != 6 or min(fields) < 1:
                raise ValueError(f"features must be six positive ints (five encoder levels and the last up-sampling "
                                 f"step, as MONAI's BasicUNet), got {features!r}")
        fields = list(budget_fields(
            channels_as, fields,
            lambda f: GroupBasicUNet(spatial_dims, in_channels, out_channels, f, act, norm, bias, dropout, upsample,
                                     group),
            lambda: _monai_basic_unet(spatial_dims, in_channels, out_channels, fields, act, norm, bias, dropout,
                                      upsample),
            (in_channels, *(32,) * spatial_dims), group.order,
        ))
        unit = dict(group=group, act=act, norm=norm, dropout=dropout, bias=bias)
        pool = Pool[Pool.MAX, spatial_dims]
        encoder = nn.ModuleList([GroupDoubleConv(in_channels, fields[0], lifting=True, **unit)])
        for level in range(1, 5):
            encoder.append(nn.Sequential(pool(kernel_size=2), GroupDoubleConv(fields[level - 1], fields[level],
                                                                               **unit)))
        decoder = nn.ModuleList()
        for level in range(4, 0, -1):  # up from level to level - 1
            last = level == 1
            up = fields[level] if last else max(1, fields[level] // 2)
            out = fields[5] if last else fields[level - 1]
            decoder.append(GroupUpStep(group_upsample(upsample, fields[level], up, group, bias),
                                       GroupDoubleConv(fields[level - 1] + up, out, **unit)))
        project, head = segmentation_head(fields[5], out_channels, group, label_permutation)
        super().__init__(encoder, decoder, project, head, in_channels, 16, spatial_dims)
        self.group, self.out_channels = group, int(out_channels)
        self.features, self.upsample, self.channels_as = tuple(fields), upsample.lower(), channels_as
        self.label_permutation = None if label_permutation is None else list(head.label_permutation)
        set_network_route(self, route)

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError unless x is (B, in_channels, *spatial), B ≥ 1, with sides multiples of 16, in the network's
        dtype."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.parameter_dtype())


def _monai_basic_unet(spatial_dims: int, in_channels: int, out_channels: int, features: Sequence[int], act: ActSpec,
                      norm: NormSpec, bias: bool, dropout: DropoutSpec, upsample: str) -> nn.Module:
    """The plain twin of ``channels_as``: MONAI's BasicUNet with the same arguments."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims, in_channels, out_channels, tuple(features), act, norm, bias, dropout or 0.0,
                     upsample)
