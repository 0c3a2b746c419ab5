"""SteerableUNet: a U-Net of steerable SE(2) convolutions (escnn), plain tensors in and out.

escnn is imported when a SteerableUNet is built (:mod:`monai_equivariant.layers.steerable`), not when this module
is imported (escnn comes with the ``steerable`` extra: ``python -m monai_equivariant.steerable_install``; without it
building raises ImportError naming the extra). Also importable as ``monai_equivariant.networks.nets.SteerableUNet``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch.nn as nn

from monai.networks.layers.factories import Act, Conv, Pool, split_args

from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    as_kernel_size,
    get_group_act_layer,
    get_group_dropout_layer,
    get_group_norm_layer,
)
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.group_unet import GroupUpStep, _monai_unet
from monai_equivariant.networks.nets.input_check import check_levels
from monai_equivariant.networks.nets.unet_skeleton import UNetSkeleton
from monai_equivariant.layers.plain import replace_with_plain

__all__ = ["PlainSteerableUNet", "SteerableUNet"]


class PlainSteerableUNet(UNetSkeleton):
    """The plain-torch export of :class:`SteerableUNet` (the shared 2D :class:`UNetSkeleton`): steerable convs
    are ``nn.Conv2d`` with the expanded filters; no escnn needed to run, save or script it."""


class SteerableUNet(PlainSteerableUNet):
    """U-Net of steerable convolutions (escnn ``R2Conv``), equivariant to rotations by 2π/N (C_N), to rotations and
    reflections (D_N), or to all rotations (SO(2)/O(2), ``num_rotations=-1``) up to kernel sampling.

    Hidden features are escnn fields: regular representations of C_N/D_N (N or 2N channels per field), or for
    SO(2)/O(2) the band-limited bundle of irreps of frequency 0..``max_frequency`` (2·max_frequency + 1
    channels per field for SO(2)). Per level: steerable conv + norm + act, twice; max-pool by ``strides`` (regular
    fields; average pool for irreps) down; bilinear upsampling, skip concat (field types concatenated) and two steerable
    convs up; an invariant projection (max over the group for regular fields, field norms for irreps); a 1×1
    conv. Norms: inner batch norm (statistics shared over the group, ``GroupBatchNorm``) for regular fields,
    escnn ``IIDBatchNorm2d`` for irreps. Acts: ``act`` (pointwise) on regular fields, ReLU on invariant and
    norm-ReLU on the other irreps.

    Exact (float round-off) under 90° rotations when 4 divides N (and for ``N=-1``), for inputs whose size is a
    multiple of prod(strides); other sizes raise ``ValueError``. Other angles are approximate.

    Args:
        spatial_dims: must be 2.
        in_channels, out_channels: channels of the plain input and output.
        channels: fields per level. Default (4, 8, 16, 32, 64): with N = 8 the same feature-map widths
            (32 … 512 channels) as ``P4UNet()``.
        num_rotations: N >= 1 for C_N (D_N), or -1 for SO(2) (O(2)).
        reflections: add reflections (D_N, O(2)).
        max_frequency: band limit of the SO(2)/O(2) fields (ignored for N >= 1).
        strides: down-sampling factor between consecutive levels (default 2 each; pool kernel = stride).
        kernel_size: odd kernel size: an int or two equal ints.
        frequencies_cutoff: escnn's angular band limit of the filters (max frequency = cutoff × ring radius);
            None keeps escnn's default. Lower cutoffs give smoother filters, fewer parameters and smaller errors
            between the grid rotations (see the README).
        act: MONAI act spec for regular fields (any pointwise act is equivariant there); None for no act.
        norm: MONAI norm spec: ``"batch"`` (default), ``"instance"`` (regular fields only), with kwargs as
            ``("batch", {"momentum": 0.01})``, or None.
        dropout: probability or MONAI dropout spec, after every activation.
        bias: conv biases (on the invariant part of each field).
        channels_as: how ``channels`` is read: ``"fields"`` (default: fields per level), ``"params"`` (the channels
            of the plain twin, ``monai.networks.nets.UNet`` with the same channels, strides and kernel size, no
            residual units and MONAI's default act and norm: the fields are the channels scaled uniformly so that the
            parameter count, escnn's basis coefficients, is the closest to the twin's) or ``"flops"`` (the same,
            matching conv multiply-adds per pixel of the expanded filters). ``net.channels`` holds the fields built.

    ``to_plain()`` (used by :func:`monai_equivariant.utils.export`) returns a :class:`PlainSteerableUNet` of plain
    torch modules; ``torch.jit.script(net)`` scripts that export (via ``__prepare_scriptable__``). State-dict
    keys are the same in train and eval mode.

    Differences from ``monai.networks.nets.UNet``: ``channels`` counts *fields* (N channels each for C_N regular
    fields, 2N for D_N); defaults ReLU + batch norm instead of PReLU + instance norm; pooling down and bilinear
    interpolation up instead of strided and transposed convs (not exactly equivariant); two convs per level; no
    ``num_res_units``; the group-defining arguments follow ``channels``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (4, 8, 16, 32, 64),
        num_rotations: int = 8,
        reflections: bool = False,
        max_frequency: int = 3,
        strides: Sequence[int] | None = None,
        kernel_size: Sequence[int] | int = 3,
        frequencies_cutoff: float | None = None,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        channels_as: str = "fields",
    ) -> None:
        if spatial_dims != 2:
            raise ValueError(f"SteerableUNet is 2D (escnn R2Conv): spatial_dims must be 2, got {spatial_dims}")
        channels, strides = check_levels(channels, strides, min_levels=2)
        kernel_size = as_kernel_size(kernel_size, spatial_dims)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels}, {out_channels}")
        channels_as = check_channels_as(channels_as)
        if channels_as != "fields":
            same = dict(num_rotations=num_rotations, reflections=reflections, max_frequency=max_frequency,
                        strides=strides, kernel_size=kernel_size, frequencies_cutoff=frequencies_cutoff, act=act,
                        norm=norm, dropout=dropout, bias=bias)
            field_size = (int(num_rotations) if num_rotations >= 1 else 2 * int(max_frequency) + 1) * (
                2 if reflections else 1)
            channels = list(budget_fields(
                channels_as, channels, lambda fields: SteerableUNet(2, in_channels, out_channels, fields, **same),
                lambda: _monai_unet(2, in_channels, out_channels, channels, strides, kernel_size, kernel_size, 0,
                                    bias),
                (in_channels, *(2 * math.prod(strides),) * 2), field_size,
            ))
        from monai_equivariant.layers import steerable as st  # escnn: imported only when a net is built

        gspace = st.steerable_gspace(int(num_rotations), bool(reflections), int(max_frequency))
        regular = gspace.fibergroup.order() > 0
        types = [st.field_type(gspace, c, max_frequency) for c in channels]
        conv = dict(kernel_size=kernel_size, bias=bias)
        if frequencies_cutoff is not None:
            conv["frequencies_cutoff"] = float(frequencies_cutoff)
        block = dict(conv=conv, act=act, norm=norm, dropout=dropout, regular=regular)

        encoder = nn.ModuleList([_double_conv(st, st.trivial_type(gspace, in_channels), types[0], **block)])
        pool_cls = Pool[Pool.MAX if regular else Pool.AVG, 2]  # pointwise max is equivariant for permutations only
        for level in range(1, len(channels)):
            encoder.append(
                nn.Sequential(pool_cls(strides[level - 1]), _double_conv(st, types[level - 1], types[level], **block))
            )
        decoder = nn.ModuleList(
            [
                GroupUpStep(
                    nn.Upsample(scale_factor=float(strides[level]), mode="bilinear", align_corners=False),
                    _double_conv(st, types[level] + types[level + 1], types[level], **block),
                )
                for level in range(len(channels) - 2, -1, -1)
            ]
        )
        if regular:
            project: nn.Module = Pool["group", 2](gspace.fibergroup.order(), mode="max")
            invariant = channels[0]
        else:
            project = st.FieldNormPool(types[0])
            invariant = len(types[0])
        head = Conv[Conv.CONV, 2](invariant, out_channels, kernel_size=1)
        super().__init__(encoder, decoder, project, head, in_channels, math.prod(strides))
        self.out_channels = int(out_channels)
        self.channels, self.strides = tuple(channels), tuple(strides)
        self.kernel_size = kernel_size
        self.num_rotations, self.reflections = int(num_rotations), bool(reflections)
        self.max_frequency = int(max_frequency)
        self.channels_as = channels_as

    def to_plain(self) -> PlainSteerableUNet:
        """A plain-torch copy (eval mode) with the same eval outputs: steerable convs become ``nn.Conv2d`` with the
        expanded filters, escnn batch norms ``nn.BatchNorm``; no escnn needed to run, save or script it."""
        encoder, decoder = copy.deepcopy(self.encoder), copy.deepcopy(self.decoder)
        for part in (encoder, decoder):
            replace_with_plain(part)
        plain = PlainSteerableUNet(
            encoder, decoder, copy.deepcopy(self.project), copy.deepcopy(self.head), self.in_channels,
            self.size_multiple,
        )
        return plain.eval()

    def __prepare_scriptable__(self) -> PlainSteerableUNet:
        """``torch.jit.script(net)`` scripts the plain export (escnn modules are not scriptable)."""
        return self.to_plain()


def _double_conv(st, in_type, out_type, conv, act, norm, dropout, regular) -> nn.Sequential:
    """(steerable conv, norm, act, dropout) twice: (B, in_type.size, H, W) -> (B, out_type.size, H, W)."""
    layers: list[nn.Module] = []
    for source in (in_type, out_type):
        layers.append(st.SteerableConv(source, out_type, **conv))
        layers.append(_norm(st, norm, out_type, regular))
        act_layer = get_group_act_layer(act)
        if act_layer is not None:
            layers.append(act_layer if regular else st.FieldNormReLU(out_type))
        drop = get_group_dropout_layer(dropout)
        if drop is not None:
            layers.append(drop)
    return nn.Sequential(*layers)


def _norm(st, norm: NormSpec, ftype, regular: bool) -> nn.Module:
    if regular:
        return get_group_norm_layer(norm, len(ftype), ftype.gspace.fibergroup.order(), 2)
    if norm is None or norm == "":
        return nn.Identity()
    name, kwargs = split_args(norm)
    if not isinstance(name, str) or name.lower() not in ("batch", "groupbatch"):
        raise ValueError(f"SO(2)/O(2) fields support norm='batch' or None, got {norm!r}")
    return st.IIDBatchNorm(ftype, **kwargs)
