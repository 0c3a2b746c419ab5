"""The built-in groups as matrices: generators of each named group, closed into element lists (NumPy only).

``Group`` checks a custom group's name against these, and ``get_group`` builds the named groups from them.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

__all__ = ["GROUP_NAMES", "SE2_NAME", "builtin_matrices", "closure", "generators", "rotations_2d"]

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
SE2_NAME = re.compile(r"^se2_(\d+)$")

GROUP_NAMES: tuple[str, ...] = ("trivial", *_GENERATORS, "se2_N")
"""Known names; ``se2_N`` stands for any ``se2_<N>`` with N ≥ 1 (N sampled planar rotations)."""


def closure(generators: list[np.ndarray]) -> np.ndarray:
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


def rotations_2d(n: int) -> np.ndarray:
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
    match = SE2_NAME.match(name)
    if match and int(match.group(1)) >= 1:
        return rotations_2d(int(match.group(1)))
    if name in _GENERATORS:
        return closure(_GENERATORS[name][1]).astype(np.float64)
    return None


def builtin_matrices(name: str, spatial_dims: int = 2) -> np.ndarray | None:
    """The (|G|, d, d) matrices of the built-in group called ``name`` (in their order), or None when ``name`` is
    not a built-in name. ``spatial_dims`` is used only for ``"trivial"``."""
    found = _builtin(str(name), int(spatial_dims))
    return None if found is None else found.copy()




def generators(name: str) -> list[np.ndarray] | None:
    """The generators of the named finite grid group (p4, p4m, D4, D4h, O, Oh), or None for another name."""
    found = _GENERATORS.get(name)
    return None if found is None else list(found[1])
