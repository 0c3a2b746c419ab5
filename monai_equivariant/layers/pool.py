"""Group pooling (projection): reduce the group axis of a group tensor, giving invariant plain fields."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

__all__ = ["GroupPool"]


class GroupPool(nn.Module):
    """Max or mean over the group axis: (B, C·|G|, *spatial) -> (B, C, *spatial).

    The output is invariant in the group axis, so it transforms like a plain image (rotation max-pool of
    Cohen & Welling; the projection layer of Bekkers et al.).

    Args:
        group_size: |G|.
        mode: ``"max"`` or ``"mean"``.
    """

    def __init__(self, group_size: int, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"group pooling mode must be 'max' or 'mean', got {mode!r}")
        if int(group_size) < 1:
            raise ValueError(f"group_size must be ≥ 1, got {group_size}")
        self.group_size = int(group_size)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c % self.group_size != 0:
            raise ValueError("GroupPool expects C*" + str(self.group_size) + " channels, got " + str(c))
        fields = x.reshape([x.shape[0], c // self.group_size, self.group_size] + list(x.shape[2:]))
        if self.mode == "max":
            return fields.amax(dim=2)
        return fields.mean(dim=2)

    def to_plain(self) -> nn.Module:
        """The same map in plain torch: a ``torch.fx.GraphModule`` computing ``x.unflatten(1, (-1, |G|))``
        then ``amax``/``mean`` over the group axis (torch has no module reducing a channel axis in 2D and 3D alike);
        it scripts, traces, pickles and exports to ONNX without this package."""
        graph = fx.Graph()
        x = graph.placeholder("x")
        fields = graph.call_method("unflatten", (x, 1, (-1, self.group_size)))
        graph.output(graph.call_method("amax" if self.mode == "max" else "mean", (fields, 2)))
        return fx.GraphModule(nn.Module(), graph, class_name="GroupPoolPlain").eval()
