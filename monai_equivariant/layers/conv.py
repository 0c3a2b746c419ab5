"""Lifting and group convolutions for any group and 2D/3D: expand the weight into a planar filter bank by
precomputed tables, then run one ``conv2d``/``conv3d``."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.filter_cache import FilterCache

__all__ = ["GroupConv", "LiftingConv", "expand_filter"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def expand_filter(
    weight: torch.Tensor,
    group: Group,
    regular_input: bool,
    kernel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Expand a group filter into the planar filter bank of one convolution.

    Args:
        weight: (C_out, C_in, |G_in|, *k) with |G_in| = |G| for regular input fields, 1 for plain input.
        group: the group; its kernel action moves the spatial taps.
        regular_input: True for group-tensor input (group conv), False for plain input (lifting conv).
        kernel_mask: optional (K,) mask of the taps (the disk of interpolated groups, see
            ``KernelAction.mask``), applied before and after the action, so every transformed copy has the
            same support. It must be invariant under the group's grid symmetries (a disk is).

    Returns:
        (C_out·|G|, C_in·|G_in|, *k): ``bank[o·|G|+g, i·|G_in|+h] = g·weight[o, i, g^-1 h]``.
    """
    c_out, c_in, g_in = weight.shape[:3]
    kernel_shape = weight.shape[3:]
    k_points = math.prod(kernel_shape)
    n = group.order
    action = group.kernel_action(kernel_shape[0])
    flat = weight.reshape(c_out, c_in, g_in, k_points)
    if kernel_mask is not None:
        flat = flat * kernel_mask.to(flat)
    group_index = _group_index(group, regular_input, weight.device)  # (|G|, |G_in|)
    if action.index is not None:
        # One gather moves both the group axis and the spatial taps.
        taps = action.index.to(weight.device)  # (|G|, K)
        index = (group_index[:, :, None] * k_points + taps[:, None, :]).reshape(-1)
        bank = flat.reshape(c_out, c_in, g_in * k_points).index_select(2, index)
        bank = bank.reshape(c_out, c_in, n, g_in, k_points)
    else:
        moved = flat.index_select(2, group_index.reshape(-1)).reshape(c_out, c_in, n, g_in, k_points)
        matrix = action.matrix.to(flat)
        if kernel_mask is not None:
            matrix = matrix * kernel_mask.to(flat)[None, :, None]  # output taps outside the mask stay zero
        bank = torch.einsum("oighk,gyk->oighy", moved, matrix)
    bank = bank.permute(0, 2, 1, 3, 4)  # (C_out, |G|, C_in, |G_in|, K)
    return bank.reshape(c_out * n, c_in * g_in, *kernel_shape)


def _group_index(group: Group, regular_input: bool, device: torch.device) -> torch.Tensor:
    if regular_input:
        return group.regular_index.to(device)
    return torch.zeros(group.order, 1, dtype=torch.long, device=device)


class _GroupConvNd(nn.Module):
    """Shared implementation of lifting and group convolution (see :func:`expand_filter`).

    In eval mode with gradients off the expanded bank is cached (not a buffer, so state-dict keys do not
    depend on the mode) and rebuilt whenever the weight or bias changes.
    """

    regular_input: bool = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: int = 3,
        spatial_dims: int | None = None,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.group = as_group(group, spatial_dims)
        self.spatial_dims = self.group.spatial_dims
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ValueError(f"in_channels and out_channels must be ≥ 1, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = int(kernel_size)
        self.group.kernel_action(self.kernel_size)  # validates the size (odd) and warms the table cache
        self.padding = self.kernel_size // 2 if padding is None else int(padding)
        self.in_group_size = self.group.order if self.regular_input else 1
        shape = (out_channels, in_channels, self.in_group_size) + (self.kernel_size,) * self.spatial_dims
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._cache = FilterCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-in) initialisation over all input taps of one output field."""
        fan_in = self.in_channels * self.in_group_size * self.kernel_size**self.spatial_dims
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def expected_in_channels(self) -> int:
        """Channels of the input tensor: C_in·|G| for group tensors, C_in for plain tensors."""
        return self.in_channels * self.in_group_size

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, group={self.group.name}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, bias={self.bias is not None}"
        )

    def kernel_mask(self) -> torch.Tensor | None:
        """(K,) mask on the kernel taps: the group's disk when its kernel action interpolates (se2_N for
        N ∉ {1, 2, 4}, k > 1); None for permutation actions (so se2_4 equals p4 exactly)."""
        return self.group.kernel_action(self.kernel_size).mask

    def expanded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The planar filter bank (C_out·|G|, C_in·|G_in|, *k) and bias (C_out·|G|,); cached in eval/no-grad."""

        def build() -> tuple[torch.Tensor, torch.Tensor | None]:
            bank = expand_filter(self.weight, self.group, self.regular_input, self.kernel_mask())
            bias = None if self.bias is None else self.bias.repeat_interleave(self.group.order)
            return bank, bias

        return self._cache.get(self, [self.weight, self.bias], build)

    def train(self, mode: bool = True) -> "_GroupConvNd":
        self._cache.clear()
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        self._cache.clear()  # device or dtype moves invalidate the cached bank
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in·|G_in|, *spatial) -> (B, C_out·|G|, *spatial') with a plain conv of the expanded bank."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"{type(self).__name__} ({self.group.name}) expects a (B, C, *spatial) tensor with "
                f"{self.spatial_dims} spatial dims, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.expected_in_channels:
            kind = f"{self.in_channels} fields × |G|={self.group.order}" if self.regular_input else "plain"
            raise ValueError(
                f"{type(self).__name__} expects {self.expected_in_channels} input channels ({kind}), "
                f"got {x.shape[1]}"
            )
        bank, bias = self.expanded()
        return _CONV[self.spatial_dims](x, bank, bias, padding=self.padding)

    def to_plain(self) -> nn.Module:
        """A plain ``nn.ConvNd`` holding the expanded bank; same outputs as this layer."""
        with torch.no_grad():
            bank = expand_filter(self.weight, self.group, self.regular_input, self.kernel_mask())
            conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[self.spatial_dims]
            conv = conv_cls(
                bank.shape[1], bank.shape[0], self.kernel_size, padding=self.padding, bias=self.bias is not None
            ).to(device=bank.device, dtype=bank.dtype)
            conv.weight.copy_(bank)
            if self.bias is not None:
                conv.bias.copy_(self.bias.repeat_interleave(self.group.order))
        return conv


class LiftingConv(_GroupConvNd):
    """Lifting convolution: plain input (B, C_in, *spatial) -> group tensor (B, C_out·|G|, *spatial).

    Args:
        in_channels: input channels C_in.
        out_channels: output fields C_out (the tensor has C_out·|G| channels).
        group: group name or :class:`Group`.
        kernel_size: odd kernel size k.
        spatial_dims: optional; checked against the group.
        padding: defaults to k // 2 (needed for exact equivariance).
        bias: one bias per output field, shared over the group.
    """

    regular_input = False


class GroupConv(_GroupConvNd):
    """Group convolution: group tensor (B, C_in·|G|, *spatial) -> group tensor (B, C_out·|G|, *spatial).

    Arguments as :class:`LiftingConv`; ``in_channels`` counts input fields.
    """

    regular_input = True
