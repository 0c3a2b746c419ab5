"""The named groups behind ``get_group(name)``: built from :mod:`monai_equivariant.groups.matrices`."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from monai_equivariant.groups.group import Group
from monai_equivariant.groups.matrices import GROUP_NAMES, SE2_NAME, builtin_matrices, closure, generators, rotations_2d

__all__ = ["get_group", "GROUP_NAMES", "as_group", "builtin_matrices"]


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
    match = SE2_NAME.match(name)
    named = generators(name)
    if match:
        n = int(match.group(1))
        if n < 1:
            raise ValueError(f"se2_N needs N ≥ 1 rotations, got {name!r}")
        group = Group(name, rotations_2d(n))
    elif named is not None:
        group = Group(name, closure(named))
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
