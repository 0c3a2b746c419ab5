"""GroupCNN: a residual group-conv classifier whose logits are invariant to the group (3D cube groups for
nodule false-positive reduction, Winkels & Cohen 2018; p4/p4m in 2D; ``"trivial"`` = the plain baseline)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act
from torch.utils.checkpoint import checkpoint

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers import GroupPool
from monai_equivariant.networks.blocks import GroupConvBlock, GroupResidualBlock
from monai_equivariant.networks.nets.group_unet import matched_channels
from monai_equivariant.networks.nets.input_check import check_input, check_levels
from monai_equivariant.utils.export import ScriptsAsExport

__all__ = ["GroupCNN", "count_parameters", "matched_baseline"]


class GroupCNN(ScriptsAsExport, nn.Module):
    """Residual group CNN classifier: plain image in, group-invariant logits out.

    Layout: lifting conv + norm + act (``channels[0]`` fields); stage 0 = ``num_res_units`` residual blocks;
    stage i > 0 = spatial max-pool by ``strides[i-1]`` then ``num_res_units`` residual blocks (the first maps
    ``channels[i-1]`` -> ``channels[i]`` fields); then group max-pool (invariant fields), global average pool over
    space, and a linear layer.
    For grid groups the logits are exactly invariant (float round-off): ``f(g·x) == f(x)`` for every g.

    Args:
        spatial_dims: 2 or 3 (must match the group).
        in_channels: channels of the plain input.
        out_channels: number of logits.
        channels: fields per stage (the tensors carry fields·|G| channels).
        group: ``"O"``, ``"Oh"``, ``"D4h"``, ``"D4"``, ``"p4"``, ``"p4m"``, ``"trivial"``... or a :class:`Group`.
        strides: max-pool factor between consecutive stages (default 2 each).
        kernel_size: odd kernel size.
        act, norm: MONAI-style specs (``"relu"``; ``"batch"``, ``"instance"``, None).
        dropout: dropout probability inside every residual block.
        bias: conv biases.
        num_res_units: residual blocks per stage.
        checkpointing: keep only the output of the lifting unit and of each block (and pool) for the backward
            pass and recompute their insides there (``torch.utils.checkpoint``, ``use_reentrant=False``);
            only active in training with gradients on. Saves most with several blocks per stage: the peak
            still holds one block's insides at full resolution. Batch-norm running statistics are updated
            twice per step (once more in the recomputation).

    Input (B, in_channels, *spatial) with every spatial size divisible by prod(strides); output
    (B, out_channels).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (4, 8, 16),
        group: str | Group = "O",
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        act: str | tuple | None = Act.RELU,
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        bias: bool = True,
        num_res_units: int = 1,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.group = as_group(group, spatial_dims)
        channels, strides = check_levels(channels, strides, min_levels=1)
        if int(num_res_units) < 1:
            raise ValueError(f"num_res_units must be ≥ 1, got {num_res_units}")
        self.spatial_dims = int(spatial_dims)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.channels, self.strides = tuple(channels), tuple(strides)
        self.size_multiple = math.prod(strides)
        self.checkpointing = bool(checkpointing)
        block = dict(kernel_size=kernel_size, act=act, norm=norm, bias=bias)
        pool_cls = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d

        self.stem = GroupConvBlock(self.group, in_channels, channels[0], lifting=True, **block)
        body: list[nn.Module] = []  # flat, so that checkpointing recomputes one block at a time
        for i, fields in enumerate(channels):
            if i > 0:
                body.append(pool_cls(strides[i - 1]))
            for unit in range(int(num_res_units)):
                in_fields = channels[i - 1] if i > 0 and unit == 0 else fields
                body.append(GroupResidualBlock(self.group, in_fields, fields, dropout=dropout, **block))
        self.body = nn.ModuleList(body)
        self.project = GroupPool(self.group.order, mode="max")
        self.spatial_pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(channels[-1], out_channels)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, *spatial) with sizes divisible by ``size_multiple``."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple)

    @torch.jit.unused
    def _checkpointed(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(stage, x, use_reentrant=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> invariant pooled features (B, channels[-1])."""
        self.check_input(x)
        if self.checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            x = self._checkpointed(self.stem, x)
            for layer in self.body:
                x = self._checkpointed(layer, x)
        else:
            x = self.stem(x)
            for layer in self.body:
                x = layer(x)
        return torch.flatten(self.spatial_pool(self.project(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> logits (B, out_channels)."""
        return self.head(self.features(x))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_baseline(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    group: str | Group,
    **kwargs,
) -> dict:
    """The plain (``"trivial"``) GroupCNN with about the parameters of the ``group`` one, and both counts.

    Channels follow :func:`matched_channels` (C·sqrt(|G|)). Returns a dict with ``group_channels``,
    ``baseline_channels``, ``group_parameters``, ``baseline_parameters`` and ``ratio`` (baseline / group).
    ``kwargs`` go to both constructors (strides, kernel_size, norm...).
    """
    baseline_channels = matched_channels(channels, group, "trivial", spatial_dims)
    group_net = GroupCNN(spatial_dims, in_channels, out_channels, channels, group=group, **kwargs)
    plain_net = GroupCNN(spatial_dims, in_channels, out_channels, baseline_channels, group="trivial", **kwargs)
    n_group, n_plain = count_parameters(group_net), count_parameters(plain_net)
    return {
        "group_channels": tuple(int(c) for c in channels),
        "baseline_channels": baseline_channels,
        "group_parameters": n_group,
        "baseline_parameters": n_plain,
        "ratio": n_plain / n_group,
    }
