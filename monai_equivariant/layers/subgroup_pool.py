"""Pooling over a subgroup: reduce a group tensor over each coset of a subgroup H, keeping the cosets apart.

:class:`~monai_equivariant.layers.GroupPool` reduces over all of G, which makes the fields invariant to every
element, mirrors included. A classifier whose labels tell mirror images apart (a left from a right hand, "L" from
"J") needs invariance to the rotations only: pooled over the rotation subgroup R, each field keeps one value per
coset of R (for p4m: the rotations and the mirrored rotations), and a reflection swaps them instead of being
forgotten.

Rule. A group tensor transforms as ``(g·x)(h, y) = x(g^-1 h, g^-1 y)`` (see ``Group.transform``). Pooling over the
left cosets ``cH`` gives ``P_c(x)(y) = max_{k ∈ H} x(c k, y)``, hence ``P_c(g·x)(y) = P_{c'}(x)(g^-1 y)`` with
``c' H = g^-1 c H``: the cosets permute (:meth:`SubgroupPool.coset_permutation`) and space transforms as for a plain
image.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.lateral_head import reflections

__all__ = ["SubgroupPool", "rotation_subgroup", "subgroup_cosets"]


def rotation_subgroup(group: Group) -> tuple[int, ...]:
    """The indices of the elements of ``group`` that keep orientation (det = +1): its rotations, the complement of
    :func:`~monai_equivariant.layers.lateral_head.reflections`."""
    return tuple(int(g) for g in np.flatnonzero(~reflections(group)))


def subgroup_cosets(group: Group, subgroup: str | Sequence[int]) -> np.ndarray:
    """(|G|/|H|, |H|) element indices: row j is the left coset ``c_j H`` (rows ordered by their smallest element, the
    first row is H itself, in the order given).

    ``subgroup``: ``"rotations"`` (the elements with det = +1) or a sequence of element indices that contains the
    identity (0) and is closed under composition; ValueError/TypeError naming ``subgroup`` otherwise.
    """
    if isinstance(subgroup, str):
        if subgroup != "rotations":
            raise ValueError(f"subgroup must be 'rotations' or a list of element indices, got {subgroup!r}")
        members = rotation_subgroup(group)
    else:
        if not isinstance(subgroup, Sequence) or any(
            isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral) for h in subgroup
        ):
            raise TypeError(f"subgroup must be 'rotations' or a list of element indices, got {subgroup!r}")
        members = tuple(int(h) for h in subgroup)
        if len(set(members)) != len(members) or not all(0 <= h < group.order for h in members):
            raise ValueError(
                f"subgroup must list distinct element indices 0..{group.order - 1} of {group.name!r}, "
                f"got {list(members)}"
            )
        if 0 not in members:
            raise ValueError(f"subgroup must contain the identity (element 0), got {list(members)}")
        closed = set(members)
        if any(int(group.cayley[a, b]) not in closed for a in members for b in members):
            raise ValueError(
                f"subgroup {list(members)} is not closed under composition in {group.name!r} (not a subgroup)"
            )
    cosets: list[list[int]] = []
    seen: set[int] = set()
    for c in range(group.order):
        if c not in seen:
            coset = [int(group.cayley[c, h]) for h in members]
            cosets.append(coset)
            seen.update(coset)
    return np.array(cosets, dtype=np.int64)


class SubgroupPool(nn.Module):
    """Max or mean over each left coset of a subgroup H: (B, C·|G|, *spatial) -> (B, C·n, *spatial), n = |G|/|H|.

    Output channel ``c·n + j`` is field c reduced over coset j (rows of :func:`subgroup_cosets`; j = 0 is H). Under
    an element g of G the output transforms as ``out'[:, c·n + j] = g·out[:, c·n + perm[j]]`` with
    ``perm = coset_permutation(g)`` (a plain spatial transform). With H = G it is ``GroupPool``; with H the
    rotations of p4m the fields are invariant to rotations and swap their two cosets under reflections.

    Args:
        group: the group of the input tensor (a name or a :class:`Group`).
        subgroup: ``"rotations"`` (default) or a list of element indices (a subgroup).
        mode: ``"max"`` or ``"mean"``.
    """

    def __init__(self, group: str | Group, subgroup: str | Sequence[int] = "rotations", mode: str = "max") -> None:
        super().__init__()
        group = as_group(group)
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        cosets = subgroup_cosets(group, subgroup)
        self.group_name, self.group_size, self.mode = group.name, group.order, mode
        self.num_cosets, self.subgroup_size = cosets.shape
        self._cosets = cosets
        coset_of = np.empty(group.order, dtype=np.int64)
        for j, coset in enumerate(cosets):
            coset_of[coset] = j
        # coset j of g·x is coset coset_of[g^-1 c_j] of x (c_j = cosets[j, 0])
        self._permutations = coset_of[group.cayley[group.inverse][:, cosets[:, 0]]]  # (|G|, n)
        self.register_buffer("order", torch.from_numpy(cosets.reshape(-1)), persistent=False)

    def coset_permutation(self, g: int) -> list[int]:
        """``perm`` with ``out(g·x)[:, c·n + j] = g·out(x)[:, c·n + perm[j]]`` for element ``g``."""
        return [int(j) for j in self._permutations[int(g)]]

    def extra_repr(self) -> str:
        return (f"group={self.group_name!r}, cosets={self.num_cosets}, subgroup_size={self.subgroup_size}, "
                f"mode={self.mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C·|G|, *spatial) -> (B, C·n, *spatial)."""
        if x.dim() < 3 or x.shape[1] % self.group_size != 0:
            raise ValueError(
                "SubgroupPool (" + self.group_name + ") expects a (B, C*" + str(self.group_size) + ", *spatial) group "
                "tensor, got shape " + str(list(x.shape))
            )
        fields = x.unflatten(1, (-1, self.group_size)).index_select(2, self.order)
        fields = fields.unflatten(2, (self.num_cosets, self.subgroup_size))
        pooled = fields.amax(dim=3) if self.mode == "max" else fields.mean(dim=3)
        return pooled.flatten(1, 2)

    def to_plain(self) -> nn.Module:
        """The same map in plain torch: an ``fx.GraphModule`` (``unflatten``, ``index_select`` of the coset order,
        ``unflatten``, ``amax``/``mean``, ``flatten``); it scripts, pickles and exports to ONNX without this package."""
        root = nn.Module()
        root.register_buffer("order", self.order.clone())
        graph = fx.Graph()
        x = graph.placeholder("x")
        fields = graph.call_method("unflatten", (x, 1, (-1, self.group_size)))
        fields = graph.call_method("index_select", (fields, 2, graph.get_attr("order")))
        fields = graph.call_method("unflatten", (fields, 2, (self.num_cosets, self.subgroup_size)))
        pooled = graph.call_method("amax" if self.mode == "max" else "mean", (fields, 3))
        graph.output(graph.call_method("flatten", (pooled, 1, 2)))
        return fx.GraphModule(root, graph, class_name="SubgroupPoolPlain").eval()
