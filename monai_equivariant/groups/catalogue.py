"""The named groups: generators of each group, closed into element lists, behind ``get_group(name)``."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from monai_equivariant.groups.group import Group

__all__ = ["get_group", "GROUP_NAMES", "as_group", "builtin_matrices"]

# 2D coordinates are (row, column); 3D coordinates are (depth/z, row/y, column/x) as in (B, C, D, H, W).
_ROT_2D = np.array([[0, -1], [1, 0]])
_FLIP_2D = np.array([[1, 0], [0, -1]])
_ROT_3D_AXIAL = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90° about the depth axis (in-plane)
_ROT_3D_CORONAL = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]])  # 90° about the row axis
_FLIP_3D_DEPTH = np.array([[-1, 0, 0], [0, 1, 0], [0, 0, 1]])  # mirror through the axial plane
_HALF_TURN_3D = np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]])  # 180° about the column axis

_GENERATORS: dict[str, tuple[int, list[np.ndarray]]] = {
    "p4": (2, [_ROT_2D]),
    "p4m": (2, [_ROT_2D, _FLIP_2D]),
    "D4": (3, [_ROT_3D_AXIAL, _HALF_TURN_3D]),
    "D4h": (3, [_ROT_3D_AXIAL, _HALF_TURN_3D, _FLIP_3D_DEPTH]),
    "O": (3, [_ROT_3D_AXIAL, _ROT_3D_CORONAL]),
    "Oh": (3, [_ROT_3D_AXIAL, _ROT_3D_CORONAL, -np.eye(3, dtype=np.int64)]),
}
_SE2 = re.compile(r"^se2_(\d+)$")

GROUP_NAMES: tuple[str, ...] = ("trivial", *_GENERATORS, "se2_N")
"""Known names; ``se2_N`` stands for any ``se2_<N>`` with N ≥ 1 (N sampled planar rotations)."""


def _closure(generators: list[np.ndarray]) -> np.ndarray:
    """All products of the generators, breadth first from the identity (so cyclic groups come in order)."""
    dims = generators[0].shape[0]
    elements = [np.eye(dims, dtype=np.int64)]
    seen = {elements[0].tobytes()}
    frontier = list(elements)
    while frontier:
        new = []
        for element in frontier:
            for gen in generators:
                product = (gen @ element).astype(np.int64)
                key = product.tobytes()
                if key not in seen:
                    seen.add(key)
                    elements.append(product)
                    new.append(product)
        frontier = new
    return np.stack(elements)


def _rotations_2d(n: int) -> np.ndarray:
    """(n, 2, 2) rotations by 2πk/n; entries that are integers in exact arithmetic are made exact."""
    angles = 2 * np.pi * np.arange(n) / n
    c, s = np.cos(angles), np.sin(angles)
    matrices = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    rounded = np.round(matrices)
    return np.where(np.abs(matrices - rounded) < 1e-12, rounded, matrices)


@lru_cache(maxsize=None)
def _builtin(name: str, spatial_dims: int) -> np.ndarray | None:
    trivial = re.match(r"^trivial(\d)d$", name)
    if name == "trivial" or trivial:
        dims = int(trivial.group(1)) if trivial else spatial_dims
        return np.eye(dims)[None]
    match = _SE2.match(name)
    if match and int(match.group(1)) >= 1:
        return _rotations_2d(int(match.group(1)))
    if name in _GENERATORS:
        return _closure(_GENERATORS[name][1]).astype(np.float64)
    return None


def builtin_matrices(name: str, spatial_dims: int = 2) -> np.ndarray | None:
    """The (|G|, d, d) matrices of the built-in group called ``name`` (in their order), or None when ``name`` is
    not a built-in name. ``spatial_dims`` is used only for ``"trivial"``."""
    found = _builtin(str(name), int(spatial_dims))
    return None if found is None else found.copy()


@lru_cache(maxsize=None)
def get_group(name: str, spatial_dims: int | None = None) -> Group:
    """Return the group called ``name``.

    Args:
        name: one of ``"trivial"``, ``"p4"``, ``"p4m"`` (2D), ``"D4"``, ``"D4h"``, ``"O"``, ``"Oh"`` (3D),
            or ``"se2_N"`` (2D, N sampled rotations, e.g. ``"se2_12"``).
        spatial_dims: required only for ``"trivial"`` (default 2); checked against the group otherwise.

    Raises:
        ValueError: unknown name, or a group that does not act on ``spatial_dims`` dimensions.
    """
    if not isinstance(name, str):
        raise TypeError(f"group name must be a string, got {type(name).__name__}")
    if name == "trivial":
        dims = 2 if spatial_dims is None else int(spatial_dims)
        if dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        return Group(f"trivial{dims}d", np.eye(dims)[None])
    match = _SE2.match(name)
    if match:
        n = int(match.group(1))
        if n < 1:
            raise ValueError(f"se2_N needs N ≥ 1 rotations, got {name!r}")
        group = Group(name, _rotations_2d(n))
    elif name in _GENERATORS:
        _, generators = _GENERATORS[name]
        group = Group(name, _closure(generators))
    else:
        raise ValueError(f"unknown group {name!r}; known groups: {', '.join(GROUP_NAMES)}")
    if spatial_dims is not None and int(spatial_dims) != group.spatial_dims:
        raise ValueError(
            f"group {name!r} acts on {group.spatial_dims}D grids, but spatial_dims={spatial_dims}"
        )
    return group


def as_group(group: str | Group, spatial_dims: int | None = None) -> Group:
    """Accept a group name or a :class:`Group`; check it acts on ``spatial_dims`` dimensions."""
    if isinstance(group, Group):
        if spatial_dims is not None and group.spatial_dims != int(spatial_dims):
            raise ValueError(
                f"group {group.name!r} acts on {group.spatial_dims}D grids, but spatial_dims={spatial_dims}"
            )
        return group
    return get_group(group, spatial_dims)
