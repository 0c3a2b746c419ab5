"""The other way to run a group convolution: transform the input, not the filter.

For a grid group (every element a signed permutation of the axes: p4, p4m, D4, D4h, O, Oh, se2_{1,2,4}) and an
odd kernel with symmetric padding, ``conv(x, T_g w) = T_g conv(T_g^-1 x, w)`` holds exactly (``T_g`` flips and
permutes the spatial axes about the centre, for the kernel and the image alike). So the expanded bank
``bank[o·|G|+g, i·|G_in|+h] = T_g w[o, i, g^-1 h]`` never needs to exist::

    y[b, o·|G|+g] = T_g conv(X_g, w)[b, o]   with   X_g[b, i·|G_in|+h] = T_g^-1 x[b, i·|G_in|+g·h],

one ``conv`` of the |G| transformed copies of the input (stacked on the batch axis) with the group weight viewed
as a plain ``(C_out, C_in·|G_in|, *k)`` filter, then one gather that transforms each copy back into its place in
the output. Both gathers are permutations per element, done by index tables built once per (group, size).

Which way is cheaper depends on sizes: expanding the filter touches ``|G|·|w|`` entries (forward and backward),
transforming the input ``|G|·|x| + |y|``. Deep levels of a U-Net (many fields, few pixels) have filters far
bigger than their activations; :func:`input_transform_pays` picks the input route there. The results are equal
up to float round-off (the same products, summed in another order) and exactly equivariant either way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from monai_equivariant.groups.group import Group
from monai_equivariant.layers.functional import conv_nd

__all__ = [
    "conv_by_input_transform",
    "conv_by_input_transform_op",
    "grid_matrices",
    "input_transform_pays",
    "input_transform_tables",
    "spatial_permutations",
]


def input_transform_pays(weight_numel: int, input_numel: int, output_numel: int, group_order: int) -> bool:
    """True when transforming the input is cheaper than expanding the filter: ``|w| > |x| + |y|/|G|``, i.e.
    ``|G|·|w| > |G|·|x| + |y|`` entries moved per step (measured per layer on 1 CPU thread in
    ``benchmarks/network_overhead.py --routes``: the cheaper route wins on both sides of this line)."""
    return group_order > 1 and weight_numel > input_numel + output_numel // group_order


_TABLES: dict[tuple, tuple[torch.Tensor, ...]] = {}
"""Index tables keyed on what defines them: the group's matrices, the input kind, the sizes and the device."""
_MAX_TABLES = 512


def _cached(key: tuple, build: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    if key not in _TABLES:
        if len(_TABLES) >= _MAX_TABLES:
            _TABLES.clear()  # many sizes seen: start again rather than grow without bound
        _TABLES[key] = build()
    return _TABLES[key]


def spatial_permutations(group: Group, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The action of every element on a cubic ``size^d`` grid as index tables (CPU).

    Returns:
        ``perm`` (|G|, size^d) long with ``(T_g z).flatten()[y] = z.flatten()[perm[g, y]]`` (``T_g`` as in
        :meth:`Group.spatial_transform`), and ``inverse`` (|G|, size^d) with ``perm[g, inverse[g]] = arange``.
    """
    if not group.is_grid:
        raise ValueError(f"{group.name} interpolates: it has no exact action on a pixel grid")
    size = int(size)

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        points = size**group.spatial_dims
        grid = torch.arange(points).view(1, 1, *([size] * group.spatial_dims))
        perm = torch.stack([group.spatial_transform(grid, g).reshape(points) for g in range(group.order)])
        return perm, torch.argsort(perm, dim=1)

    return _cached((group.matrices.tobytes(), group.matrices.shape, "grid", size), build)  # type: ignore[return-value]


def input_transform_tables(
    group: Group, regular_input: bool, size_in: int, size_out: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Index tables of :func:`conv_by_input_transform` for a cubic input of side ``size_in`` and output of side
    ``size_out``, on ``device`` (built once per key and kept).

    Returns a dict of long tensors:
        ``gather_in`` (|G|, |G_in|·S_in): ``X_g[b, i].flatten()[j] = x[b, i].flatten()[gather_in[g, j]]`` for each
        input field i (its |G_in| channels flattened with the pixels); ``scatter_in`` its inverse per row;
        ``gather_out`` (|G|, S_out): ``perm`` of :func:`spatial_permutations`; ``scatter_out`` its inverse.
    """
    device = torch.device(device)

    def build() -> tuple[torch.Tensor, ...]:
        perm_in, _ = spatial_permutations(group, size_in)
        perm_out, inverse_out = spatial_permutations(group, size_out)
        n, points = group.order, perm_in.shape[1]
        spatial = perm_in[torch.as_tensor(group.inverse, dtype=torch.long)]  # (|G|, S_in): T_g^-1
        if regular_input:
            product = torch.as_tensor(group.cayley, dtype=torch.long)  # product[g, h] = g·h
            gather_in = (product[:, :, None] * points + spatial[:, None, :]).reshape(n, n * points)
        else:
            gather_in = spatial
        tables = (gather_in, torch.argsort(gather_in, dim=1), perm_out, inverse_out)
        return tuple(t.to(device) for t in tables)

    key = (group.matrices.tobytes(), group.matrices.shape, bool(regular_input), int(size_in), int(size_out),
           str(device))
    names = ("gather_in", "scatter_in", "gather_out", "scatter_out")
    return dict(zip(names, _cached(key, build)))


def _spread(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (|G|, B, C, L) with ``out[g, b, c, l] = x[b, c, index[g, l]]``."""
    n, length = index.shape
    b, c = x.shape[0], x.shape[1]
    source = x.unsqueeze(0).expand(n, b, c, length)
    return torch.gather(source, 3, index.view(n, 1, 1, length).expand(n, b, c, length))


def _collect(y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(|G|, B, C, S) -> (B, C, |G|, S) with ``out[b, c, g, s] = y[g, b, c, index[g, s]]``."""
    n, b, c, points = y.shape
    return torch.gather(y.permute(1, 2, 0, 3), 3, index.view(1, 1, n, points).expand(b, c, n, points))


def _spread_back(grad: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_spread`: (|G|, B, C, L) -> (B, C, L), each copy gathered back by ``inverse`` (the
    inverse permutations) and the |G| copies summed."""
    n, b, c, length = grad.shape
    return torch.gather(grad, 3, inverse.view(n, 1, 1, length).expand(n, b, c, length)).sum(0)


def _collect_back(grad: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_collect`: (B, C, |G|, S) -> (|G|, B, C, S), gathered back by ``inverse``."""
    b, c, n, points = grad.shape
    return torch.gather(grad.permute(2, 0, 1, 3), 3, inverse.view(n, 1, 1, points).expand(n, b, c, points))


class _SpreadCopies(torch.autograd.Function):
    """``x`` (B, C, L) -> (|G|, B, C, L) with ``out[g, b, c, l] = x[b, c, index[g, l]]`` (each row of ``index`` a
    permutation of 0..L-1). Backward: a gather by ``inverse`` and a sum over the |G| copies (written with
    differentiable ops, so double backward works)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(inverse)
        return _spread(x, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        return _spread_back(grad, inverse), None, None


class _CollectCopies(torch.autograd.Function):
    """``y`` (|G|, B, C, S) -> (B, C, |G|, S) with ``out[b, c, g, s] = y[g, b, c, index[g, s]]`` (each row of
    ``index`` a permutation). Backward: the gather by ``inverse`` back into the (|G|, B, C, S) layout."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(inverse)
        return _collect(y, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        return _collect_back(grad, inverse), None, None


def conv_by_input_transform(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tables: dict[str, torch.Tensor],
    padding: int,
) -> torch.Tensor:
    """A lifting or group convolution computed on transformed inputs (module docstring).

    Args:
        x: (B, C_in·|G_in|, *spatial), all spatial sizes equal.
        weight: (C_out, C_in, |G_in|, *k), the group filter (not expanded).
        bias: (C_out,) or None, one per output field.
        tables: :func:`input_transform_tables` for this group, input kind and the input/output sizes.
        padding: symmetric zero padding of the convolution.

    Returns:
        (B, C_out·|G|, *spatial'): equal to ``conv(x, expand_filter(weight, ...))`` up to float round-off.
    """
    n = tables["gather_in"].shape[0]
    batch, channels = x.shape[0], x.shape[1]
    c_out, c_in = weight.shape[0], weight.shape[1]
    spatial_dims = x.dim() - 2
    copies = _SpreadCopies.apply(x.reshape(batch, c_in, -1), tables["gather_in"], tables["scatter_in"])
    plain_weight = weight.reshape([c_out, channels] + list(weight.shape[3:]))
    stacked = copies.view([n * batch, channels] + list(x.shape[2:]))
    y = conv_nd(stacked, plain_weight, bias, padding)
    out = _CollectCopies.apply(y.reshape(n, batch, c_out, -1), tables["gather_out"], tables["scatter_out"])
    return out.reshape([batch, c_out * n] + list(y.shape[2:]))


# ----------------------------------------------------------------------------------------------------------------
# The same two gathers as custom operators, for torch.compile.
#
# Under ``torch.compile`` the spatial sizes may be symbolic (dynamo makes them so when a net sees a second input
# size), and the index tables cannot be built for a symbolic size: baking them in as constants graph-breaks, and
# passing them as graph inputs sent inductor's symbolic-shape reasoning into a recursion ("Exponent must be
# non-negative"). As custom operators the gathers are opaque to the compiler: the fake (meta) implementation gives
# the output shape for any size, symbolic or not, and the real one builds (and keeps) the tables for the concrete
# size it is called with. The group travels as its integer matrices (grid groups only), so the graph holds no
# Python object and the operators need no registry. Each operator is linear and its backward is its adjoint, which
# is an operator too: backward of backward works.


def grid_matrices(group: Group) -> list[int]:
    """The group's matrices as a flat list of ints (|G|·d·d), the form the operators below take (grid groups)."""
    if not group.is_grid:
        raise ValueError(f"{group.name} interpolates: it has no exact action on a pixel grid")
    return [int(round(v)) for v in group.matrices.reshape(-1)]


_GROUPS: dict[tuple[int, ...], Group] = {}


def _group_of(matrices: list[int], spatial_dims: int) -> Group:
    key = (spatial_dims, *matrices)
    if key not in _GROUPS:
        shape = (_order(matrices, spatial_dims), spatial_dims, spatial_dims)
        _GROUPS[key] = Group("input-route grid group", np.array(matrices, dtype=np.float64).reshape(shape))
    return _GROUPS[key]


def _order(matrices: list[int], spatial_dims: int) -> int:
    return len(matrices) // spatial_dims**2


@torch.library.custom_op("monai_equivariant::spread_copies", mutates_args=())
def spread_copies(x: torch.Tensor, matrices: list[int], regular: bool) -> torch.Tensor:
    """(B, C_in·|G_in|, *s) -> (|G|·B, C_in·|G_in|, *s): the |G| transformed copies ``X_g`` of the module
    docstring, stacked on the batch axis (g-major)."""
    dims = x.dim() - 2
    n, (batch, channels), spatial = _order(matrices, dims), x.shape[:2], x.shape[2:]
    tables = input_transform_tables(_group_of(matrices, dims), regular, spatial[0], spatial[0], x.device)
    fields = channels // (n if regular else 1)
    copies = _spread(x.reshape(batch, fields, -1), tables["gather_in"])
    return copies.reshape([n * batch, channels] + list(spatial))


@torch.library.custom_op("monai_equivariant::spread_copies_adjoint", mutates_args=())
def spread_copies_adjoint(grad: torch.Tensor, matrices: list[int], regular: bool) -> torch.Tensor:
    """The adjoint of :func:`spread_copies`: (|G|·B, C, *s) -> (B, C, *s), each copy transformed back and summed."""
    dims = grad.dim() - 2
    n, channels, spatial = _order(matrices, dims), grad.shape[1], grad.shape[2:]
    batch = grad.shape[0] // n
    tables = input_transform_tables(_group_of(matrices, dims), regular, spatial[0], spatial[0], grad.device)
    fields = channels // (n if regular else 1)
    back = _spread_back(grad.reshape(n, batch, fields, -1), tables["scatter_in"])
    return back.reshape([batch, channels] + list(spatial))


@torch.library.custom_op("monai_equivariant::collect_copies", mutates_args=())
def collect_copies(y: torch.Tensor, matrices: list[int]) -> torch.Tensor:
    """(|G|·B, C_out, *s) -> (B, C_out·|G|, *s): ``out[b, o·|G|+g] = T_g y[g·B+b, o]``."""
    dims = y.dim() - 2
    n, channels, spatial = _order(matrices, dims), y.shape[1], y.shape[2:]
    batch = y.shape[0] // n
    perm = input_transform_tables(_group_of(matrices, dims), False, spatial[0], spatial[0], y.device)["gather_out"]
    out = _collect(y.reshape(n, batch, channels, -1), perm)
    return out.reshape([batch, channels * n] + list(spatial))


@torch.library.custom_op("monai_equivariant::collect_copies_adjoint", mutates_args=())
def collect_copies_adjoint(grad: torch.Tensor, matrices: list[int]) -> torch.Tensor:
    """The adjoint of :func:`collect_copies`: (B, C_out·|G|, *s) -> (|G|·B, C_out, *s)."""
    dims = grad.dim() - 2
    n, spatial = _order(matrices, dims), grad.shape[2:]
    batch, channels = grad.shape[0], grad.shape[1] // n
    tables = input_transform_tables(_group_of(matrices, dims), False, spatial[0], spatial[0], grad.device)
    inverse = tables["scatter_out"]
    back = _collect_back(grad.reshape(batch, channels, n, -1), inverse)
    return back.reshape([n * batch, channels] + list(spatial))


@spread_copies.register_fake
def _(x, matrices, regular):
    n = _order(matrices, x.dim() - 2)
    return x.new_empty([n * x.shape[0]] + list(x.shape[1:]))


@spread_copies_adjoint.register_fake
def _(grad, matrices, regular):
    n = _order(matrices, grad.dim() - 2)
    return grad.new_empty([grad.shape[0] // n] + list(grad.shape[1:]))


@collect_copies.register_fake
def _(y, matrices):
    n = _order(matrices, y.dim() - 2)
    return y.new_empty([y.shape[0] // n, y.shape[1] * n] + list(y.shape[2:]))


@collect_copies_adjoint.register_fake
def _(grad, matrices):
    n = _order(matrices, grad.dim() - 2)
    return grad.new_empty([grad.shape[0] * n, grad.shape[1] // n] + list(grad.shape[2:]))


def _save_args(ctx, inputs, output) -> None:
    ctx.args = inputs[1:]


def _register_adjoints(op, adjoint) -> None:
    """Each operator's backward is its adjoint (both are linear), in both directions."""
    for forward, backward in ((op, adjoint), (adjoint, op)):
        torch.library.register_autograd(
            forward, lambda ctx, grad, b=backward: (b(grad, *ctx.args),) + (None,) * len(ctx.args),
            setup_context=_save_args,
        )


_register_adjoints(spread_copies, spread_copies_adjoint)
_register_adjoints(collect_copies, collect_copies_adjoint)


def conv_by_input_transform_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, matrices: list[int], regular: bool,
    padding: int,
) -> torch.Tensor:
    """:func:`conv_by_input_transform` with the two gathers as custom operators (for ``torch.compile``, any size,
    symbolic or not; same arguments except the group's :func:`grid_matrices` and the input kind instead of the
    tables). (B, C_in·|G_in|, *s) -> (B, C_out·|G|, *s')."""
    spatial_dims = x.dim() - 2
    c_out = weight.shape[0]
    stacked = spread_copies(x, matrices, regular)
    plain_weight = weight.reshape([c_out, x.shape[1]] + list(weight.shape[3:]))
    y = conv_nd(stacked, plain_weight, bias, padding)
    return collect_copies(y.contiguous(), matrices)
