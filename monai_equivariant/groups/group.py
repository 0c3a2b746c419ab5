"""A finite group acting on a d-dimensional pixel grid, stored as data.

A group is its list of d×d orthogonal matrices (acting on centred grid coordinates, in tensor axis order).
Everything else (Cayley table, inverses, the action on kernels and on tensors) is derived from them, so
p4, p4m, the cube groups and the sampled rotation groups SE(2,N) share one implementation.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from monai_equivariant.groups.matrices import builtin_matrices
from monai_equivariant.groups.rotate import grid_transform, resample

__all__ = ["GRID_GROUPS_BY_SIZE", "Group", "KernelAction", "kernel_shape", "largest_fitting_group"]

_ATOL = 1e-6


@dataclass(frozen=True)
class KernelAction:
    """How every group element acts on a flattened kernel grid of ``K = prod(kernel shape)`` points.

    ``index`` (|G|, K) is set when each element permutes the grid (exact grid groups): the transformed
    kernel of element g is ``kernel[..., index[g]]``. Otherwise ``matrix`` (|G|, K, K) holds the
    interpolation operator: the transformed kernel is ``matrix[g] @ kernel``. ``matrix`` is always set.

    ``mask`` (K,) is set for interpolated actions: 1 on the taps inside the disk (ball) of radius (k-1)/2
    inscribed in the square of tap centres (Bekkers et al.'s disk mask; their radius k/2 lets 45° rotations
    of the corner taps leave the grid), 0 outside: 5 of 9 taps for k=3, 13 of 25 for k=5. Layers zero the
    taps outside it before and after the action, so every rotated copy of a kernel has the same round
    support. Grid groups need no mask (None), which keeps se2_4 identical to p4.
    """

    matrix: torch.Tensor
    index: torch.Tensor | None
    mask: torch.Tensor | None = None

    @property
    def is_permutation(self) -> bool:
        return self.index is not None


class Group:
    """A finite group of orthogonal transformations of the d-dimensional grid.

    Args:
        name: the registry name (``"p4"``, ``"O"``...). A custom group may reuse a built-in name only with
            exactly that group's matrices in that order (ValueError otherwise).
        matrices: (|G|, d, d) orthogonal matrices; element 0 must be the identity.
            Coordinates are in tensor axis order (for 2D: (row, column)).
    """

    def __init__(self, name: str, matrices: np.ndarray) -> None:
        matrices = np.array(matrices, dtype=np.float64)  # a copy: the caller's array stays writeable
        if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
            raise ValueError(f"group matrices must have shape (|G|, d, d), got {matrices.shape}")
        _check_matrices(name, matrices)
        builtin = builtin_matrices(name, matrices.shape[1])
        if builtin is not None and not (builtin.shape == matrices.shape and np.allclose(builtin, matrices, atol=_ATOL)):
            raise ValueError(
                f"a custom group may not be called {name!r}: that is a built-in group with other elements "
                f"(or another element order); give it a name of its own"
            )
        self.name = name
        self.matrices = matrices
        self.matrices.flags.writeable = False  # the kernel-action cache is keyed on these values
        self.cayley  # noqa: B018  (closure is checked when the group is made, not at its first use in a layer)

    def __repr__(self) -> str:
        return f"Group({self.name!r}, order={self.order}, spatial_dims={self.spatial_dims})"

    def __len__(self) -> int:
        return self.order

    @property
    def order(self) -> int:
        """Number of elements |G|."""
        return int(self.matrices.shape[0])

    @property
    def spatial_dims(self) -> int:
        return int(self.matrices.shape[1])

    @cached_property
    def is_grid(self) -> bool:
        """True when every element maps the integer grid onto itself (signed permutation matrices)."""
        return bool(np.allclose(self.matrices, np.round(self.matrices), atol=_ATOL))

    @cached_property
    def cayley(self) -> np.ndarray:
        """(|G|, |G|) int table: ``cayley[a, b]`` is the index of the composition a∘b.

        Raises:
            ValueError naming the first pair whose product is not an element (the matrices are not closed).
        """
        n, d = self.order, self.spatial_dims
        products = np.einsum("aij,bjk->abik", self.matrices, self.matrices).reshape(n * n, d * d)
        # nearest element of each product (Chebyshev distance); a product farther than _ATOL from every element
        # comes back with index n
        _, nearest = cKDTree(self.matrices.reshape(n, d * d)).query(products, p=np.inf, distance_upper_bound=_ATOL)
        missing = np.flatnonzero(nearest == n)
        if missing.size:
            a, b = divmod(int(missing[0]), n)
            raise ValueError(
                f"group {self.name!r} is not closed under composition: element {a} ∘ element {b} = "
                f"{np.round(products[missing[0]].reshape(d, d), 6).tolist()} is not one of its {n} matrices; "
                "list every product of your generators (or use a built-in group)"
            )
        return nearest.reshape(n, n).astype(np.int64)

    @cached_property
    def inverse(self) -> np.ndarray:
        """(|G|,) int array: index of each element's inverse."""
        return np.argmax(self.cayley == 0, axis=1)

    def kernel_action(self, kernel_size: int | Sequence[int]) -> KernelAction:
        """The action ``kernel_g(y) = kernel(g^-1 y)`` on a kernel grid (centred coordinates; multilinear in between
        points for interpolated groups), built once per kernel shape and kept by the group (its matrices are
        read-only).

        ``kernel_size``: an int k (a k^d cube) or one side per axis, e.g. ``(1, 3, 3)``. A grid group acts on any
        box whose every axis its elements send to an axis of the same length (even sides too: their centre lies
        between taps); otherwise ValueError naming the first element that does not fit. Interpolated groups (se2_N)
        need an odd square kernel.
        """
        cache = self.__dict__.setdefault("_kernel_actions", {})  # setdefault: groups pickled before it existed
        shape = kernel_shape(kernel_size, self.spatial_dims)
        if shape not in cache:
            cache[shape] = _kernel_action(self, shape)
        return cache[shape]

    def misfit(self, sides: Sequence[int]) -> int | None:
        """The first element that does not map a box with these ``sides`` (one per axis: a kernel's sides, or a
        stride) onto itself, or None when every element does. A signed permutation fits when it sends each axis to
        an axis of the same length; an interpolated rotation only when all sides are equal."""
        sides = tuple(int(s) for s in sides)
        if len(sides) != self.spatial_dims:
            raise ValueError(f"{self.name} acts on {self.spatial_dims} axes, got sides {sides}")
        return _first_misfit(self.matrices, sides)

    @cached_property
    def regular_index(self) -> torch.Tensor:
        """(|G|, |G|) long: ``regular_index[g, h] = g^-1 h``, the group-axis part of the regular action."""
        return torch.as_tensor(self.cayley[self.inverse], dtype=torch.long)

    # ----------------------------------------------------------------------------------------------
    # action on tensors

    def transform(self, x: torch.Tensor, g: int, regular: bool = False) -> torch.Tensor:
        """Apply element ``g`` to a plain tensor (B, C, *spatial) or, with ``regular=True``, to a group
        tensor (B, C·|G|, *spatial) (field-major); returns a tensor of the same layout.

        Plain: ``out(y) = x(g^-1 y)``. Group: ``out(h, y) = x(g^-1 h, g^-1 y)``.
        Grid groups act exactly (flips and axis permutations); other groups interpolate.
        """
        self._check_element(g)
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"{self.name} acts on (B, C, *spatial) tensors with {self.spatial_dims} spatial dims; "
                f"got shape {tuple(x.shape)}"
            )
        if regular:
            b, c = x.shape[:2]
            if c % self.order:
                raise ValueError(f"a {self.name} group tensor needs C·{self.order} channels, got {c}")
            fields = x.reshape(b, c // self.order, self.order, *x.shape[2:])
            fields = fields[:, :, self.regular_index[g].to(x.device)]
            x = fields.reshape(x.shape)
        return self.spatial_transform(x, g)

    def spatial_transform(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Transform only the spatial axes of (B, C, *spatial): ``out(y) = x(g^-1 y)``."""
        self._check_element(g)
        if self.is_grid:
            return grid_transform(x, np.round(self.matrices[g]).astype(np.int64))
        return resample(x, self.matrices[g])

    def _check_element(self, g: int) -> None:
        """Refuse anything but an integer index 0..|G|-1 (a float like 1.5 or a bool is not an element)."""
        try:
            index = operator.index(g)  # int, numpy integer, integer 0-d tensor; not 1.5, not "1"
        except TypeError:
            index = None
        if index is None or isinstance(g, (bool, np.bool_)):
            raise TypeError(f"a {self.name} element is an integer index 0..{self.order - 1}, got {g!r}")
        if not 0 <= index < self.order:
            raise IndexError(f"{self.name} has elements 0..{self.order - 1}, got {g}")


def _check_matrices(name: str, matrices: np.ndarray) -> None:
    """Refuse what is not a finite group of orthogonal grid transformations, naming the first bad element.

    Orthogonality is what every action here assumes (``M^T`` is used as ``M^-1``; a grid group is one of
    signed permutation matrices): a scale, a shear or an integer non-orthogonal matrix would be applied as a
    different transformation without any error.
    """
    dims = matrices.shape[1]
    for index, matrix in enumerate(matrices):
        if not np.isfinite(matrix).all():
            raise ValueError(f"group {name!r}: element {index} has non-finite entries {matrix.tolist()}")
        if not np.allclose(matrix.T @ matrix, np.eye(dims), atol=_ATOL):
            raise ValueError(
                f"group {name!r}: element {index} = {matrix.tolist()} is not orthogonal (M^T M != I); a group "
                "here acts by rotations and reflections of the grid, so scales, shears and other matrices "
                "are refused"
            )
    if not np.allclose(matrices[0], np.eye(dims), atol=_ATOL):
        raise ValueError(f"group {name!r}: element 0 must be the identity, got {matrices[0].tolist()}")
    same = sorted(cKDTree(matrices.reshape(len(matrices), -1)).query_pairs(_ATOL, p=np.inf))
    if same:
        raise ValueError(f"group {name!r}: elements {same[0][0]} and {same[0][1]} are the same matrix")


def kernel_shape(kernel_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """``kernel_size`` (an int or ``spatial_dims`` ints, each ≥ 1) as a tuple of one side per axis; ValueError
    naming what was expected otherwise."""
    expected = f"kernel_size must be an int ≥ 1 or {spatial_dims} ints ≥ 1 (one per spatial axis)"
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        sides = tuple(kernel_size)
        if len(sides) != spatial_dims:
            raise ValueError(f"{expected}, got {kernel_size!r}")
    else:
        sides = (kernel_size,) * spatial_dims
    for side in sides:
        if isinstance(side, (bool, np.bool_)) or not isinstance(side, (int, np.integer)) or side < 1:
            raise ValueError(f"{expected}, got {kernel_size!r}")
    return tuple(int(side) for side in sides)


@lru_cache(maxsize=None)
def _grid_points(shape: tuple[int, ...]) -> np.ndarray:
    """(prod(shape), d) centred coordinates of a kernel grid in row-major (tensor) order: integers for odd sides,
    half-integers for even ones."""
    axes = [np.arange(side) - (side - 1) / 2.0 for side in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape)).astype(np.float64)


GRID_GROUPS_BY_SIZE: dict[int, tuple[str, ...]] = {3: ("Oh", "O", "D4h", "D4", "trivial"), 2: ("p4m", "p4", "trivial")}
"""The named grid groups a plan may admit, largest first, per spatial dimension (see
:func:`~monai_equivariant.groups.admissible.largest_admissible_group`)."""


def _first_misfit(matrices: np.ndarray, sides: tuple[int, ...]) -> int | None:
    sides_array = np.asarray(sides)
    rounded = np.round(matrices)
    for g, matrix in enumerate(matrices):
        if not np.allclose(matrix, rounded[g], atol=_ATOL):  # an interpolated rotation mixes every axis
            if len(set(sides)) > 1:
                return g
            continue
        # column j of M is where axis j goes: the axis holding its non-zero entry
        if not np.array_equal(sides_array[np.argmax(np.abs(rounded[g]), axis=0)], sides_array):
            return g
    return None


def largest_fitting_group(spatial_dims: int, boxes: Sequence[Sequence[int]]) -> str:
    """The name of the largest group of :data:`GRID_GROUPS_BY_SIZE` whose every element maps every box (sides per
    axis) onto itself."""
    if spatial_dims not in GRID_GROUPS_BY_SIZE:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    for name in GRID_GROUPS_BY_SIZE[spatial_dims]:
        matrices = builtin_matrices(name, spatial_dims)
        if all(_first_misfit(matrices, tuple(int(s) for s in box)) is None for box in boxes):
            return name
    raise AssertionError("the trivial group fits every box")  # pragma: no cover


def _refuse_shape(group: Group, shape: tuple[int, ...], g: int) -> None:
    matrix = np.round(group.matrices[g]).astype(np.int64).tolist()
    fits = largest_fitting_group(group.spatial_dims, [shape]) if group.spatial_dims in (2, 3) else "trivial"
    raise ValueError(
        f"group {group.name!r} does not map the kernel grid {shape} onto itself: element {g} = {matrix} sends an "
        f"axis to one of another length; a kernel of this shape admits at most the group {fits!r} (or use a kernel "
        f"with equal sides on the axes the group permutes)"
    )


def _disk_mask(points: np.ndarray, kernel_size: int) -> np.ndarray:
    """(K,) 1/0: taps within the disk (ball) of radius (k-1)/2 inscribed in the square of tap centres, so
    every rotation of a tap stays inside the grid (no kernel mass is interpolated away)."""
    radius = (kernel_size - 1) / 2.0
    return (np.sum(points**2, axis=1) <= radius**2 + _ATOL).astype(np.float64)


def _kernel_action(group: Group, shape: tuple[int, ...]) -> KernelAction:
    if group.is_grid:
        return _grid_kernel_action(group, shape)
    if len(set(shape)) != 1 or shape[0] % 2 == 0:
        raise ValueError(
            f"{group.name} interpolates its kernels: they must be square with an odd side (a centre pixel), got "
            f"kernel_size={shape}"
        )
    kernel_size = shape[0]
    d, k = group.spatial_dims, kernel_size
    points = _grid_points((k,) * d)  # (K, d)
    r = k // 2
    n_points = points.shape[0]
    strides = k ** np.arange(d - 1, -1, -1)
    matrix = np.zeros((group.order, n_points, n_points), dtype=np.float64)
    corners = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64)  # (2^d, d)
    for g in range(group.order):
        source = points @ group.matrices[g]  # rows: (M^T y)^T = y^T M -> g^-1 y for orthogonal M
        rounded = np.round(source)
        source = np.where(np.abs(source - rounded) < _ATOL, rounded, source)
        base = np.floor(source)
        frac = source - base
        for corner in corners:
            pos = base + corner
            weight = np.prod(np.where(corner == 1, frac, 1.0 - frac), axis=1)
            inside = np.all(np.abs(pos) <= r, axis=1) & (weight > 0)
            cols = ((pos + r) @ strides).astype(np.int64)
            rows = np.flatnonzero(inside)
            np.add.at(matrix[g], (rows, cols[inside]), weight[inside])
    is_perm = np.all(np.isclose(matrix, np.round(matrix))) and np.all(matrix.sum(axis=2) == 1)
    index = torch.from_numpy(matrix.argmax(axis=2)) if is_perm else None
    mask = None if is_perm else torch.from_numpy(_disk_mask(points, k).astype(np.float32))
    return KernelAction(matrix=torch.from_numpy(matrix.astype(np.float32)), index=index, mask=mask)


def _grid_kernel_action(group: Group, shape: tuple[int, ...]) -> KernelAction:
    """The permutation action of a grid group on the box ``shape`` (each element sends an axis to one of the same
    length, so the centred grid maps onto itself; refused otherwise)."""
    misfit = group.misfit(shape)
    if misfit is not None:
        _refuse_shape(group, shape, misfit)
    doubled = np.round(2 * _grid_points(shape)).astype(np.int64)  # exact integers, also for half-integer taps
    sides = np.array(shape)
    strides = np.array([int(np.prod(shape[i + 1:])) for i in range(len(shape))])
    matrices = np.round(group.matrices).astype(np.int64)
    index = np.stack([((doubled @ m + sides - 1) // 2) @ strides for m in matrices])  # source g^-1 y = M^T y
    n_points = doubled.shape[0]
    matrix = np.zeros((group.order, n_points, n_points), dtype=np.float32)
    np.put_along_axis(matrix, index[:, :, None], 1.0, axis=2)
    return KernelAction(matrix=torch.from_numpy(matrix), index=torch.from_numpy(index), mask=None)
