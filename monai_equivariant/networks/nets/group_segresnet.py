"""GroupSegResNet: the equivariant twin of MONAI's SegResNet (pre-activation residual encoder, additive skips)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool, split_args

from monai_equivariant.groups import Group
from monai_equivariant.layers.plain import ScriptsAsExport
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    get_group_act_layer,
    get_group_dropout_layer,
    get_group_norm_layer,
)
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.route import RoutedNetwork, check_route, set_network_route
from monai_equivariant.networks.nets.group_basic_unet import group_upsample
from monai_equivariant.networks.nets.group_unet import matched_channels
from monai_equivariant.networks.nets.heads import segmentation_head
from monai_equivariant.networks.nets.group_cnn import grid_group
from monai_equivariant.networks.nets.input_check import check_input

__all__ = ["GroupSegResBlock", "GroupSegResNet", "group_segresnet_norm"]


def group_segresnet_norm(norm: NormSpec, fields: int, group: Group) -> nn.Module:
    """The norm of a group tensor (B, fields·|G|, *spatial) from SegResNet's spec: MONAI's ``("group", {"num_groups":
    n})`` gives a :class:`~monai_equivariant.layers.norm.GroupGroupNorm` with ``gcd(n, fields)`` norm groups of whole
    fields (each field's |G| channels in one norm group); other specs as every group net reads them
    (``"instance"``, ``"batch"``: statistics shared over the group). ValueError naming ``norm`` otherwise."""
    if norm is not None and norm != "":
        try:
            name, kwargs = split_args(norm)
        except (TypeError, ValueError) as error:
            raise ValueError(f"norm must be a name, (name, kwargs dict) or None, got {norm!r}") from error
        if isinstance(name, str) and name.lower() == "group":
            kwargs = dict(kwargs)
            groups = kwargs.pop("num_groups", None)
            if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
                raise ValueError(f"norm {norm!r}: group norm needs num_groups, a positive int")
            norm = ("groupgroup", {**kwargs, "num_groups": math.gcd(int(groups), int(fields))})
    return get_group_norm_layer(norm, fields, group.order, group.spatial_dims)


class GroupSegResBlock(nn.Module):
    """MONAI's SegResNet ``ResBlock`` on group tensors: ``x + conv2(act(norm2(conv1(act(norm1(x))))))`` with 3×3 group
    convs without bias. (B, C·|G|, *spatial) -> (B, C·|G|, *spatial)."""

    def __init__(self, fields: int, group: Group, norm: NormSpec, act: ActSpec) -> None:
        super().__init__()
        dims = group.spatial_dims
        self.norm1 = group_segresnet_norm(norm, fields, group)
        self.norm2 = group_segresnet_norm(norm, fields, group)
        self.act = get_group_act_layer(act) or nn.Identity()
        self.conv1 = Conv["groupconv", dims](fields, fields, group, 3, bias=False)
        self.conv2 = Conv["groupconv", dims](fields, fields, group, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.act(self.norm1(x)))
        return self.conv2(self.act(self.norm2(y))) + x


class GroupSegResUp(nn.Module):
    """One decoder step: up-sample (1×1 group conv to half the fields, then ×2), add the skip, residual blocks.
    x (B, 2C·|G|, *m), skip (B, C·|G|, *2m) -> (B, C·|G|, *2m)."""

    def __init__(self, upsample: nn.Module, blocks: nn.Module) -> None:
        super().__init__()
        self.upsample, self.blocks = upsample, blocks

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.upsample(x) + skip)


class GroupSegResNet(RoutedNetwork, ScriptsAsExport, nn.Module):
    """MONAI's ``SegResNet`` with group convolutions, exactly equivariant to a grid group on inputs whose sides are
    multiples of ``2**(len(blocks_down) - 1)`` (:attr:`size_multiple`; 8 for the default blocks).

    Layout as MONAI's: a lifting 3×3 conv (``init_filters`` fields), dropout, ``len(blocks_down)`` encoder levels
    (level i > 0: down-sampling to twice the fields, then ``blocks_down[i]`` pre-activation residual blocks), decoder
    steps (1×1 group conv to half the fields, up-sampling, *addition* of the skip, ``blocks_up[i]`` residual blocks),
    then norm, act and the head: group max-pooling and a 1×1 conv (or, with ``label_permutation``, a
    :class:`~monai_equivariant.layers.LateralGroupHead`).

    Args:
        spatial_dims: 2 or 3.
        init_filters: fields of the first level (doubled at each level). Default: MONAI's 8 scaled by 1/sqrt(|G|).
        in_channels: channels of the plain input.
        out_channels: channels of the plain output.
        dropout_prob: element-wise dropout after the first conv (None: none).
        act: MONAI act spec (default ReLU).
        norm: MONAI norm spec; ``("group", {"num_groups": n})`` (default n = 8) normalises groups of whole fields
            (:func:`group_segresnet_norm`; a level with fewer fields than n, or a count n does not divide, uses
            ``gcd(n, fields)`` groups), ``"instance"`` / ``"batch"`` share statistics over the group.
        norm_name: deprecated in MONAI: ``"group"`` sets ``norm = ("group", {"num_groups": num_groups})``.
        num_groups: see ``norm_name``.
        use_conv_final: the head; False returns the decoder's fields group-max-pooled (B, init_filters, *spatial).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder step (``len(blocks_down) - 1`` entries).
        upsample_mode: ``"nontrainable"`` (default, linear interpolation, ``align_corners=False`` as MONAI's) or
            ``"deconv"`` (transposed group conv k = s = 2); ``"pixelshuffle"`` is refused.
        group: a grid group (name or :class:`~monai_equivariant.groups.Group`); default p4 in 2D, O in 3D.
        channels_as: how ``init_filters`` is read: ``"fields"`` (default), ``"params"`` or ``"flops"`` (the
            ``init_filters`` of ``monai.networks.nets.SegResNet`` with the same arguments, matched by parameters or
            conv multiply-adds per pixel; one number, so matches within a few % need a few fields).
        label_permutation: lateral labels under the group's reflections (needs ``use_conv_final``), see
            :func:`~monai_equivariant.networks.nets.heads.segmentation_head`.
        route: how every group conv computes: ``"auto"`` (default), ``"filter"`` or ``"input"`` (see
            :attr:`~monai_equivariant.layers.GroupConv.route`); ``net.route = ...`` sets every layer later.

    Input (B, in_channels, *spatial), every side a multiple of :attr:`size_multiple`; output (B, out_channels,
    *spatial). Other sizes raise ValueError naming the multiple.

    Differences from ``monai.networks.nets.SegResNet`` (same arguments in the same order, then ``group``,
    ``channels_as``, ``label_permutation``, ``route``):

    - down-sampling is a 2×2 max-pool followed by the level's 3×3 conv at stride 1 (MONAI: a stride-2 3×3 conv,
      whose sampled grid no rotation maps onto itself on even sides); same parameters, same multiply-adds;
    - group norm counts its groups over fields (see ``norm``); dropout is element-wise (MONAI: channel dropout,
      which would drop single channels of a field);
    - the head group-max-pools (invariant fields) before its 1×1 conv; without it the pooled fields are returned.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        init_filters: int | None = None,
        in_channels: int = 1,
        out_channels: int = 2,
        dropout_prob: DropoutSpec = None,
        act: ActSpec = ("RELU", {"inplace": True}),
        norm: NormSpec = ("GROUP", {"num_groups": 8}),
        norm_name: str = "",
        num_groups: int = 8,
        use_conv_final: bool = True,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        upsample_mode: str = "nontrainable",
        group: str | Group | None = None,
        channels_as: str = "fields",
        label_permutation: Sequence[int] | None = None,
        route: str = "auto",
    ) -> None:
        super().__init__()
        route = check_route(route)
        group = grid_group("GroupSegResNet", spatial_dims, group,
                           "max-pooling is exact only for flips and axis permutations")
        channels_as = check_channels_as(channels_as)
        if norm_name:
            if str(norm_name).lower() != "group":
                raise ValueError(f"norm_name must be 'group' (as MONAI's SegResNet) or '', got {norm_name!r}")
            norm = ("group", {"num_groups": num_groups})
        down, up = _blocks(blocks_down, "blocks_down", 1), _blocks(blocks_up, "blocks_up", 0)
        if len(up) != len(down) - 1:
            raise ValueError(f"blocks_up needs len(blocks_down) - 1 = {len(down) - 1} entries (one per decoder "
                             f"step), got {list(blocks_up)}")
        if label_permutation is not None and not use_conv_final:
            raise ValueError("label_permutation needs use_conv_final=True (the lateral head is the final conv)")
        group_upsample(upsample_mode, 2, 2, group, True)  # ValueError naming a bad mode
        get_group_dropout_layer(dropout_prob)
        if init_filters is None:
            init_filters = 8 if channels_as != "fields" else matched_channels((8,), "trivial", group, spatial_dims)[0]
        if isinstance(init_filters, bool) or not isinstance(init_filters, numbers.Integral) or init_filters < 1:
            raise ValueError(f"init_filters must be a positive int, got {init_filters!r}")
        multiple = 2 ** (len(down) - 1)
        (fields,) = budget_fields(
            channels_as, (int(init_filters),),
            lambda f: GroupSegResNet(spatial_dims, f[0], in_channels, out_channels, dropout_prob, act, norm, "",
                                     num_groups, use_conv_final, down, up, upsample_mode, group),
            lambda: _monai_segresnet(spatial_dims, int(init_filters), in_channels, out_channels, dropout_prob, act,
                                     norm, use_conv_final, down, up, upsample_mode),
            (in_channels, *(2 * multiple,) * spatial_dims), group.order,
        )
        dims = spatial_dims
        self.conv_init = Conv["lifting", dims](in_channels, fields, group, 3, bias=False)
        self.dropout = get_group_dropout_layer(dropout_prob) or nn.Identity()
        encoder = []
        for level, count in enumerate(down):
            width = fields * 2 ** level
            step = [] if level == 0 else [Pool[Pool.MAX, dims](kernel_size=2),
                                          Conv["groupconv", dims](width // 2, width, group, 3, bias=False)]
            encoder.append(nn.Sequential(*step, *[GroupSegResBlock(width, group, norm, act) for _ in range(count)]))
        decoder = []
        for step, count in enumerate(up):
            width = fields * 2 ** (len(up) - step)
            upsample = nn.Sequential(Conv["groupconv", dims](width, width // 2, group, 1, bias=False),
                                     group_upsample(upsample_mode, width // 2, width // 2, group, True,
                                                    align_corners=False))
            decoder.append(GroupSegResUp(upsample, nn.Sequential(
                *[GroupSegResBlock(width // 2, group, norm, act) for _ in range(count)])))
        self.down_layers, self.up_layers = nn.ModuleList(encoder), nn.ModuleList(decoder)
        if use_conv_final:
            self.final = nn.Sequential(group_segresnet_norm(norm, fields, group),
                                       get_group_act_layer(act) or nn.Identity())
            self.project, self.head = segmentation_head(fields, out_channels, group, label_permutation)
        else:
            self.final, self.head = nn.Identity(), nn.Identity()
            self.project = Pool["group", dims](group.order, mode="max")
        self.spatial_dims, self.in_channels = dims, int(in_channels)
        self.out_channels = int(out_channels) if use_conv_final else fields
        self.group, self.init_filters, self.channels_as = group, fields, channels_as
        self.blocks_down, self.blocks_up = tuple(down), tuple(up)
        self.use_conv_final, self.upsample_mode = bool(use_conv_final), upsample_mode.lower()
        self.size_multiple = multiple
        self.label_permutation = None if label_permutation is None else list(self.head.label_permutation)
        set_network_route(self, route)

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError unless x is (B, in_channels, *spatial) in the network's dtype with sides multiples of
        :attr:`size_multiple`."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.conv_init.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, out_channels, *spatial)."""
        self.check_input(x)
        x = self.dropout(self.conv_init(x))
        skips: List[torch.Tensor] = []
        for down in self.down_layers:
            x = down(x)
            skips.append(x)
        for step, up in enumerate(self.up_layers):
            x = up(x, skips[len(skips) - 2 - step])
        return self.head(self.project(self.final(x)))


def _blocks(values: object, name: str, minimum: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in values):
        raise ValueError(f"{name} must be a sequence of ints ≥ {minimum} (residual blocks per level), got {values!r}")
    if name == "blocks_down" and not values:
        raise ValueError(f"blocks_down needs at least one level, got {values!r}")
    return [int(v) for v in values]


def _monai_segresnet(spatial_dims: int, init_filters: int, in_channels: int, out_channels: int,
                     dropout_prob: DropoutSpec, act: ActSpec, norm: NormSpec, use_conv_final: bool,
                     blocks_down: Sequence[int], blocks_up: Sequence[int], upsample_mode: str) -> nn.Module:
    """The plain twin of ``channels_as``: MONAI's SegResNet with the same arguments."""
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims, init_filters, in_channels, out_channels, dropout_prob or None, act, norm,
                     use_conv_final=use_conv_final, blocks_down=tuple(blocks_down), blocks_up=tuple(blocks_up),
                     upsample_mode=upsample_mode)
