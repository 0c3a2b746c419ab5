"""Filter expansion: a group filter ``(C_out, C_in, |G_in|, *k)`` -> the planar bank ``(C_out·|G|, C_in·|G_in|, *k)``
of one ``conv2d``/``conv3d``, in one pass.

Per output element g, the bank row ``bank[o·|G|+g]`` is the weight row ``weight[o]`` (flattened over
``(C_in, |G_in|, k^d)``) read in another order: one ``index_select`` with a precomputed index of length
``|G|·C_in·|G_in|·k^d`` writes the bank straight in its final layout (no permute, no copy). For interpolated
groups (SE(2,N), N ∉ {1, 2, 4}) the index moves only the group axis and one batched matmul with the (masked)
interpolation matrices mixes the taps, again in the final layout. Every index here is a permutation per g, so the
backward is a gather too (with the inverse permutation) followed by a sum over g, instead of a scatter-add.

The tables are built once per layer at construction (:func:`expansion_tables`) and kept as non-persistent
buffers, so the expansion is plain tensor code that TorchScript, tracing, ``torch.compile`` and ``torch.export``
all see as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from monai_equivariant.groups.group import Group, kernel_shape

__all__ = ["expand_filter", "expand_with_tables", "expansion_tables"]


def expansion_tables(
    group: Group,
    in_channels: int,
    regular_input: bool,
    kernel_size: int | Sequence[int],
    kernel_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Index tables of the one-pass expansion of a ``(C_out, in_channels, |G_in|, *k)`` weight, ``kernel_size`` an
    int (a cube) or one side per axis (K = prod(k) taps below).

    Returns a dict of tensors:
        ``index`` (|G|·L,) long, with L = C_in·|G_in|·K: ``bank.view(C_out, |G|·L) = w.view(C_out, L)[:, index]``
        (before the tap matmul for interpolated groups);
        ``inverse`` (|G|·L,) long: for weight entry j and element g, the position in ``[0, |G|·L)`` that reads it
        (``inverse[g·L + j] = g·L + p`` with ``index[g·L + p] = j``);
        ``matrix`` (|G|, K, K) float: the interpolation matrices with the kernel mask folded in on both sides
        (empty (0,) for permutation actions).
    """
    shape = kernel_shape(kernel_size, group.spatial_dims)
    action = group.kernel_action(shape)
    n, k_points = group.order, math.prod(shape)
    if regular_input:
        group_index = torch.as_tensor(group.cayley[group.inverse], dtype=torch.long)  # (|G|, |G|): g^-1 h
    else:
        group_index = torch.zeros(n, 1, dtype=torch.long)
    g_in = group_index.shape[1]
    taps = action.index if action.index is not None else torch.arange(k_points).expand(n, k_points)
    inner = group_index[:, :, None] * k_points + taps[:, None, :]  # (|G|, |G_in|, K) over one input field
    per_field = g_in * k_points
    index = torch.arange(int(in_channels))[None, :, None, None] * per_field + inner[:, None]  # (|G|, C_in, |G_in|, K)
    index = index.reshape(n, -1)
    length = index.shape[1]
    order = torch.argsort(index, dim=1)  # index[g] is a permutation of 0..L-1: its inverse
    if not torch.equal(torch.gather(index, 1, order), torch.arange(length).expand(n, length)):
        raise AssertionError(f"{group.name}: the expansion index is not a permutation per element")
    inverse = order + torch.arange(n)[:, None] * length
    if action.index is not None:
        matrix = torch.zeros(0)
    else:
        mask = action.mask if kernel_mask is None else kernel_mask
        matrix = action.matrix.clone()
        if mask is not None:
            matrix = matrix * mask[None, :, None] * mask[None, None, :]  # zero taps outside the disk, in and out
    return {"index": index.reshape(-1), "inverse": inverse.reshape(-1), "matrix": matrix}


class _PermuteColumns(torch.autograd.Function):
    """``flat[:, index]`` (``index`` a permutation of the columns per element) whose backward is a gather by
    ``inverse`` and a sum over the |G| copies (every weight entry is read exactly once per element) instead of the
    scatter-add of ``index_select``'s backward. The backward is written with differentiable ops, so double
    backward works."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, n: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(inverse)
        ctx.n = n
        return flat.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        n = ctx.n
        c_out, total = grad.shape
        return grad.index_select(1, inverse).view(c_out, n, total // n).sum(1), None, None, None


@torch.jit.unused
def _permute_columns(flat: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, n: int) -> torch.Tensor:
    return _PermuteColumns.apply(flat, index, inverse, n)


def expand_with_tables(
    weight: torch.Tensor,
    index: torch.Tensor,
    inverse: torch.Tensor,
    matrix: torch.Tensor,
    group_order: int,
    interpolated: bool,
) -> torch.Tensor:
    """The bank ``(C_out·|G|, C_in·|G_in|, *k)`` of ``weight`` ``(C_out, C_in, |G_in|, *k)`` from the tables of
    :func:`expansion_tables` (``matrix`` is used only when ``interpolated``). Scriptable and traceable."""
    c_out, c_in, g_in = weight.shape[0], weight.shape[1], weight.shape[2]
    kernel_shape = weight.shape[3:]
    flat = weight.reshape(c_out, -1)
    if torch.jit.is_scripting() or torch.jit.is_tracing() or not (torch.is_grad_enabled() and weight.requires_grad):
        bank = flat.index_select(1, index)
    else:
        bank = _permute_columns(flat, index, inverse, group_order)
    if interpolated:
        k_points = matrix.shape[-1]
        moved = bank.view(c_out, group_order, c_in * g_in, k_points)
        bank = torch.matmul(moved, matrix.to(moved.dtype).transpose(1, 2))  # (C_out, |G|, C_in·|G_in|, K)
    return bank.reshape([c_out * group_order, c_in * g_in] + list(kernel_shape))


def expand_filter(
    weight: torch.Tensor,
    group: Group,
    regular_input: bool,
    kernel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Expand a group filter into the planar filter bank of one convolution (tables built on the fly; layers
    keep theirs as buffers).

    Args:
        weight: (C_out, C_in, |G_in|, *k) with |G_in| = |G| for regular input fields, 1 for plain input.
        group: the group; its kernel action moves the spatial taps.
        regular_input: True for group-tensor input (group conv), False for plain input (lifting conv).
        kernel_mask: optional (K,) mask of the taps for interpolated actions (default: the action's disk, see
            ``KernelAction.mask``), applied before and after the action, so every transformed copy has the
            same support. It must be invariant under the group's grid symmetries (a disk is).

    Returns:
        (C_out·|G|, C_in·|G_in|, *k): ``bank[o·|G|+g, i·|G_in|+h] = g·weight[o, i, g^-1 h]``.
    """
    tables = expansion_tables(group, weight.shape[1], regular_input, tuple(weight.shape[3:]), kernel_mask)
    if kernel_mask is not None and tables["matrix"].numel() == 0:  # permutation action: masking once suffices
        weight = weight * kernel_mask.to(weight).reshape(weight.shape[3:])
    device = weight.device
    return expand_with_tables(
        weight,
        tables["index"].to(device),
        tables["inverse"].to(device),
        tables["matrix"].to(device),
        group.order,
        tables["matrix"].numel() > 0,
    )
