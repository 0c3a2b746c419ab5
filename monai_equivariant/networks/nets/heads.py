"""The output head of the segmentation nets: group pooling and a 1×1 conv (invariant labels), or, for lateral labels
under reflections, a :class:`~monai_equivariant.layers.LateralGroupHead`."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from monai_equivariant.groups import Group
from monai_equivariant.layers.lateral_head import LateralGroupHead

__all__ = ["segmentation_head"]


def segmentation_head(fields: int, out_channels: int, group: Group, label_permutation: Sequence[int] | None = None,
                      bias: bool = True) -> tuple[nn.Module, nn.Module]:
    """``(project, head)`` mapping a group tensor (B, fields·|G|, *spatial) to (B, out_channels, *spatial) as
    ``head(project(x))``.

    Without ``label_permutation``: group max-pooling and a 1×1 plain conv, so ``f(g·x) = g·f(x)``. With it (a list of
    class indices, an involution; ``group`` must have reflections): ``nn.Identity`` and a
    :class:`~monai_equivariant.layers.LateralGroupHead` (max over rotations and over reflections), so
    ``f(g·x) = P_g g·f(x)`` with P_g the permutation for reflections; ValueError/TypeError naming
    ``label_permutation`` for a bad one."""
    if label_permutation is not None:
        return nn.Identity(), LateralGroupHead(fields, out_channels, group, label_permutation, bias=bias)
    dims = group.spatial_dims
    return Pool["group", dims](group.order, mode="max"), Conv[Conv.CONV, dims](fields, out_channels, 1, bias=bias)
