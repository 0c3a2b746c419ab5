"""The transposed group convolution (up-sampling on group tensors): the adjoint of a strided group conv.

A strided group conv with bank ``B`` (C_out·|G|, C_in·|G|, *k) commutes with the group's permutations of fields and
pixels (where its sampled grid maps onto itself); its adjoint, ``conv_transpose`` with the same bank, then commutes
with them too (the adjoint of a permutation is its inverse). ``conv_transpose`` reads its weight as
(C_in_t, C_out_t, *k), the conv's (C_out, C_in, *k) with the roles swapped, so the bank of a transposed conv from
C_in to C_out fields is the expanded bank of a group filter ``(C_in, C_out, |G|, *k)`` (the expansion's output index
runs over the transposed conv's *input* fields):

    bank[i·|G|+g, o·|G|+h] = T_g w[i, o, g^-1 h]

Exactness needs no size condition: with output padding 0 the output side ``(m - 1)·s - 2p + k`` is one on which the
matching strided conv is exact, e.g. k = s = 2, p = 0: m -> 2m (even sides); k = 3, s = 2, p = 1: m -> 2m - 1 (odd
sides).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai_equivariant.groups import Group
from monai_equivariant.layers.conv import _GroupConvNd

__all__ = ["GroupConvTranspose"]


class GroupConvTranspose(_GroupConvNd):
    """Transposed group convolution: (B, C_in·|G|, *m) -> (B, C_out·|G|, *((m - 1)·stride - 2·padding + k)).

    Args:
        in_channels: input fields C_in.
        out_channels: output fields C_out (the tensor has C_out·|G| channels).
        group: a grid group name or :class:`~monai_equivariant.groups.Group` (its elements must map the kernel grid
            onto itself, as for :class:`~monai_equivariant.layers.GroupConv`).
        kernel_size: an int or one side per axis; even sides allowed (k = stride = 2 doubles a side).
        spatial_dims: optional; checked against the group.
        padding: an int or one per axis; default ``k // 2`` per axis for odd k (k = 3, stride 2: m -> 2m - 1) and 0
            for even k (k = stride = 2: m -> 2m). Symmetric, so the output grid stays symmetric.
        bias: one bias per output field, shared over the group.
        stride: an int or one per axis (the up-sampling factor; default 2).

    The weight is (C_in, C_out, |G|, *k) (``conv_transpose``'s order, with a group axis) and ``to_plain()`` gives an
    ``nn.ConvTranspose2d``/``3d`` holding the expanded bank. The layer always expands its filter (no input route).
    Exactly equivariant on every input size.
    """

    regular_input = True
    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: int | Sequence[int] = 2,
        spatial_dims: int | None = None,
        padding: int | Sequence[int] | None = None,
        bias: bool = True,
        stride: int | Sequence[int] = 2,
    ) -> None:
        if padding is None:  # k // 2 for odd sides, 0 for even ones (per axis)
            sides = kernel_size if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str) else None
            if sides is not None:
                padding = tuple(s // 2 if isinstance(s, int) and s % 2 else 0 for s in sides)
            elif isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
                padding = kernel_size // 2 if kernel_size % 2 else 0
        super().__init__(in_channels, out_channels, group, kernel_size, spatial_dims, padding, bias, stride)

    def output_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """The output's spatial sizes for input sizes ``size``: ``(m - 1)·stride - 2·padding + k`` per axis."""
        return tuple((m - 1) * s - 2 * p + k
                     for m, s, p, k in zip(size, self.stride_shape, self.padding_shape, self.kernel_shape))
