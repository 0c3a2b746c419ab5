"""Lateral labels under reflections: the label permutation a reflection applies (left ↔ right organ) and a
segmentation head whose output channels permute by it instead of staying invariant.

A reflection group (p4m, D4h, Oh) maps a left organ onto a right one. With an invariant head (group pooling, then
a 1×1 conv) a net satisfies f(g·x) = g·f(x) for the reflections too, so on a mirror-symmetric image it gives the left
and the right organ the same label. With labels that are *lateral*, the right symmetry is f(g·x) = P_g g·f(x),
P_g = P (a permutation of the label channels, e.g. 1 ↔ 2) when det g = −1 and the identity when g is a rotation.
``g ↦ P_g`` must be a homomorphism G → S_C that is trivial on the rotations, so P is an involution (P² = I).

The label permutation is written as a list ``perm`` of the C channel (class) indices: channel c of the reflected
labels holds channel ``perm[c]`` (as P² = I, the same list maps class values: value v becomes ``perm[v]``).
Example: background, left kidney, right kidney, liver → ``[0, 2, 1, 3]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from monai.networks.layers.factories import Conv

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.functional import conv_nd

__all__ = ["LateralGroupHead", "check_label_permutation", "element_label_permutation", "reflections"]


def reflections(group: Group) -> np.ndarray:
    """(|G|,) bool: True for the elements that reverse orientation (det = −1: mirrors, rotoreflections)."""
    return np.linalg.det(group.matrices) < 0


def check_label_permutation(
    label_permutation: object, group: Group, argument: str = "label_permutation"
) -> tuple[int, ...]:
    """Validate a label permutation for ``group``; returns it as a tuple of ints.

    Raises:
        TypeError: not a list/tuple of integers.
        ValueError: not a permutation of ``range(C)``, not an involution, or ``group`` has no reflections (a
            permutation for rotations only is meaningless: rotations keep left and right).
    """
    perm = check_class_permutation(label_permutation, argument)
    if not reflections(group).any():
        raise ValueError(
            f"{argument} is given but group {group.name!r} has no reflections: rotations keep left and right, so "
            "a label permutation is meaningless there; use a group with reflections (p4m, D4h, Oh) or drop it"
        )
    return perm


def check_class_permutation(label_permutation: object, argument: str = "label_permutation") -> tuple[int, ...]:
    """The group-free part of :func:`check_label_permutation`: a list of integers that permutes ``range(C)`` and
    swaps classes in pairs (TypeError / ValueError naming ``argument`` otherwise); returns it as a tuple of ints."""
    if isinstance(label_permutation, (np.ndarray, torch.Tensor)) and label_permutation.ndim == 1:
        label_permutation = label_permutation.tolist()
    if isinstance(label_permutation, (str, bytes)) or not isinstance(label_permutation, Sequence):
        raise TypeError(
            f"{argument} must be a list of class indices (channel c of a reflected label holds channel "
            f"perm[c], e.g. [0, 2, 1] for left ↔ right), got {label_permutation!r}"
        )
    entries = list(label_permutation)
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) for v in entries):
        raise TypeError(f"{argument} must hold integers only, got {entries!r}")
    perm = tuple(int(v) for v in entries)
    if sorted(perm) != list(range(len(perm))) or not perm:
        raise ValueError(
            f"{argument} must be a permutation of 0..C-1 (every class index once, C = number of label "
            f"channels), got {list(perm)}"
        )
    if any(perm[perm[c]] != c for c in range(len(perm))):
        raise ValueError(
            f"{argument} must swap classes in pairs (applied twice it must give the identity, since two "
            f"reflections make a rotation, which keeps every label), got {list(perm)}"
        )
    return perm


def element_label_permutation(
    label_permutation: Sequence[int] | None, group: Group, element: int
) -> tuple[int, ...] | None:
    """The permutation P_g of ``element``: ``label_permutation`` for a reflection, None (identity) otherwise."""
    if label_permutation is None or not reflections(group)[int(element)]:
        return None
    return tuple(label_permutation)


class LateralGroupHead(nn.Module):
    """Segmentation head from a group tensor to lateral labels: (B, C·|G|, *spatial) -> (B, out_channels, *spatial)
    with f(g·x) = P_g g·f(x), P_g = ``label_permutation`` for reflections and the identity for rotations.

    Construction. Let R be the rotations of G (index 2 when G has reflections). Pool each field over the coset R
    (``a``) and over the reflections G∖R (``b``): under a rotation both move like images, under a reflection g they
    also swap (``a' = g·b``, ``b' = g·a``), since g⁻¹ maps R onto G∖R. The output is the 1×1 conv
    ``W a + P W b + β`` with one weight W (out_channels, C) and the bias made P-symmetric, ``β = (b + P b) / 2``:
    under a reflection ``W g·b + P W g·a + β = P g·(W a + P W b + β)`` because P² = I and P β = β. So the head has
    the parameters of the invariant head (group pooling + 1×1 conv) and only changes which pooled field each
    weight reads.

    Args:
        in_channels: input fields C (the tensor has C·|G| channels, field-major as every group tensor here).
        out_channels: label channels; must equal ``len(label_permutation)``.
        group: the group of the input tensor (a name or a :class:`Group`); it must contain reflections.
        label_permutation: list of class indices, channel c of a reflected output holds channel ``perm[c]``
            (e.g. ``[0, 2, 1]``: background, left, right).
        pool: ``"max"`` or ``"mean"`` over each coset.
        bias: learn a (P-symmetric) bias.

    ``weight`` is (out_channels, C, 1, …) like a 1×1 conv's. ``to_plain()`` gives plain torch (an fx graph: one
    ``index_select``, a reduction and an ``nn.ConvNd``); the module scripts as it is.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        label_permutation: Sequence[int],
        pool: str = "max",
        bias: bool = True,
    ) -> None:
        super().__init__()
        group = as_group(group)
        perm = check_label_permutation(label_permutation, group)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(perm) != out_channels:
            raise ValueError(
                f"label_permutation has {len(perm)} entries but out_channels={out_channels}: it must list one "
                "class index per output channel"
            )
        if pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean', got {pool!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.group_name, self.group_size, self.spatial_dims = group.name, group.order, group.spatial_dims
        self.pool, self.label_permutation = pool, list(perm)
        # input channel order that puts each field's rotations, then its reflections, side by side (det is a
        # homomorphism onto ±1, so each coset holds half of the elements)
        mirrored = reflections(group)
        cosets = (*np.flatnonzero(~mirrored), *np.flatnonzero(mirrored))
        order = [c * group.order + int(h) for c in range(in_channels) for h in cosets]
        self.register_buffer("coset_order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("perm_index", torch.tensor(perm, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *([1] * self.spatial_dims)))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation of a 1×1 ``nn.ConvNd`` with 2·C inputs (each output reads two pooled fields)."""
        reference = Conv[Conv.CONV, self.spatial_dims](2 * self.in_channels, self.out_channels, 1, bias=True)
        with torch.no_grad():
            self.weight.copy_(reference.weight[:, : self.in_channels])
            if self.bias is not None:
                self.bias.copy_(reference.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, group={self.group_name!r}, "
            f"label_permutation={self.label_permutation}, pool={self.pool!r}, bias={self.bias is not None}"
        )

    def conv_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The 1×1 conv over the pooled pairs: weight (out, 2C, 1, …) in (field, coset) order, P-symmetric bias."""
        weight = torch.stack([self.weight, self.weight.index_select(0, self.perm_index)], dim=2)
        weight = weight.flatten(1, 2)
        bias = self.bias
        if bias is not None:
            bias = (bias + bias.index_select(0, self.perm_index)) * 0.5
        return weight, bias

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C·|G|, *spatial) -> (B, 2C, *spatial): per field, pooled over the rotations, then the reflections."""
        expected = self.in_channels * self.group_size
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != expected:
            raise ValueError(
                "LateralGroupHead (" + self.group_name + ") expects a (B, " + str(expected) + ", *spatial) group "
                "tensor with " + str(self.spatial_dims) + " spatial dims, got shape " + str(list(x.shape))
            )
        fields = x.index_select(1, self.coset_order)
        fields = fields.reshape([x.shape[0], 2 * self.in_channels, self.group_size // 2] + list(x.shape[2:]))
        return fields.amax(dim=2) if self.pool == "max" else fields.mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.conv_weights()
        return conv_nd(self._pooled(x), weight, bias, 0)

    def to_plain(self) -> nn.Module:
        """The same map in plain torch: an ``fx.GraphModule`` (``index_select`` of the coset order, ``unflatten``,
        ``amax``/``mean``, ``flatten``, then an ``nn.ConvNd`` holding the combined 1×1 weight); it scripts,
        pickles and exports to ONNX without this package."""
        root = nn.Module()
        root.register_buffer("coset_order", self.coset_order.clone())
        with torch.no_grad():
            weight, bias = self.conv_weights()
            conv = Conv[Conv.CONV, self.spatial_dims](2 * self.in_channels, self.out_channels, 1, bias=bias is not None)
            conv = conv.to(device=weight.device, dtype=weight.dtype)
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        root.conv = conv
        graph = fx.Graph()
        x = graph.placeholder("x")
        ordered = graph.call_method("index_select", (x, 1, graph.get_attr("coset_order")))
        fields = graph.call_method("unflatten", (ordered, 1, (2 * self.in_channels, self.group_size // 2)))
        pooled = graph.call_method("amax" if self.pool == "max" else "mean", (fields, 2))
        graph.output(graph.call_module("conv", (pooled,)))
        return fx.GraphModule(root, graph, class_name="LateralGroupHeadPlain").eval()
