"""Separable group convolution (Knigge, Romero & Bekkers, ICML 2022; Lengyel & van Gemert, ICIP 2021): a regular
group conv factorised into a pointwise group-mixing conv and a depthwise spatial conv, exactly equivariant.

Cost per output pixel: ``C_in·C_out·|G|² + C_out·|G|·k^d`` multiply-adds instead of ``C_in·C_out·|G|²·k^d``,
and ``C_in·C_out·|G| + C_out·k^d`` weights instead of ``C_in·C_out·|G|·k^d``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from monai_equivariant.groups import Group, kernel_shape
from monai_equivariant.layers.conv import GroupConv, _check_padding, _compact, _per_axis
from monai_equivariant.layers.expansion import expand_with_tables, expansion_tables
from monai_equivariant.layers.functional import CONV_FUNCTIONS

__all__ = ["SeparableGroupConv", "separable_flops", "separable_parameters"]


class SeparableGroupConv(nn.Module):
    """Separable group convolution: group tensor (B, C_in·|G|, *spatial) -> group tensor (B, C_out·|G|, *spatial').

    Two steps, pointwise first:

    1. ``pointwise``: a :class:`~monai_equivariant.layers.GroupConv` with ``kernel_size=1`` and no bias (mixing over
       fields × group with the Cayley-table structure, weight (C_out, C_in, |G|, 1, ...));
    2. a depthwise spatial conv over the C_out·|G| channels (``groups=C_out·|G|``) whose kernel for channel
       (c, g) is ``g·weight[c]``: one base kernel per output field (``weight`` (C_out, 1, *k), the layout of a
       depthwise ``nn.ConvNd``, so ``.to(memory_format=...)`` applies), moved by the group's
       kernel action — the expansion of :func:`~monai_equivariant.layers.expansion.expand_with_tables` with one
       plain input channel (a lifting-style weight (C_out, 1, 1, *k)), so grid groups permute the taps and
       interpolated groups (se2_N) rotate them inside the disk mask, exactly as in ``GroupConv``. Stride, padding
       and bias sit here.

    The composition is the regular group conv with weight ``W[o, i, h](y) = pointwise[o, i, h] · weight[o](y)``
    (a rank-one kernel per output field), so it is equivariant wherever ``GroupConv`` is: exactly for grid groups
    (p4, p4m, D4h, O, Oh; per-axis kernels such as (1, 3, 3) for the groups that map them onto themselves) and for
    se2_N at its multiples of 90°.

    Why pointwise first: the depthwise conv then runs over the *output* fields, which is the cost formula above
    (``C_out·|G|·k^d``); in a U-Net decoder the input is the concatenation of a skip and the up-sampled features
    (C_in = 2–3·C_out), so mixing first shrinks the channels before the spatial conv; and one base kernel per
    output field is the parametrisation of Knigge et al. (depthwise first would give one per input field). With a
    stride the pointwise conv runs at the input's resolution (s^d times the mixing FLOPs a strided full conv
    would spend on it).

    A depthwise kernel shared over the group *without* transforming it (channel (c, g) convolved with ``weight[c]``
    for every g) is equivariant only when every kernel is invariant, ``g·K = K`` for all g: the transformed bank of
    an invariant kernel is then the shared one, so that variant is this layer restricted to invariant (isotropic)
    kernels — 3 of 9 taps free for p4 at 3×3, 4 of 27 for O at 3×3×3 — at the same FLOPs and memory. It buys
    nothing but a few parameters and loses the orientation selectivity, so it is not offered.

    The lifting layer before it stays a full :class:`~monai_equivariant.layers.LiftingConv` (its input has only the
    image's channels, so it is cheap, and it is where the net sees raw pixels); a 1×1 kernel has nothing to
    factorise (use ``GroupConv``).

    Args:
        in_channels: input fields C_in.
        out_channels: output fields C_out.
        group: group name or :class:`~monai_equivariant.groups.Group`.
        kernel_size: an int or one side per axis (``(1, 3, 3)`` for D4h), as :class:`GroupConv`.
        spatial_dims: optional; checked against the group.
        padding: an int or one per axis; default ``k // 2`` per axis.
        bias: one bias per output field, shared over the group (added after the depthwise conv).
        stride: an int or one per axis (default 1), on the depthwise conv; exact on the sizes ``GroupConv`` is.

    ``to_plain()`` gives ``nn.Sequential(ConvNd 1×1, depthwise ConvNd with groups=C_out·|G|)`` with the same
    outputs. The layer scripts and traces as it is. The depthwise bank (C_out·|G|·k^d entries) is rebuilt on every
    forward: one gather, cheaper than comparing the weight with a cached copy.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int | None = None,
        padding: int | Sequence[int] | None = None,
        bias: bool = True,
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.pointwise = GroupConv(in_channels, out_channels, group, kernel_size=1, spatial_dims=spatial_dims,
                                   bias=False)
        group = self.pointwise.group
        self.group = group
        self.group_name, self.group_order = group.name, group.order
        self.spatial_dims = group.spatial_dims
        self.in_channels, self.out_channels = self.pointwise.in_channels, self.pointwise.out_channels
        self.kernel_shape = self._checked_kernel(kernel_size)
        self._kernel: List[int] = list(self.kernel_shape)
        self.stride_shape = _per_axis(stride, self.spatial_dims, "stride", minimum=1)
        even = [axis for axis, side in enumerate(self.kernel_shape) if side % 2 == 0 and self.stride_shape[axis] == 1]
        if even:
            raise ValueError(
                f"kernel_size {kernel_size!r}: a stride-1 separable group conv needs odd sides (a centre tap keeps "
                f"the output on the input's grid), axis {even[0]} has an even side"
            )
        self.padding_shape = (tuple(side // 2 for side in self.kernel_shape) if padding is None
                              else _check_padding(padding, self.spatial_dims))
        self.kernel_size = _compact(self.kernel_shape)
        self.stride, self.padding = _compact(self.stride_shape), _compact(self.padding_shape)
        self._stride: List[int] = list(self.stride_shape)
        self._padding: List[int] = list(self.padding_shape)
        self.weight = nn.Parameter(torch.empty((self.out_channels, 1) + self.kernel_shape))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        tables = expansion_tables(group, 1, False, self.kernel_shape)
        self.register_buffer("expand_index", tables["index"], persistent=False)
        self.register_buffer("inverse_index", tables["inverse"], persistent=False)
        self.register_buffer("tap_matrix", tables["matrix"], persistent=False)
        self.interpolated = bool(tables["matrix"].numel() > 0)
        self.reset_parameters()

    def _checked_kernel(self, kernel_size: int | Sequence[int]) -> tuple[int, ...]:
        """``kernel_size`` per axis, validated against the group (ValueError naming the element that does not map
        it onto itself); a 1×1 kernel is refused (nothing to factorise: use ``GroupConv``)."""
        shape = kernel_shape(kernel_size, self.spatial_dims)
        self.group.kernel_action(shape)
        if math.prod(shape) == 1:
            raise ValueError(f"kernel_size {kernel_size!r}: a separable group conv needs a kernel of more than one "
                             "tap (a 1×1 group conv is already pointwise: use GroupConv)")
        return shape

    def reset_parameters(self) -> None:
        """He (fan-in) initialisation of the product: the pointwise weight over its C_in·|G| inputs, the base kernels
        with unit gain over their k^d taps (so the composed kernel has the variance of a full conv's He init)."""
        nn.init.normal_(self.pointwise.weight, std=math.sqrt(2.0 / (self.in_channels * self.group_order)))
        nn.init.normal_(self.weight, std=math.sqrt(1.0 / math.prod(self.kernel_shape)))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def expected_in_channels(self) -> int:
        """Channels of the input tensor: C_in·|G|."""
        return self.in_channels * self.group_order

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, group={self.group_name}, kernel_size={self.kernel_size}, "
                f"padding={self.padding}, bias={self.bias is not None}"
                + ("" if self.stride == 1 else f", stride={self.stride}"))

    def kernel_mask(self) -> torch.Tensor | None:
        """(K,) disk mask of the base kernels' taps for interpolated groups (se2_N), None for grid groups."""
        return self.group.kernel_action(self.kernel_shape).mask

    def depthwise_bank(self) -> torch.Tensor:
        """The depthwise bank (C_out·|G|, 1, *k): row c·|G| + g is ``g·weight[c]``."""
        weight = self.weight.reshape([self.out_channels, 1, 1] + self._kernel)
        return expand_with_tables(weight, self.expand_index, self.inverse_index, self.tap_matrix, self.group_order,
                                  self.interpolated)

    def expanded_bias(self) -> torch.Tensor | None:
        """(C_out·|G|,) bias, or None."""
        bias = self.bias
        if bias is None:
            return None
        return bias.repeat_interleave(self.group_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in·|G|, *spatial) -> (B, C_out·|G|, *spatial')."""
        mixed = self.pointwise(x)
        bank, bias = self.depthwise_bank(), self.expanded_bias()
        channels = self.out_channels * self.group_order
        if torch.jit.is_scripting():  # TorchScript cannot call a function looked up in a dict: the same op
            ones: List[int] = [1] * len(self._stride)
            zeros: List[int] = [0] * len(self._stride)
            return torch.convolution(mixed, bank, bias, self._stride, self._padding, ones, False, zeros, channels)
        return _depthwise_eager(mixed, bank, bias, self._stride, self._padding, channels)

    def to_plain(self) -> nn.Module:
        """``nn.Sequential`` of the pointwise ``nn.ConvNd`` (1×1, C_in·|G| -> C_out·|G|) and the depthwise
        ``nn.ConvNd`` (``groups=C_out·|G|``) holding the expanded banks; same outputs as this layer."""
        channels = self.out_channels * self.group_order
        with torch.no_grad():
            bank = self.depthwise_bank()
            depthwise = Conv[Conv.CONV, self.spatial_dims](
                channels, channels, self.kernel_shape, stride=self.stride_shape, padding=self.padding_shape,
                groups=channels, bias=self.bias is not None,
            ).to(device=bank.device, dtype=bank.dtype)
            depthwise.weight.copy_(bank)
            bias = self.expanded_bias()
            if bias is not None:
                depthwise.bias.copy_(bias)
        return nn.Sequential(self.pointwise.to_plain(), depthwise)


@torch.jit.unused
def _depthwise_eager(x: torch.Tensor, bank: torch.Tensor, bias: torch.Tensor | None, stride: List[int],
                     padding: List[int], groups: int) -> torch.Tensor:
    """``F.convNd`` with ``groups`` (what ``torch.autocast`` casts; ``torch.convolution`` it does not)."""
    return CONV_FUNCTIONS[x.dim() - 2](x, bank, bias, stride=stride, padding=padding, groups=groups)


def separable_parameters(in_channels: int, out_channels: int, group_order: int, kernel_taps: int,
                         bias: bool = True) -> int:
    """Weights of a :class:`SeparableGroupConv`: ``C_in·C_out·|G| + C_out·k^d`` (+ C_out biases)."""
    return in_channels * out_channels * group_order + out_channels * kernel_taps + (out_channels if bias else 0)


def separable_flops(in_channels: int, out_channels: int, group_order: int, kernel_taps: int) -> int:
    """Multiply-adds per output pixel of a stride-1 :class:`SeparableGroupConv`:
    ``C_in·C_out·|G|² + C_out·|G|·k^d`` (a full group conv: ``C_in·C_out·|G|²·k^d``)."""
    return in_channels * out_channels * group_order**2 + out_channels * group_order * kernel_taps
