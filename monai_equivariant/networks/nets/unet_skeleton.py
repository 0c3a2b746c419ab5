"""The U-Net traversal shared by every U-Net here (group, steerable, and their plain-torch exports)."""

from __future__ import annotations

import torch
import torch.nn as nn

from monai_equivariant.networks.nets.input_check import check_input
from monai_equivariant.layers.plain import ScriptsAsExport

__all__ = ["UNetSkeleton"]


class UNetSkeleton(ScriptsAsExport, nn.Module):
    """Encoder stages, decoder steps with skips, a projection to invariant channels and a head.

    ``encoder[0]`` maps the input to the first level; ``encoder[l]`` (l > 0) down-samples and convolves;
    ``decoder[i](x, skip)`` upsamples x, joins the skip of the matching level and convolves; ``project`` maps the
    last features to invariant channels (group pooling); ``head`` is a 1×1 conv.

    Input (B, in_channels, *spatial) with ``spatial_dims`` axes, each divisible by ``size_multiple``; output
    (B, out_channels, *spatial). Scriptable when its parts are.
    """

    def __init__(
        self,
        encoder: nn.ModuleList,
        decoder: nn.ModuleList,
        project: nn.Module,
        head: nn.Module,
        in_channels: int,
        size_multiple: int,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.project, self.head = encoder, decoder, project, head
        self.in_channels = int(in_channels)
        self.size_multiple = int(size_multiple)
        self.spatial_dims = int(spatial_dims)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, *spatial), B ≥ 1, with positive sizes divisible by
        ``size_multiple``, in the network's dtype."""
        check_input(x, self.spatial_dims, self.in_channels, self.size_multiple, self.head.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, out_channels, *spatial)."""
        self.check_input(x)
        skips: list[torch.Tensor] = []
        for level, stage in enumerate(self.encoder):
            if level > 0:
                skips.append(x)
            x = stage(x)
        for level, step in enumerate(self.decoder):
            x = step(x, skips[len(skips) - 1 - level])
        return self.head(self.project(x))
