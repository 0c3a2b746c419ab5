"""MONAI-style layer specs for group tensors: kernel sizes, norms, activations and dropout, parsed with
``monai.networks.layers`` (``split_args``, ``get_act_layer``, ``get_dropout_layer``) so every net here takes the spec
forms ``monai.networks.nets.UNet`` takes, and the package's layers in MONAI's factories.

Importing this module registers in ``monai.networks.layers.factories``:

- ``Conv["lifting", d]`` / ``Conv["groupconv", d]`` / ``Conv["groupconvtrans", d]`` /
  ``Conv["separable_groupconv", d]``: :class:`~monai_equivariant.layers.LiftingConv` /
  :class:`~monai_equivariant.layers.GroupConv` / :class:`~monai_equivariant.layers.GroupConvTranspose` /
  :class:`~monai_equivariant.layers.SeparableGroupConv` for ``spatial_dims=d`` (``(in_channels, out_channels,
  group, kernel_size, ...)``);
- ``Pool["group", d]``: :class:`~monai_equivariant.layers.GroupPool` (``(group_size, mode)``);

and two names in ``Norm``:

- ``"groupbatch"``: :class:`~monai_equivariant.layers.GroupBatchNorm` (one mean/variance/affine per field,
  shared over the group axis);
- ``"groupinstance"``: :class:`~monai_equivariant.layers.GroupInstanceNorm`;
- ``"groupgroup"``: :class:`~monai_equivariant.layers.norm.GroupGroupNorm` (``nn.GroupNorm`` whose norm groups are
  unions of whole fields; takes ``num_groups``).

They resolve through MONAI's own lookup: ``Norm["groupbatch", 2]`` is a constructor taking ``num_features``
(the tensor's channels, C·|G|) and ``group_size`` (|G|), so
``monai.networks.layers.get_norm_layer(("groupbatch", {"group_size": 4}), spatial_dims=2, channels=32)``
builds a group batch norm over 8 fields of p4. MONAI's own names (``"batch"``, ``"instance"``...) are not
shadowed; inside the group nets ``"batch"`` and ``"instance"`` mean their group-shared versions.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any, Callable, Union

import numpy as np
import torch.nn as nn
from monai.networks.layers.factories import Conv, Norm, Pool, split_args
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer

from monai_equivariant.groups import Group, kernel_shape
from monai_equivariant.layers import (
    GroupBatchNorm,
    GroupConv,
    GroupConvTranspose,
    GroupInstanceNorm,
    GroupPool,
    LiftingConv,
    SeparableGroupConv,
)
from monai_equivariant.layers.norm import GroupGroupNorm

__all__ = [
    "ActSpec",
    "DropoutSpec",
    "NormSpec",
    "as_kernel_shape",
    "as_kernel_size",
    "check_adn_ordering",
    "check_group_act",
    "check_separable",
    "group_conv_class",
    "get_group_act_layer",
    "get_group_dropout_layer",
    "get_group_norm_layer",
    "group_dropout_spec",
    "group_norm_spec",
]

ActSpec = Union[str, tuple, None]
"""``"relu"``, ``("leakyrelu", {"negative_slope": 0.1})``, a callable type with kwargs, or None (no activation)."""
NormSpec = Union[str, tuple, None]
"""``"batch"``, ``("instance", {"affine": True})``, ``"groupbatch"``, or None (no normalisation)."""
DropoutSpec = Union[float, str, tuple, None]
"""A probability (``0.1``), ``("dropout", {"p": 0.1})``, ``("alphadropout", {"p": 0.1})``, or None / 0."""


def as_kernel_size(kernel_size: Sequence[int] | int, spatial_dims: int, name: str = "kernel_size") -> int:
    """The side of a cubic (square) odd kernel given as MONAI accepts it: an int, or a sequence of
    ``spatial_dims`` equal ints. Anything else raises ValueError naming what was expected.

    Equal sides are required because the group (90° rotations, cube symmetries) maps the kernel grid onto
    itself only when it is square (cubic); odd sides keep the centre tap on the rotation centre.
    """
    expected = (
        f"{name} must be an odd int or a sequence of {spatial_dims} equal odd ints (e.g. 3 or {(3,) * spatial_dims})"
    )
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        sides = list(kernel_size)
        if len(sides) != spatial_dims:
            raise ValueError(f"{expected}; got {kernel_size!r} ({len(sides)} entries)")
    else:
        sides = [kernel_size]
    for side in sides:
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise ValueError(f"{expected}; got {kernel_size!r}, whose sides are not all integers")
    if len(set(int(s) for s in sides)) != 1:
        raise ValueError(
            f"{expected}; got {kernel_size!r}: the sides must be equal (the group rotates the kernel grid onto "
            f"itself only when it is square or cubic)"
        )
    side = int(sides[0])
    if side < 1 or side % 2 != 1:
        raise ValueError(f"{expected}; got {kernel_size!r}: the side must be odd and ≥ 1 for exact equivariance")
    return side


def as_kernel_shape(
    kernel_size: Sequence[int] | int, group: Group, stride: Sequence[int] | int = 1, name: str = "kernel_size"
) -> int | tuple[int, ...]:
    """The kernel of a block as its conv takes it: the side (an int) of a square/cubic kernel as
    :func:`as_kernel_size` reads it, or per-axis sides (``(1, 3, 3)``) when ``group`` maps that box onto itself (D4h
    does, O does not) and every axis with stride 1 has an odd side (``kernel_size = stride = 2`` is allowed).

    Anything else raises :func:`as_kernel_size`'s ValueError (what a square/cubic kernel needs), followed by why the
    per-axis form does not fit either.
    """
    dims = group.spatial_dims
    try:
        return as_kernel_size(kernel_size, dims, name)
    except ValueError as cubic_error:
        try:
            shape = kernel_shape(kernel_size, dims)
        except ValueError:
            raise cubic_error from None
        steps = stride if isinstance(stride, Sequence) and not isinstance(stride, str) else (stride,) * dims
        element = group.misfit(shape)
        even = [axis for axis, side in enumerate(shape) if side % 2 == 0 and int(steps[axis]) == 1]
        if element is None and not even:
            return shape if len(set(shape)) > 1 else shape[0]
        reason = (f"group {group.name!r} does not map it onto itself (element {element})" if element is not None
                  else f"axis {even[0]} has an even side and stride 1")
        raise ValueError(f"{cubic_error}; per-axis sides are accepted when the group maps the kernel grid onto "
                         f"itself and stride-1 axes have odd sides, but {reason}") from None


def check_separable(separable: object) -> bool:
    """``separable`` if it is True or False (NumPy bools too); TypeError naming it otherwise (``bool("False")`` is
    True: refuse rather than guess)."""
    if not isinstance(separable, (bool, np.bool_)):
        raise TypeError(f"separable must be True or False, got {separable!r} ({type(separable).__name__})")
    return bool(separable)


def group_conv_class(group: Group, kernel_size: Sequence[int] | int, lifting: bool = False,
                     separable: bool = False) -> Callable[..., nn.Module]:
    """The conv a block builds, from MONAI's ``Conv`` factory: ``"lifting"`` for a plain input, else
    ``"separable_groupconv"`` when ``separable`` and the kernel has more than one tap (a 1×1 group conv is already
    pointwise), else ``"groupconv"``."""
    dims, separable = group.spatial_dims, check_separable(separable)
    if lifting:
        return Conv[Conv.LIFTING, dims]
    taps = math.prod(kernel_shape(kernel_size, dims))
    return Conv["separable_groupconv" if separable and taps > 1 else Conv.GROUPCONV, dims]


def _group_norm_factory(cls: type) -> Callable[[int], Callable[..., nn.Module]]:
    def factory(dim: int = 2) -> Callable[..., nn.Module]:
        def make(num_features: int, group_size: int, **kwargs: Any) -> nn.Module:
            num_features, group_size = int(num_features), int(group_size)
            if group_size < 1 or num_features % group_size != 0:
                raise ValueError(
                    f"{cls.__name__} normalises fields of |G|={group_size} channels: num_features must be a multiple "
                    f"of group_size, got {num_features}"
                )
            kwargs.setdefault("spatial_dims", dim)  # picks the plain norm of to_plain()
            return cls(num_features // group_size, group_size, **kwargs)

        make.__doc__ = f"{cls.__name__} over num_features = fields·group_size channels; kwargs go to it."
        return make

    factory.__doc__ = f"{cls.__name__}: statistics shared over the group axis of a group tensor."
    return factory


_REGISTERED = {"GROUPBATCH": GroupBatchNorm, "GROUPINSTANCE": GroupInstanceNorm, "GROUPGROUP": GroupGroupNorm}
for _name, _cls in _REGISTERED.items():
    if _name not in Norm.names:  # idempotent under module reloads; never overrides another registration
        Norm.add_factory_callable(_name.lower(), _group_norm_factory(_cls))


def _conv_factory(cls: type) -> Callable[[int], Callable[..., nn.Module]]:
    def factory(dim: int = 2) -> Callable[..., nn.Module]:
        return functools.partial(cls, spatial_dims=dim)

    factory.__doc__ = f"{cls.__name__} on group tensors of spatial_dims=dim."
    return factory


for _name, _cls in {"LIFTING": LiftingConv, "GROUPCONV": GroupConv, "GROUPCONVTRANS": GroupConvTranspose,
                    "SEPARABLE_GROUPCONV": SeparableGroupConv}.items():
    if _name not in Conv.names:
        Conv.add_factory_callable(_name.lower(), _conv_factory(_cls))
if "GROUP" not in Pool.names:
    Pool.add_factory_callable("group", lambda dim=2: GroupPool, "GroupPool: max or mean over the group axis.")

_MONAI_TO_GROUP = {"BATCH": "GROUPBATCH", "INSTANCE": "GROUPINSTANCE"}


def group_norm_spec(norm: NormSpec, group_size: int) -> tuple[str, dict] | None:
    """The one parser of norm specs on group tensors: a MONAI spec -> the spec of MONAI's ``Norm`` factory for the
    group-shared norm (``("groupbatch", {"group_size": |G|, **kwargs})``), or None for none.

    ``"batch"``/``"instance"`` (any case, with or without a kwargs dict) give the group-shared versions, as do
    ``"groupbatch"``/``"groupinstance"`` and the classes themselves; None or ``""`` gives None. Other MONAI norms
    (layer, group, local-response...) normalise or scale channels independently of the group structure and would
    break equivariance: they raise ValueError.
    """
    if norm is None or norm == "":
        return None
    try:
        name, kwargs = split_args(norm)
    except (TypeError, ValueError) as error:
        raise ValueError(f"norm must be a name, (name, kwargs dict) or None, got {norm!r}") from error
    if isinstance(name, type):
        key = next((k for k, c in _REGISTERED.items() if issubclass(name, c)), None)
    else:
        key = _MONAI_TO_GROUP.get(str(name).upper(), str(name).upper()) if isinstance(name, str) else None
    if key not in _REGISTERED:
        raise ValueError(
            f"norm {norm!r} is not equivariant on group tensors; expected 'batch' or 'instance' (statistics shared "
            "over the group; also as 'groupbatch' / 'groupinstance' or with a kwargs dict), 'groupgroup' with "
            "num_groups (norm groups of whole fields) or None"
        )
    return key.lower(), {**dict(kwargs), "group_size": int(group_size)}


def get_group_norm_layer(norm: NormSpec, num_fields: int, group_size: int, spatial_dims: int) -> nn.Module:
    """A norm of a group tensor (B, num_fields·group_size, *spatial) from a MONAI-style spec (parsed by
    :func:`group_norm_spec`, built by MONAI's ``get_norm_layer``); None or ``""`` gives ``nn.Identity``."""
    spec = group_norm_spec(norm, group_size)
    if spec is None:
        return nn.Identity()
    return get_norm_layer(spec, spatial_dims=spatial_dims, channels=num_fields * group_size)


def check_group_act(layer: nn.Module | None, act: ActSpec) -> nn.Module | None:
    """``layer`` (built from ``act``), unless it is a ``PReLU`` with one slope per channel, which does not commute
    with the group's permutations of channels: ValueError then."""
    if isinstance(layer, nn.PReLU) and layer.num_parameters != 1:
        raise ValueError(f"act {act!r}: a PReLU with per-channel slopes is not equivariant; use num_parameters=1")
    return layer


def get_group_act_layer(act: ActSpec) -> nn.Module | None:
    """A pointwise activation from a MONAI spec (``monai.networks.layers.get_act_layer``); None or ``""`` gives
    None. Pointwise maps commute with the group's permutations of channels and pixels; a ``PReLU`` with one
    slope per channel does not and raises ValueError."""
    if act is None or act == "":
        return None
    return check_group_act(get_act_layer(act), act)


def group_dropout_spec(dropout: DropoutSpec) -> DropoutSpec:
    """``dropout`` as MONAI's ``ADN`` takes it: None for none (None, 0 or ``""``), else the probability or spec;
    ValueError for a probability outside [0, 1]."""
    if dropout is None or dropout == "" or (isinstance(dropout, numbers.Real) and float(dropout) == 0.0):
        return None
    if isinstance(dropout, numbers.Real):
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {dropout!r}")
        return float(dropout)
    return dropout


def get_group_dropout_layer(dropout: DropoutSpec) -> nn.Module | None:
    """Element-wise dropout from a probability or MONAI spec (``get_dropout_layer`` with ``dropout_dim=1``, as
    MONAI's ``Convolution`` does); None, 0 or ``""`` gives None."""
    spec = group_dropout_spec(dropout)
    if spec is None:
        return None
    try:
        return get_dropout_layer(spec, dropout_dim=1)
    except (TypeError, KeyError) as error:
        raise ValueError(f"dropout must be a probability or a MONAI dropout spec, got {dropout!r}") from error


def check_adn_ordering(adn_ordering: object) -> str:
    """``adn_ordering`` (MONAI's: a string of the letters N = norm, D = dropout, A = act, each at most once, in the
    order they follow the conv), upper-cased; ValueError naming it otherwise."""
    if not isinstance(adn_ordering, str) or not set(adn_ordering.upper()) <= set("NDA") or len(
            set(adn_ordering.upper())) != len(adn_ordering):
        raise ValueError(
            f"adn_ordering must be a string of the letters N (norm), D (dropout), A (act), each at most once "
            f"(MONAI's default 'NDA'), got {adn_ordering!r}"
        )
    return adn_ordering.upper()
