"""Which grid group a plan of per-level kernels and strides admits: anisotropy picks the group.

An anisotropic kernel (1×3×3) or stride (1, 2, 2) is mapped onto itself only by the elements that send each axis to
an axis of the same length: the in-plane subgroups D4/D4h (whose 90° rotation is about axis 0, the depth) in 3D, not
the cube groups O/Oh, which swap depth with the in-plane axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from monai_equivariant.groups.group import GRID_GROUPS_BY_SIZE, Group, kernel_shape, largest_fitting_group

__all__ = ["GRID_GROUPS_BY_SIZE", "check_plan", "first_misfit", "largest_admissible_group", "plan_sides"]

Plan = Sequence[Sequence[int] | int]


def plan_sides(values: Plan, spatial_dims: int, name: str) -> list[tuple[int, ...]]:
    """Per-level ``values`` (each an int or ``spatial_dims`` ints ≥ 1, as MONAI's DynUNet takes ``kernel_size`` and
    ``strides``) as one tuple of sides per level; ValueError naming ``name`` and the level otherwise."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence with one entry per level (an int or {spatial_dims} ints), "
                         f"got {values!r}")
    sides = []
    for level, value in enumerate(values):
        try:
            sides.append(kernel_shape(value, spatial_dims))
        except ValueError as error:
            raise ValueError(f"{name}[{level}] must be an int ≥ 1 or {spatial_dims} ints ≥ 1, got {value!r}") from error
    return sides


def first_misfit(group: Group, kernel_size: Plan, strides: Plan) -> tuple[int, str, int] | None:
    """The first level whose kernel or stride ``group`` does not map onto itself, as ``(level, "kernel_size" or
    "strides", element)``; None when the group preserves the whole plan."""
    dims = group.spatial_dims
    return _first_misfit({name: plan_sides(plan, dims, name) for name, plan in (("kernel_size", kernel_size),
                                                                                 ("strides", strides))}, group)


def _first_misfit(sides: Mapping[str, list[tuple[int, ...]]], group: Group) -> tuple[int, str, int] | None:
    """The first ``(level, name, element)`` whose box ``group`` does not map onto itself, in the order of ``sides``
    (name -> per-level sides); None when every box fits."""
    for name, levels in sides.items():
        for level, box in enumerate(levels):
            element = group.misfit(box)
            if element is not None:
                return level, name, element
    return None


def largest_admissible_group(spatial_dims: int, kernel_size: Plan, strides: Plan) -> str:
    """The name of the largest named grid group that maps every level's kernel and stride onto itself: in 3D the
    first of Oh > O > D4h > D4 > trivial, in 2D of p4m > p4 > trivial.

    Args:
        spatial_dims: 2 or 3.
        kernel_size: per level an int or ``spatial_dims`` ints (e.g. ``[[1, 3, 3], [3, 3, 3]]``).
        strides: per level an int or ``spatial_dims`` ints (e.g. ``[[1, 1, 1], [1, 2, 2]]``).

    Example: kernels ``[[1, 3, 3], [3, 3, 3]]`` with strides ``[1, [1, 2, 2]]`` give ``"D4h"``; an anisotropic axis
    other than axis 0 (depth) gives ``"trivial"`` (D4/D4h rotate about axis 0).
    """
    if spatial_dims not in GRID_GROUPS_BY_SIZE:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    boxes = plan_sides(kernel_size, spatial_dims, "kernel_size") + plan_sides(strides, spatial_dims, "strides")
    return largest_fitting_group(spatial_dims, boxes)


def check_plan(group: Group, plan: Mapping[str, Plan], between_levels: Sequence[str] = ()) -> None:
    """The one plan check of every network: ValueError unless every element of ``group`` maps every level's box of
    ``plan`` onto itself (each axis onto an axis of the same kernel side or stride; a rotation that swaps a stride-2
    axis with a stride-1 axis does not map the pooling grid onto itself). Isotropic plans fit every group.

    Args:
        group: the network's group.
        plan: argument name -> per-level entries, each an int or one side per axis (``{"kernel_size": [[1, 3, 3],
            3], "strides": [1, [1, 2, 2]]}``; a single kernel is a one-entry list).
        between_levels: the names whose entry i sits between levels i and i + 1 (a U-Net's pooling ``strides``),
            said so in the message.

    The message names the argument, the level, the element and the largest named grid group that fits the whole
    plan (:func:`largest_admissible_group`; with the axis flips as a hint when only the trivial group does).
    """
    dims = group.spatial_dims
    sides = {name: plan_sides(values, dims, name) for name, values in plan.items()}
    found = _first_misfit(sides, group)
    if found is None:
        return
    level, name, element = found
    box = sides[name][level]
    boxes = [b for entries in sides.values() for b in entries]
    fits = largest_fitting_group(dims, boxes) if dims in GRID_GROUPS_BY_SIZE else "trivial"
    flips = "" if fits != "trivial" else (
        f" (the {2 ** dims} axis flips diag(±1, ...) fit too: pass them as a custom Group)")
    where = f" (between levels {level} and {level + 1})" if name in between_levels else ""
    matrix = np.round(group.matrices[element]).astype(int).tolist() if group.is_grid else "a rotation"
    raise ValueError(
        f"group {group.name!r} does not preserve level {level} of the plan: {name}[{level}] = {box}{where} differs "
        f"between axes, and element {element} = {matrix} of group {group.name!r} sends it to another shape (it maps "
        f"an axis onto one of another size), which breaks exact equivariance: the largest group that fits this plan "
        f"is {fits!r}{flips}"
    )
