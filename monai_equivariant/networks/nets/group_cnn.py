"""GroupCNN: a residual group-conv classifier whose logits are invariant to the group (3D cube groups for
nodule false-positive reduction, Winkels & Cohen 2018; p4/p4m in 2D; ``"trivial"`` = the plain baseline)."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Pool

from monai_equivariant.groups import Group, as_group, check_plan
from monai_equivariant.layers import GroupConv, SubgroupPool
from monai_equivariant.layers.lateral_head import reflections
from monai_equivariant.networks.blocks import GroupConvBlock, GroupResidualBlock, as_kernel_size, checkpoint_segment
from monai_equivariant.networks.blocks.checkpointing import streamable, streamable_unit, streamed_conv_norm_relu
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    check_adn_ordering,
    check_separable,
)
from monai_equivariant.networks.nets.channel_budget import budget_fields, check_channels_as
from monai_equivariant.networks.nets.group_unet import matched_channels
from monai_equivariant.networks.nets.input_check import (
    Stride,
    axis_products,
    check_input,
    check_levels,
)
from monai_equivariant.networks.nets.route import RoutedNetwork, check_route, set_network_route
from monai_equivariant.layers.plain import ScriptsAsExport

__all__ = [
    "INVARIANCES",
    "GroupCNN",
    "InvariantFeatureNorm",
    "count_parameters",
    "default_group",
    "default_invariance",
    "default_kernel_size",
    "grid_group",
    "matched_baseline",
]

INVARIANCES = ("group", "rotation")
"""What a :class:`GroupCNN`'s logits are invariant to: every element of the group (``"group"``), or only its rotations
(``"rotation"``: mirror images keep separate features, so labels that tell them apart can be learned)."""

_CLASSIFIER_DIFFERENCES = """
    Compared with MONAI's classifiers (e.g. ``monai.networks.nets.Classifier`` / ``UNet``-style defaults):
    ``channels`` counts *fields* per stage (the tensors carry fields·|G| channels, so equal ``channels`` mean
    |G|× wider maps; ``channels_as="params"``/``"flops"`` reads them as the plain twin's channels instead, and
    :func:`matched_baseline` gives the plain net of equal parameters); the defaults are ReLU +
    batch norm (statistics shared over the group) instead of PReLU + instance norm; down-sampling is max-pooling
    by ``strides`` instead of strided convs (a stride-2 3×3 conv is not exactly equivariant).
"""


def default_group(spatial_dims: int) -> str:
    """The group a net uses when none is named: ``"p4"`` in 2D, ``"O"`` (24 cube rotations) in 3D."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return "p4" if spatial_dims == 2 else "O"


def default_kernel_size(group: Group) -> int:
    """The kernel side a :class:`GroupCNN` of ``group`` uses when none is given: 5 for groups that interpolate their
    kernels (se2_N, N ∉ {1, 2, 4}), 3 otherwise.

    A 3×3 kernel of an interpolated group keeps the 5 taps of its disk (a plus), and its 45° copy is a bilinear
    blur of them: an edge detector keeps 29 % of its norm, a corner detector's shape is lost (cosine 0.58 to the
    truly rotated one, 17 % of its norm); at 5×5 (13 taps) 78 % and 0.92, at 7×7 90 % and 1.00
    (``benchmarks/classifier_comparison.py --diagnose``). Bekkers et al. use 5×5 and larger. On glyphs at random
    angles the se2_8 net at a plain 3×3 CNN's parameters erred 35.7 % at 3×3 and 3.8 % at 5×5 (p4: 7.8 %;
    docs/which_to_choose.md)."""
    return 3 if group.is_grid else 5


def default_invariance(group: Group) -> str:
    """The ``invariance`` of a :class:`GroupCNN` of ``group`` when none is given: ``"rotation"`` for 2D groups with
    reflections (p4m: a reflection swaps two features instead of being forgotten), ``"group"`` otherwise (3D
    groups with reflections keep the invariant head their nodule bundle and its checkpoints were built with)."""
    return "rotation" if reflections(group).any() and group.spatial_dims == 2 else "group"


def check_invariance(value: object) -> str:
    """``value`` if it is one of :data:`INVARIANCES`; ValueError naming the choices otherwise."""
    if not isinstance(value, str) or value not in INVARIANCES:
        raise ValueError(f"invariance must be one of {INVARIANCES} or None (the group's default), got {value!r}")
    return value


def grid_group(net: str, spatial_dims: int, group: str | Group | None, why: str) -> Group:
    """``group`` (None: :func:`default_group`) as a :class:`Group` acting on ``spatial_dims`` dims; ValueError naming
    ``net`` and ``why`` (what is exact only for flips and axis permutations) for an interpolated group."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    group = as_group(default_group(spatial_dims) if group is None else group, spatial_dims)
    if not group.is_grid:
        raise ValueError(f"{net} needs a grid group ({why}), got {group.name!r}")
    return group


class GroupCNN(RoutedNetwork, ScriptsAsExport, nn.Module):
    """Residual group CNN classifier: plain image in, group-invariant logits out.

    Layout: lifting conv + norm + act (``channels[0]`` fields); stage 0 = ``num_res_units`` residual blocks
    (:class:`~monai_equivariant.networks.blocks.GroupResidualBlock`); stage i > 0 = spatial max-pool by
    ``strides[i-1]`` then ``num_res_units`` residual blocks (the first maps ``channels[i-1]`` -> ``channels[i]``
    fields); then group max-pool (invariant fields; ``invariance="rotation"``: max over the rotations only),
    global average pool over space, batch norm of those invariant features (``feature_norm``) and a linear layer.
    For grid groups the logits are exactly invariant (float round-off): ``f(g·x) == f(x)`` for every g (every
    rotation g with ``invariance="rotation"``).

    Args:
        spatial_dims: 2 or 3 (must match the group).
        in_channels: channels of the plain input.
        out_channels: number of logits.
        channels: fields per stage (the tensors carry fields·|G| channels).
        group: ``"O"``, ``"Oh"``, ``"D4h"``, ``"D4"``, ``"p4"``, ``"p4m"``, ``"se2_8"``, ``"trivial"``... or a
            :class:`~monai_equivariant.groups.Group`; None (default) picks ``"p4"`` in 2D and ``"O"`` in 3D.
        strides: max-pool factor between consecutive stages (default 2 each): an int, or one int per axis
            (``((2, 1), ...)``); per-axis strides that differ admit only the group elements mapping each axis onto
            one of the same stride (others: ValueError naming the level and the largest named group that fits).
        kernel_size: odd kernel size: an int or ``spatial_dims`` equal ints; None (default) picks 5 for groups that
            interpolate their kernels (se2_N with N ∉ {1, 2, 4}) and 3 otherwise (:func:`default_kernel_size`: a 3×3
            kernel rotated by 45° keeps too little of its shape to learn from). Before this default such nets were
            3×3: ``kernel_size=3`` builds them (and loads their checkpoints).
        act: MONAI act spec (``"relu"``, ``("leakyrelu", {...})``, None).
        norm: MONAI norm spec (``"batch"``, ``"instance"``, ``("batch", {...})``, ``"groupbatch"``, None), with
            statistics shared over the group.
        dropout: probability or MONAI dropout spec, inside every residual block.
        bias: conv biases.
        num_res_units: residual blocks per stage (≥ 1).
        checkpointing: trade compute for memory in training (with gradients on): the backward pass keeps only
            the input and the output of each residual block, and recomputes the rest (``torch.utils.checkpoint``,
            non-reentrant, RNG state preserved). With batch norm and ReLU, the lifting stem and every
            identity-shortcut block run their backward one sample at a time (only their input kept, every
            activation recomputed per sample); other blocks recompute their norms and activations and run their
            conv backward per sample. Outputs, gradients and batch-norm running statistics equal those without it
            up to float round-off (summation order; the running statistics are updated once per step). The
            bundle's O-group nodule net ``GroupCNN(3, 1, 2, (4, 8, 16), "O")`` at batch 16, 32³ needs 2.3–2.5×
            less peak memory for a training step, at 1.3–1.4× its time (``benchmarks/group_cnn_memory.py``;
            docs/networks.md). True or False only (a string such as ``"False"`` is refused, TypeError).
        adn_ordering: order of norm (N), dropout (D) and act (A) after every conv, as MONAI's (default ``"NDA"``:
            norm, dropout, act).
        feature_norm: batch-normalise the pooled invariant features before the linear head (default True;
            :class:`InvariantFeatureNorm`). Without it the O-group net at fields 2-4 trained on 1 seed of 5 in 60
            steps on 64 synthetic nodule patches (4 of 5 with it): the max over the 24 orientations puts every
            pooled feature near the same offset (≈2.5, the expected maximum of 24 normalised responses) with a
            between-sample spread of ≈0.1 (plain CNN: ≈0.55 ± 0.1), so the head saw near-constant inputs and the
            loss sat near 0.6 (bundles/nodule_classification/docs/README.md). ``False`` builds the net of earlier
            versions (their checkpoints have no ``feature_norm.*`` entries). True or False only.
        invariance: what the logits are invariant to: ``"group"`` (every element: max over the group) or
            ``"rotation"`` (max over each coset of the rotation subgroup,
            :class:`~monai_equivariant.layers.SubgroupPool`: for a group with reflections every field gives two
            features, a reflection swaps them, and the head can learn labels that tell mirror images apart, such as
            "L" and "J"). None (default): ``"rotation"`` for 2D groups with reflections (p4m), ``"group"`` otherwise
            (:func:`default_invariance`; measured in docs/which_to_choose.md: p4m erred 44 % with ``"group"`` and
            11 % with ``"rotation"`` on glyphs with mirror pairs). Nets of p4m built before this default had
            ``"group"`` (their ``feature_norm`` and ``head`` have channels[-1] inputs, not twice that):
            ``invariance="group"`` builds them and loads their checkpoints.
        route: how every group conv computes: ``"auto"`` (default), ``"filter"`` or ``"input"`` (see
            :attr:`~monai_equivariant.layers.GroupConv.route`); ``net.route = ...`` sets every layer later.
        channels_as: how ``channels`` is read: ``"fields"`` (default: fields per stage), ``"params"`` (the channels
            of the plain twin, this net with ``group="trivial"`` and the same other arguments: the fields are the
            channels scaled uniformly so that the parameter count is the closest to the twin's) or ``"flops"``
            (the same, matching conv multiply-adds per pixel). ``net.channels`` holds the fields built.
        separable: every group conv after the lifting stem (but the 1×1 shortcuts) is a
            :class:`~monai_equivariant.layers.SeparableGroupConv` (pointwise group mixing, then a depthwise conv of
            the group-transformed kernels; exact too). With ``checkpointing`` its blocks are recomputed, not streamed.

    Input (B, in_channels, *spatial) with every spatial size divisible by prod(strides) (per-axis strides: each
    axis by the product of its strides); output (B, out_channels).
    """

    __doc__ += _CLASSIFIER_DIFFERENCES
    __jit_unused_properties__ = ["checkpointing", "route", "num_cosets"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (4, 8, 16),
        group: str | Group | None = None,
        strides: Sequence[Stride | Sequence[int]] | None = None,
        kernel_size: Sequence[int] | int | None = None,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        num_res_units: int = 1,
        checkpointing: bool = False,
        adn_ordering: str = "NDA",
        route: str = "auto",
        channels_as: str = "fields",
        separable: bool = False,
        feature_norm: bool = True,
        invariance: str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.group = as_group(default_group(spatial_dims) if group is None else group, spatial_dims)
        kernel_size = default_kernel_size(self.group) if kernel_size is None else kernel_size
        self.invariance = check_invariance(default_invariance(self.group) if invariance is None else invariance)
        route = check_route(route)
        self.channels_as = check_channels_as(channels_as)
        channels, strides = check_levels(channels, strides, min_levels=1, spatial_dims=spatial_dims)
        check_plan(self.group, {"strides": strides}, between_levels=("strides",))
        if isinstance(num_res_units, bool) or not isinstance(num_res_units, numbers.Integral) or num_res_units < 1:
            raise ValueError(f"num_res_units must be an integer ≥ 1, got {num_res_units!r}")
        multiples = axis_products(strides, spatial_dims)
        if self.channels_as != "fields":
            same = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                        strides=strides, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias,
                        num_res_units=num_res_units, adn_ordering=adn_ordering, feature_norm=feature_norm)
            channels = list(budget_fields(
                self.channels_as, channels,
                lambda fields: GroupCNN(channels=fields, group=self.group, separable=separable,
                                        invariance=self.invariance, **same),
                lambda: GroupCNN(channels=channels, group="trivial", **same),
                (in_channels, *(2 * m for m in multiples)), self.group.order,
            ))
        self.spatial_dims = int(spatial_dims)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.channels, self.strides = tuple(channels), tuple(strides)
        self.kernel_size = as_kernel_size(kernel_size, spatial_dims)
        self.num_res_units = int(num_res_units)
        self.size_multiple = math.lcm(*multiples)
        # per-axis size multiples where the strides differ between axes (None: one multiple, as before)
        self.axis_multiples = multiples if len(set(multiples)) > 1 else None
        self.adn_ordering = check_adn_ordering(adn_ordering)
        self.separable = check_separable(separable)
        block = dict(group=self.group, kernel_size=self.kernel_size, act=act, norm=norm, bias=bias,
                     adn_ordering=self.adn_ordering, separable=self.separable)
        pool_cls = Pool[Pool.MAX, spatial_dims]

        self.stem = GroupConvBlock(in_channels, channels[0], lifting=True, **block)
        body: list[nn.Module] = []  # flat, so that checkpointing recomputes one block at a time
        for i, fields in enumerate(channels):
            if i > 0:
                body.append(pool_cls(strides[i - 1]))
            for unit in range(self.num_res_units):
                in_fields = channels[i - 1] if i > 0 and unit == 0 else fields
                body.append(GroupResidualBlock(in_fields, fields, dropout=dropout, **block))
        self.body = nn.ModuleList(body)
        self.project = _invariant_pool(self.group, self.invariance)
        features = channels[-1] * self.num_cosets
        self.spatial_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.feature_norm = (
            InvariantFeatureNorm(features) if _strict_bool("feature_norm", feature_norm) else nn.Identity()
        )
        self.head = nn.Linear(features, out_channels)
        _field_fan_in_init(self)
        self.checkpointing = checkpointing
        set_network_route(self, route)

    @property
    def checkpointing(self) -> bool:
        """Whether training steps recompute activations in the backward pass (see the class docstring)."""
        return self._checkpointing

    @checkpointing.setter
    def checkpointing(self, value: bool) -> None:
        self._checkpointing = _strict_bool("checkpointing", value)
        for layer in self.body:
            if isinstance(layer, GroupResidualBlock):
                layer.checkpointing = self._checkpointing

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, *spatial), B ≥ 1, with positive sizes divisible by
        ``size_multiple``, in the network's dtype."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.head.weight.dtype,
                    self.axis_multiples)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("axis_multiples", None)  # pickled before per-axis strides
        self.__dict__.setdefault("channels_as", "fields")
        self.__dict__.setdefault("invariance", "group")  # pickled before the rotation-invariant head

    @torch.jit.unused
    def _checkpointed_body(self, x: torch.Tensor) -> torch.Tensor:
        """Segments: [stem, first block], then [pool?, block] for each further block; only segment inputs (the
        input image and each block's output) are kept. Inside the first segment the stem keeps only the image
        (streamed, or a segment of its own); a segment's recomputation skips its last block's forward when that
        block is streamed (its output is discarded there)."""
        segments: list[list[nn.Module]] = [[self.stem]]
        for layer in self.body:
            segments[-1].append(layer)
            if isinstance(layer, GroupResidualBlock):
                segments.append([])
        for segment in segments:
            if segment:
                last = segment[-1]
                streamed = isinstance(last, GroupResidualBlock) and streamable(last) and not torch.is_autocast_enabled()
                x = checkpoint_segment(
                    functools.partial(self._run_segment, segment), x, modules=segment, ends_with_streamed_block=streamed
                )
        return x

    def _run_segment(self, segment: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        for layer in segment:
            if layer is not self.stem:
                x = layer(x)
            elif streamable_unit(layer) and not torch.is_autocast_enabled():
                x = streamed_conv_norm_relu(layer, x)  # keeps only the image, recomputes per sample
            else:
                x = checkpoint_segment(layer, x, modules=[layer])
        return x

    @property
    def num_cosets(self) -> int:
        """Pooled features per field: 1 when the logits are invariant to the whole group, 2 for ``invariance=
        "rotation"`` with a group that has reflections (the rotations and the mirrored rotations)."""
        return self.project.num_cosets if isinstance(self.project, SubgroupPool) else 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> pooled features (B, channels[-1]·num_cosets), field-major: invariant to
        every element (``invariance="group"``) or to the rotations, a reflection swapping each field's two
        features (``"rotation"``, see :class:`~monai_equivariant.layers.SubgroupPool`)."""
        self.check_input(x)
        if self._checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            x = self._checkpointed_body(x)
        else:
            x = self.stem(x)
            for layer in self.body:
                x = layer(x)
        return torch.flatten(self.spatial_pool(self.project(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> logits (B, out_channels)."""
        return self.head(self.feature_norm(self.features(x)))


class InvariantFeatureNorm(nn.BatchNorm1d):
    """Batch norm of pooled invariant features (B, C) -> (B, C), in front of a classifier's linear head.

    Centres and scales each feature over the batch, so that the head sees the between-sample differences and
    not the large common offset that a max over the group leaves. Unlike ``nn.BatchNorm1d``, the running
    variance averages the *biased* batch variance, the one that normalises in training, so that eval mode
    reproduces training mode on the same batch (with a few feature vectors per batch the unbiased estimate is
    B/(B-1) larger: 8/7 at batch 8). A training-mode batch of one (no batch statistics) is normalised with the
    running statistics, which it leaves unchanged. Exports as a plain ``nn.BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, C)."""
        running = self.track_running_stats and self.running_mean is not None and self.running_var is not None
        if running and (not self.training or x.shape[0] == 1):
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        mean, var = x.mean(0), x.var(0, unbiased=False)
        if running and self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(var.detach().to(self.running_var.dtype), factor)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y

    def to_plain(self) -> nn.Module:
        """An ``nn.BatchNorm1d`` with the same parameters and statistics (eval mode)."""
        state = self.state_dict()
        tensor = next(t for t in state.values() if t.is_floating_point()) if state else None
        plain = nn.BatchNorm1d(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats,
                               device=None if tensor is None else tensor.device,
                               dtype=None if tensor is None else tensor.dtype)
        plain.load_state_dict(state)
        return plain.eval()


def _invariant_pool(group: Group, invariance: str) -> nn.Module:
    """Max over the group (``GroupPool``, as before the ``invariance`` option) or, for ``"rotation"`` with a group
    that has reflections, max over each coset of its rotations (``SubgroupPool``). Neither holds parameters or
    persistent buffers, so the state-dict keys are the same."""
    if invariance == "rotation" and reflections(group).any():
        return SubgroupPool(group, "rotations", mode="max")
    return Pool["group", group.spatial_dims](group.order, mode="max")


def _field_fan_in_init(net: nn.Module) -> None:
    """Scale every group conv's initial weight by sqrt(|G_in|): He fan-in over its C_in·k^d taps per input
    orientation instead of all C_in·|G|·k^d (the layer default), so that the weights start as large as a plain
    conv's of the same fields. Every conv here is followed by batch norm, so the scale leaves the outputs
    unchanged and sets only the relative step an optimiser such as Adam takes (about lr/std per step): with the
    layer default the O-group net's convs (std 0.028-0.039) moved 8-11 % per step at lr 3e-3 and seeds 1 and 4
    of the nodule benchmark trained too slowly (bundles/nodule_classification/docs/README.md)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, GroupConv) and module.in_group_order > 1:
                module.weight.mul_(math.sqrt(module.in_group_order))


def _strict_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (or NumPy bool); TypeError naming ``name`` otherwise (``bool("False")`` is True:
    refuse rather than guess)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_baseline(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    group: str | Group,
    **kwargs,
) -> dict:
    """The plain (``"trivial"``) GroupCNN with about the parameters of the ``group`` one, and both counts.

    Channels follow :func:`matched_channels` (C·sqrt(|G|)). Returns a dict with ``group_channels``,
    ``baseline_channels``, ``group_parameters``, ``baseline_parameters`` and ``ratio`` (baseline / group).
    ``kwargs`` go to both constructors (strides, kernel_size, norm...).
    """
    baseline_channels = matched_channels(channels, group, "trivial", spatial_dims)
    group_net = GroupCNN(spatial_dims, in_channels, out_channels, channels, group=group, **kwargs)
    plain_net = GroupCNN(spatial_dims, in_channels, out_channels, baseline_channels, group="trivial", **kwargs)
    n_group, n_plain = count_parameters(group_net), count_parameters(plain_net)
    return {
        "group_channels": tuple(int(c) for c in channels),
        "baseline_channels": baseline_channels,
        "group_parameters": n_group,
        "baseline_parameters": n_plain,
        "ratio": n_plain / n_group,
    }
