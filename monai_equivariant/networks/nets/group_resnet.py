"""GroupResNet: ``monai.networks.nets.ResNet`` with group convolutions, logits invariant to the group (p4 in 2D, the
24 cube rotations O in 3D by default), and the ``resnet10/18/34``-style constructors."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool

from monai_equivariant.groups import Group, as_group
from monai_equivariant.networks.blocks import GroupConvBlock, as_kernel_size, get_group_act_layer
from monai_equivariant.networks.blocks.factories import ActSpec, NormSpec
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.group_cnn import default_group
from monai_equivariant.networks.nets.input_check import check_input
from monai_equivariant.networks.nets.route import RoutedNetwork, check_route, set_network_route
from monai_equivariant.layers.plain import ScriptsAsExport

__all__ = ["GroupResNet", "GroupResNetBlock", "GroupResNetBottleneck", "group_resnet10", "group_resnet18",
           "group_resnet34"]

MONAI_ACT: tuple = ("relu", {"inplace": True})
"""MONAI ResNet's default activation."""


class _ZeroFields(nn.Module):
    """Shortcut type "A": the input's fields followed by zero fields up to ``out_channels`` tensor channels (zero
    fields are invariant, so this is equivariant). (B, C_in·|G|, *s) -> (B, C_out·|G|, *s)."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        shape[1] = self.out_channels - shape[1]
        return torch.cat([x, x.new_zeros(shape)], dim=1)


class GroupResNetBlock(nn.Module):
    """MONAI's ``ResNetBlock`` on group tensors: ``act(norm(conv3(act(norm(conv3(x))))) + shortcut(x))``, no conv
    bias (as MONAI). (B, C_in·|G|, *s) -> (B, planes·|G|, *s); the down-sampling happens before the block."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, group: Group, shortcut: nn.Module | None, act: ActSpec,
                 norm: NormSpec) -> None:
        super().__init__()
        unit = dict(group=group, norm=norm, bias=False)
        self.residual = nn.Sequential(
            GroupConvBlock(in_planes, planes, kernel_size=3, act=act, **unit),
            GroupConvBlock(planes, planes, kernel_size=3, act=None, **unit),
        )
        self.shortcut = nn.Identity() if shortcut is None else shortcut
        self.act = get_group_act_layer(act) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_planes·|G|, *s) -> (B, planes·|G|, *s)."""
        return self.act(self.residual(x) + self.shortcut(x))


class GroupResNetBottleneck(GroupResNetBlock):
    """MONAI's ``ResNetBottleneck`` on group tensors: 1×1, 3×3, 1×1 group convs (the last to 4·planes fields) with
    norms and acts, plus the shortcut. (B, C_in·|G|, *s) -> (B, 4·planes·|G|, *s)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, group: Group, shortcut: nn.Module | None, act: ActSpec,
                 norm: NormSpec) -> None:
        nn.Module.__init__(self)
        unit = dict(group=group, norm=norm, bias=False)
        self.residual = nn.Sequential(
            GroupConvBlock(in_planes, planes, kernel_size=1, act=act, **unit),
            GroupConvBlock(planes, planes, kernel_size=3, act=act, **unit),
            GroupConvBlock(planes, planes * self.expansion, kernel_size=1, act=None, **unit),
        )
        self.shortcut = nn.Identity() if shortcut is None else shortcut
        self.act = get_group_act_layer(act) or nn.Identity()


_BLOCKS = {"basic": GroupResNetBlock, "bottleneck": GroupResNetBottleneck}


class GroupResNet(RoutedNetwork, ScriptsAsExport, nn.Module):
    """``monai.networks.nets.ResNet`` whose convolutions are group convolutions: plain image in, logits invariant
    to ``group`` out (exactly, to float round-off, for grid groups and admissible sizes).

    Layout (as MONAI's): lifting conv ``conv1_t_size`` + norm + act; max-pool 2 (unless ``no_max_pool``); four
    stages of ``layers[i]`` blocks with ``block_inplanes[i]·widen_factor`` fields (stages 2–4 start with a 2×
    max-pool); group max-pool (invariant fields), global average pool, and the linear layer (``feed_forward``).

    Args:
        block: ``"basic"`` or ``"bottleneck"`` (or :class:`GroupResNetBlock` / :class:`GroupResNetBottleneck`).
        layers: blocks per stage (4 ints ≥ 1).
        block_inplanes: fields per stage (4 ints; the tensors carry fields·|G| channels), times ``widen_factor``.
        spatial_dims: 2 or 3 (MONAI's default 3).
        n_input_channels: channels of the plain input.
        conv1_t_size: odd kernel size of the first (lifting) conv: an int or equal sides.
        conv1_t_stride: down-sampling after the first conv (a max-pool by it; int ≥ 1 or equal sides).
        no_max_pool: skip the max-pool after the first conv.
        shortcut_type: ``"B"`` (1×1 group conv + norm where the fields change) or ``"A"`` (zero fields appended).
        widen_factor: scales ``block_inplanes`` (``int(c·widen_factor)``, as MONAI).
        num_classes: number of logits.
        feed_forward: add the linear layer (False: the output is the invariant features (B, fields)).
        bias_downsample: bias of the shortcut's 1×1 conv (type "B").
        act: MONAI act spec (default MONAI's ``("relu", {"inplace": True})``; pointwise only).
        norm: MONAI norm spec (``"batch"``, ``"instance"``: statistics shared over the group; None).
        group: ``"p4"``, ``"p4m"``, ``"O"``, ``"Oh"``, ``"D4h"``, ``"se2_8"``, ``"trivial"``... or a
            :class:`~monai_equivariant.groups.Group`; None: ``"p4"`` in 2D, ``"O"`` in 3D.
        channels_as: how ``block_inplanes`` (after ``widen_factor``) is read: ``"fields"`` (default), ``"params"``
            (the plain twin's channels, ``monai.networks.nets.ResNet`` with the same arguments; the fields are
            scaled uniformly so that the parameter count is the closest to the twin's) or ``"flops"`` (the same,
            matching conv multiply-adds per pixel). ``net.block_inplanes`` holds the fields built.
        route: how every group conv computes (``"auto"``, ``"filter"``, ``"input"``; see
            :attr:`~monai_equivariant.layers.GroupConv.route`).

    Admissible sizes: every spatial size a multiple of ``size_multiple`` = conv1_t_stride · 2 (max-pool) · 8 (the
    three stage max-pools): 16 by default. Other sizes raise ValueError naming the multiple.

    Differences from ``monai.networks.nets.ResNet`` (same argument names and order, so it swaps in): ``block_inplanes``
    counts *fields* (|G|× wider maps; ``channels_as="params"`` matches MONAI's parameters); every down-sampling is a
    max-pool by 2 (by ``conv1_t_stride`` after the first conv) of the group tensor, instead of MONAI's 3×3 stride-2
    max-pool with padding and stride-2 convs, because those map the pixel grid onto itself under the group only on
    odd sizes (n − 1 divisible by the stride) while a 2×2 pool does on every even size; the pooled stage's shortcut
    is then a 1×1 group conv without stride; the logits come after a group max-pool; the shortcut's norm follows
    ``norm`` (MONAI's is always batch norm).
    """

    __jit_unused_properties__ = ["route"]

    def __init__(
        self,
        block: str | type = "basic",
        layers: Sequence[int] = (1, 1, 1, 1),
        block_inplanes: Sequence[int] = (8, 16, 32, 64),
        spatial_dims: int = 3,
        n_input_channels: int = 3,
        conv1_t_size: Sequence[int] | int = 7,
        conv1_t_stride: Sequence[int] | int = 1,
        no_max_pool: bool = False,
        shortcut_type: str = "B",
        widen_factor: float = 1.0,
        num_classes: int = 400,
        feed_forward: bool = True,
        bias_downsample: bool = True,
        act: ActSpec = MONAI_ACT,
        norm: NormSpec = "batch",
        group: str | Group | None = None,
        channels_as: str = "fields",
        route: str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.group = as_group(default_group(spatial_dims) if group is None else group, spatial_dims)
        block_cls = _block(block)
        layers = _four("layers", layers, minimum=1)
        fields = [int(c * widen_factor) for c in _four("block_inplanes", block_inplanes, minimum=1)]
        if min(fields) < 1:
            raise ValueError(f"block_inplanes · widen_factor must be ≥ 1 per stage, got {fields}")
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        stem_stride = _equal_sides("conv1_t_stride", conv1_t_stride, spatial_dims)
        conv1_t_size = as_kernel_size(conv1_t_size, spatial_dims, "conv1_t_size")
        channels_as = check_channels_as(channels_as)
        route = check_route(route)
        self.size_multiple = stem_stride * (1 if no_max_pool else 2) * 8
        if channels_as != "fields":
            same = dict(block=block, layers=layers, spatial_dims=spatial_dims, n_input_channels=n_input_channels,
                        conv1_t_size=conv1_t_size, conv1_t_stride=stem_stride, no_max_pool=no_max_pool,
                        shortcut_type=shortcut_type, num_classes=num_classes, feed_forward=feed_forward,
                        bias_downsample=bias_downsample, act=act, norm=norm)
            plain_channels = tuple(fields)
            fields = list(budget_fields(
                channels_as, fields, lambda f: GroupResNet(block_inplanes=f, group=self.group, **same),
                lambda: _monai_resnet(block_inplanes=plain_channels, **same),
                (n_input_channels, *(2 * self.size_multiple,) * spatial_dims), self.group.order,
            ))
        self.spatial_dims, self.in_channels = int(spatial_dims), int(n_input_channels)
        self.block_inplanes, self.layers = tuple(fields), tuple(layers)
        self.num_classes, self.feed_forward = int(num_classes), bool(feed_forward)
        self.channels_as = channels_as
        pool = Pool[Pool.MAX, spatial_dims]

        stem: list[nn.Module] = [GroupConvBlock(n_input_channels, fields[0], self.group, conv1_t_size, act=act,
                                                norm=norm, bias=False, lifting=True)]
        if stem_stride > 1:
            stem.append(pool(stem_stride))
        if not no_max_pool:
            stem.append(pool(2))
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        in_planes = fields[0]
        for i, (planes, blocks) in enumerate(zip(fields, layers)):
            out_planes = planes * block_cls.expansion
            stage: list[nn.Module] = [pool(2)] if i > 0 else []
            for b in range(blocks):
                shortcut = None
                if b == 0 and in_planes != out_planes:
                    shortcut = _ZeroFields(out_planes * self.group.order) if shortcut_type == "A" else GroupConvBlock(
                        in_planes, out_planes, self.group, 1, act=None, norm=norm, bias=bias_downsample)
                stage.append(block_cls(in_planes, planes, self.group, shortcut, act, norm))
                in_planes = out_planes
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.project = Pool["group", spatial_dims](self.group.order, mode="max")
        self.spatial_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.fc = nn.Linear(in_planes, num_classes) if feed_forward else nn.Identity()
        self.register_buffer("dtype_probe", torch.empty(0), persistent=False)  # follows .to(dtype); no state
        set_network_route(self, route)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, n_input_channels, *spatial), B ≥ 1, with positive sizes divisible by
        ``size_multiple``, in the network's dtype."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.dtype_probe.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_input_channels, *spatial) -> invariant pooled features (B, fields of the last stage)."""
        self.check_input(x)
        x = self.stages(self.stem(x))
        return torch.flatten(self.spatial_pool(self.project(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_input_channels, *spatial) -> logits (B, num_classes) (features (B, C) without ``feed_forward``)."""
        return self.fc(self.features(x))


def _block(block: Any) -> type:
    if isinstance(block, str) and block in _BLOCKS:
        return _BLOCKS[block]
    if block in (GroupResNetBlock, GroupResNetBottleneck):
        return block
    name = getattr(block, "__name__", None)
    if name in ("ResNetBlock", "ResNetBottleneck"):  # MONAI's classes: their group counterparts
        return GroupResNetBlock if name == "ResNetBlock" else GroupResNetBottleneck
    raise ValueError(f"block must be 'basic' or 'bottleneck' (or MONAI's ResNetBlock/ResNetBottleneck), got {block!r}")


def _four(name: str, values: Sequence[int], minimum: int) -> list[int]:
    """Four ints ≥ ``minimum`` (one per stage, as MONAI's ResNet); ValueError naming ``name`` otherwise."""
    items = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else []
    if len(items) != 4 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum
                                  for v in items):
        raise ValueError(f"{name} must be 4 ints ≥ {minimum} (one per stage), got {values!r}")
    return [int(v) for v in items]


def _equal_sides(name: str, value: Sequence[int] | int, spatial_dims: int) -> int:
    """A positive int, or ``spatial_dims`` equal positive ints (the group permutes the axes); ValueError otherwise."""
    sides = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    ok = len(sides) in (1, spatial_dims) and all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                                  and s >= 1 for s in sides)
    if not ok or len(set(int(s) for s in sides)) != 1:
        raise ValueError(f"{name} must be a positive int or {spatial_dims} equal ones, got {value!r}")
    return int(sides[0])


def _monai_resnet(block: Any, block_inplanes: Sequence[int], **kwargs: Any) -> nn.Module:
    """The plain twin of ``channels_as="params"``/``"flops"``: MONAI's ResNet with the same arguments."""
    from monai.networks.nets import ResNet

    name = block if isinstance(block, str) else ("basic" if _block(block) is GroupResNetBlock else "bottleneck")
    return ResNet(name, list(kwargs.pop("layers")), list(block_inplanes), **kwargs)


def _group_resnet(layers: tuple[int, int, int, int], block: str = "basic"):
    def build(**kwargs: Any) -> GroupResNet:
        kwargs.setdefault("block_inplanes", (64, 128, 256, 512))
        return GroupResNet(block, layers, **kwargs)

    return build


def group_resnet10(**kwargs: Any) -> GroupResNet:
    """GroupResNet with MONAI's ``resnet10`` layout (basic blocks, layers (1, 1, 1, 1)); ``block_inplanes``
    defaults to MONAI's (64, 128, 256, 512) read as fields (pass ``channels_as="params"`` for MONAI's budget).
    kwargs: :class:`GroupResNet`'s (no ``pretrained``: MONAI's weights are plain)."""
    return _group_resnet((1, 1, 1, 1))(**kwargs)


def group_resnet18(**kwargs: Any) -> GroupResNet:
    """GroupResNet with MONAI's ``resnet18`` layout (basic blocks, layers (2, 2, 2, 2)); as :func:`group_resnet10`."""
    return _group_resnet((2, 2, 2, 2))(**kwargs)


def group_resnet34(**kwargs: Any) -> GroupResNet:
    """GroupResNet with MONAI's ``resnet34`` layout (basic blocks, layers (3, 4, 6, 3)); as :func:`group_resnet10`."""
    return _group_resnet((3, 4, 6, 3))(**kwargs)
