"""The one input check every network runs: layout, channel count, and sizes that keep the grid symmetric."""

from __future__ import annotations

import torch

__all__ = ["check_input"]


def check_input(x: torch.Tensor, spatial_dims: int, in_channels: int, size_multiple: int) -> None:
    """Raise ValueError unless x is (B, in_channels, *spatial) with ``spatial_dims`` spatial axes, each a
    multiple of ``size_multiple`` (the down-sampling product: 2×2 pooling maps the grid onto itself only then).

    Written for TorchScript, so exported networks keep the check.
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            "expected a (B, C, *spatial) input with " + str(spatial_dims) + " spatial dims, got "
            + str(x.dim() - 2)
        )
    if x.shape[1] != in_channels:
        raise ValueError("expected " + str(in_channels) + " input channels, got " + str(x.shape[1]))
    for size in x.shape[2:]:
        if size % size_multiple != 0:
            raise ValueError(
                "spatial size " + str(size) + " is not a multiple of " + str(size_multiple)
                + " (the product of the down-sampling strides); exact equivariance needs every spatial size"
                " divisible by it: crop or pad the input"
            )
