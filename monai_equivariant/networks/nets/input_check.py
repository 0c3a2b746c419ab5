"""The one input check every network runs: layout, channel count, and sizes that keep the grid symmetric."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import List, Optional, Union

import torch


__all__ = ["ParameterDtype", "axis_products", "check_input", "check_levels"]

Stride = Union[int, tuple[int, ...]]
"""A down-sampling factor: one int for every axis, or one per axis (anisotropic, as MONAI's ``strides``)."""


def check_input(
    x: torch.Tensor, spatial_dims: int, in_channels: int, size_multiple: int, dtype: Optional[torch.dtype] = None,
    axis_multiples: Optional[List[int]] = None,
) -> None:
    """Raise ValueError unless x is (B, in_channels, *spatial) with B ≥ 1 and ``spatial_dims`` spatial axes, each
    a positive multiple of ``size_multiple`` (the down-sampling product: 2×2 pooling maps the grid onto itself only
    then) or, when ``axis_multiples`` is given (anisotropic strides), axis i a multiple of ``axis_multiples[i]``,
    and, when ``dtype`` (the network's parameter dtype) is given, of that dtype (outside ``torch.autocast``).

    Written for TorchScript, so exported networks keep the check (the dtype check runs in Python only).
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            "expected a (B, C, *spatial) input with " + str(spatial_dims) + " spatial dims, got "
            + str(x.dim() - 2) + " (shape " + str(list(x.shape)) + ")"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            "expected " + str(in_channels) + " input channels, got " + str(x.shape[1]) + " (shape "
            + str(list(x.shape)) + ")"
        )
    if x.shape[0] < 1:
        raise ValueError(
            "got an empty batch (shape " + str(list(x.shape)) + "): expected a (B, C, *spatial) input with B ≥ 1"
        )
    for axis in range(spatial_dims):
        size = x.shape[2 + axis]
        if size < 1:
            raise ValueError(
                "spatial size " + str(size) + " in shape " + str(list(x.shape)) + ": expected every spatial size to "
                "be a positive multiple of " + str(size_multiple)
            )
        if axis_multiples is not None:
            if size % axis_multiples[axis] != 0:
                raise ValueError(
                    "spatial size " + str(size) + " along axis " + str(axis) + " is not a multiple of "
                    + str(axis_multiples[axis]) + " (the product of the down-sampling strides along that axis, "
                    + str(axis_multiples) + " for the axes); exact equivariance needs each axis divisible by its "
                    "product: crop or pad the input"
                )
        elif size % size_multiple != 0:
            raise ValueError(
                "spatial size " + str(size) + " is not a multiple of " + str(size_multiple)
                + " (the product of the down-sampling strides); exact equivariance needs every spatial size"
                " divisible by it: crop or pad the input"
            )
    if dtype is not None and not torch.jit.is_scripting():
        _check_dtype(x, dtype)


@torch.jit.unused
def _check_dtype(x: torch.Tensor, dtype: torch.dtype) -> None:
    """ValueError naming both dtypes when the input's differs from the network's (``torch.autocast`` casts inputs
    itself, so there any floating dtype passes)."""
    if x.dtype == dtype:
        return
    if x.is_floating_point() and torch.is_autocast_enabled(x.device.type):
        return
    raise ValueError(
        f"input dtype {x.dtype} does not match the network's parameter dtype {dtype}: cast the input "
        f"(x.to({dtype})) or the network (net.to({x.dtype})), or run under torch.autocast"
    )


def check_levels(
    channels: Sequence[int], strides: Sequence[Stride] | None, min_levels: int = 1, spatial_dims: int | None = None
) -> tuple[list[int], list[Stride]]:
    """Validate per-level ``channels`` and the ``strides`` between levels (default 2 each).

    With ``spatial_dims`` a stride may also be a sequence of ``spatial_dims`` positive ints (one per axis, as
    MONAI's ``strides=((2, 1), (2, 2))``); equal per-axis entries become one int (so ``(2, 2)`` is ``2``).
    Returns (channels, strides): ints, or per-axis tuples where the axes differ; ValueError names what was expected.
    """
    channels = [int(c) for c in channels]
    if len(channels) < min_levels or (channels and min(channels) < 1):
        raise ValueError(f"channels needs at least {min_levels} positive entries, got {channels}")
    if strides is None:
        strides = [2] * (len(channels) - 1)
    elif spatial_dims is None:
        strides = [int(s) for s in strides]
    else:
        strides = [_check_stride(s, spatial_dims, level) for level, s in enumerate(strides)]
    if len(strides) != len(channels) - 1 or any(min(_axes(s, 1)) < 1 for s in strides):
        per_axis = "" if spatial_dims is None else f" (or sequences of {spatial_dims} positive ints)"
        raise ValueError(
            f"strides needs len(channels) - 1 = {len(channels) - 1} positive ints{per_axis}, got {strides}"
        )
    return channels, strides


def _check_stride(stride: object, spatial_dims: int, level: int) -> Stride:
    """One stride as an int (isotropic) or a tuple of ``spatial_dims`` ints; ValueError naming the level."""
    if isinstance(stride, Sequence) and not isinstance(stride, str):
        axes = list(stride)
        if len(axes) != spatial_dims or not all(_is_int(a) for a in axes):
            raise ValueError(
                f"strides[{level}] must be an int or a sequence of {spatial_dims} ints (one per axis), got {stride!r}"
            )
        axes = [int(a) for a in axes]
        return axes[0] if len(set(axes)) == 1 else tuple(axes)
    if not _is_int(stride):
        raise ValueError(f"strides[{level}] must be an int or a sequence of {spatial_dims} ints, got {stride!r}")
    return int(stride)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _axes(stride: Stride, spatial_dims: int) -> tuple[int, ...]:
    return tuple(stride) if isinstance(stride, tuple) else (int(stride),) * spatial_dims


def axis_products(strides: Sequence[Stride], spatial_dims: int) -> list[int]:
    """The product of the strides along each axis: each input size must be a multiple of its axis' product."""
    return [math.prod(_axes(s, spatial_dims)[axis] for s in strides) for axis in range(spatial_dims)]



class ParameterDtype:
    """Mixin of networks whose head may be replaced on export by a module without ``weight`` (the lateral head's
    plain graph): :meth:`parameter_dtype` gives the dtype :func:`check_input` compares the input with."""

    @torch.jit.unused
    def _first_parameter_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype  # type: ignore[attr-defined]

    def parameter_dtype(self) -> Optional[torch.dtype]:
        """The network's parameter dtype in Python; None under TorchScript (where the dtype check is skipped)."""
        if torch.jit.is_scripting():
            return None
        return self._first_parameter_dtype()
