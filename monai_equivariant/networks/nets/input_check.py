"""The one input check every network runs: layout, channel count, and sizes that keep the grid symmetric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

__all__ = ["check_input", "check_levels"]


def check_input(
    x: torch.Tensor, spatial_dims: int, in_channels: int, size_multiple: int, dtype: Optional[torch.dtype] = None
) -> None:
    """Raise ValueError unless x is (B, in_channels, *spatial) with B ≥ 1 and ``spatial_dims`` spatial axes, each
    a positive multiple of ``size_multiple`` (the down-sampling product: 2×2 pooling maps the grid onto itself only
    then), and, when ``dtype`` (the network's parameter dtype) is given, of that dtype (outside ``torch.autocast``).

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
    for size in x.shape[2:]:
        if size < 1:
            raise ValueError(
                "spatial size " + str(size) + " in shape " + str(list(x.shape)) + ": expected every spatial size to "
                "be a positive multiple of " + str(size_multiple)
            )
        if size % size_multiple != 0:
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
    channels: Sequence[int], strides: Sequence[int] | None, min_levels: int = 1
) -> tuple[list[int], list[int]]:
    """Validate per-level ``channels`` and the ``strides`` between levels (default 2 each).

    Returns (channels, strides) as int lists; ValueError names what was expected.
    """
    channels = [int(c) for c in channels]
    if len(channels) < min_levels or (channels and min(channels) < 1):
        raise ValueError(f"channels needs at least {min_levels} positive entries, got {channels}")
    strides = [2] * (len(channels) - 1) if strides is None else [int(s) for s in strides]
    if len(strides) != len(channels) - 1 or (strides and min(strides) < 1):
        raise ValueError(f"strides needs len(channels) - 1 = {len(channels) - 1} positive ints, got {strides}")
    return channels, strides
