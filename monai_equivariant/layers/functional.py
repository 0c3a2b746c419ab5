"""The one dispatch from a tensor's spatial dimension to torch's convolution (``F.conv1d/2d/3d``)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["CONV_FUNCTIONS", "conv_nd"]

CONV_FUNCTIONS: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
"""spatial_dims -> ``F.convNd``."""


@torch.jit.unused
def _conv_eager(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    return CONV_FUNCTIONS[x.dim() - 2](x, weight, bias, padding=padding)


def conv_nd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Stride-1 convolution of ``x`` (B, C_in, *spatial) with ``weight`` (C_out, C_in, *k), symmetric zero
    ``padding``, by the number of spatial dims of ``x`` -> (B, C_out, *spatial'). Scriptable (TorchScript cannot
    call a function looked up in a dict: it compiles the same convolution as ``torch.convolution``)."""
    if torch.jit.is_scripting():
        dims = x.dim() - 2
        return torch.convolution(x, weight, bias, [1] * dims, [padding] * dims, [1] * dims, False, [0] * dims, 1)
    return _conv_eager(x, weight, bias, padding)
