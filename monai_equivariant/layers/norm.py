"""Normalisation of group tensors with statistics (and affine parameters) shared over the group axis."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from monai.networks.layers.factories import Norm

__all__ = ["GroupBatchNorm", "GroupGroupNorm", "GroupInstanceNorm"]


class _SharedOverGroup(nn.Module):
    """Views (B, C·|G|, *spatial) as (B, C, |G|·prod(spatial)) and normalises per field C."""

    def __init__(self, norm: nn.Module, num_fields: int, group_size: int) -> None:
        super().__init__()
        self.norm = norm
        self.num_fields = int(num_fields)
        self.group_size = int(group_size)

    def extra_repr(self) -> str:
        return f"num_fields={self.num_fields}, group_size={self.group_size}"

    def check_channels(self, x: torch.Tensor) -> None:
        """ValueError unless x is (B, C·|G|, *spatial)."""
        expected = self.num_fields * self.group_size
        if x.dim() < 3 or x.shape[1] != expected:
            raise ValueError(
                "group norm expects (B, " + str(expected) + ", *spatial) = " + str(self.num_fields)
                + " fields x |G|=" + str(self.group_size) + ", got " + str(x.dim()) + " dims with "
                + str(x.shape[1]) + " channels"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_channels(x)
        return self.norm(x.reshape(x.shape[0], self.num_fields, -1)).reshape(x.shape)


class GroupBatchNorm(_SharedOverGroup):
    """Batch norm of a group tensor: one mean/variance/affine per field, over batch, group and space.

    Args:
        num_fields: C (the tensor has C·|G| channels).
        group_size: |G|.
        spatial_dims: used by :meth:`to_plain` to pick ``nn.BatchNorm{1,2,3}d`` (default 2).
        **kwargs: passed to ``nn.BatchNorm1d`` (eps, momentum, affine, track_running_stats).
    """

    def __init__(self, num_fields: int, group_size: int, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(nn.BatchNorm1d(num_fields, **kwargs), num_fields, group_size)
        self.spatial_dims = int(spatial_dims)

    def to_plain(self) -> nn.Module:
        """An eval-mode ``nn.BatchNormNd`` over C·|G| channels with each field's statistics and affine
        repeated |G| times: the same outputs as this layer in eval mode (export is for inference)."""
        if self.norm.running_mean is None:
            raise ValueError("export needs running statistics (track_running_stats=True) to freeze batch norm")
        return _frozen_batch_norm(self.norm, self.group_size, self.spatial_dims)


class GroupInstanceNorm(_SharedOverGroup):
    """Instance norm of a group tensor: statistics per sample and field, over group and space.

    Args: as :class:`GroupBatchNorm` (kwargs go to ``nn.InstanceNorm1d``).
    """

    def __init__(self, num_fields: int, group_size: int, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(nn.InstanceNorm1d(num_fields, **kwargs), num_fields, group_size)
        self.spatial_dims = int(spatial_dims)

    def to_plain(self) -> nn.Module:
        """The same map in plain torch, eval mode: ``nn.GroupNorm`` with one group per field (statistics per sample
        over the field's |G| channels and space, affine repeated |G| times); with running statistics
        (``track_running_stats=True``, which instance norm uses in eval mode) an ``nn.BatchNormNd`` holding them."""
        norm: nn.InstanceNorm1d = self.norm
        if norm.track_running_stats and norm.running_mean is not None:
            return _frozen_batch_norm(norm, self.group_size, self.spatial_dims)
        channels = self.num_fields * self.group_size
        plain = nn.GroupNorm(self.num_fields, channels, eps=norm.eps, affine=norm.affine)
        if norm.affine:
            plain = plain.to(device=norm.weight.device, dtype=norm.weight.dtype)
            with torch.no_grad():
                plain.weight.copy_(norm.weight.repeat_interleave(self.group_size))
                plain.bias.copy_(norm.bias.repeat_interleave(self.group_size))
        return plain.eval()


class GroupGroupNorm(_SharedOverGroup):
    """Group norm (``nn.GroupNorm``) of a group tensor whose norm groups are unions of whole fields: per sample,
    ``num_groups`` groups of C / num_groups fields each, statistics over their fields' |G| channels and space, one
    affine per field. A group element permutes channels within each field, so every norm group maps onto itself and
    the norm commutes with the group (MONAI's ``("group", {"num_groups": n})`` on a plain tensor would mix parts of
    fields and scale the |G| channels of a field differently).

    Args:
        num_fields: C (the tensor has C·|G| channels); a multiple of ``num_groups``.
        group_size: |G|.
        num_groups: norm groups (each of C / num_groups whole fields).
        spatial_dims: kept for :meth:`to_plain` (any d works).
        **kwargs: passed to ``nn.GroupNorm`` (eps, affine).
    """

    def __init__(self, num_fields: int, group_size: int, num_groups: int, spatial_dims: int = 2,
                 **kwargs: Any) -> None:
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1 or (
                int(num_fields) % num_groups != 0):
            raise ValueError(
                f"GroupGroupNorm: num_groups must be a positive divisor of the number of fields ({num_fields}: each "
                f"norm group holds whole fields), got {num_groups!r}"
            )
        super().__init__(nn.GroupNorm(num_groups, int(num_fields), **kwargs), num_fields, group_size)
        self.spatial_dims = int(spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C·|G|, *spatial) -> the same shape: ``group_norm`` on the tensor as it is, each field's affine repeated
        |G| times (field-major channels keep each norm group's fields side by side). Not through the (B, C, -1)
        reshape of the other norms: torch 2.13's inductor, with its CPU layout optimisation (channels-last conv
        outputs), compiled that reshape's backward into wrong gradients in GroupSegResNet (5e-2 of the scale;
        ``tests/test_compile.py``)."""
        self.check_channels(x)
        norm: nn.GroupNorm = self.norm
        weight = None if norm.weight is None else norm.weight.repeat_interleave(self.group_size)
        bias = None if norm.bias is None else norm.bias.repeat_interleave(self.group_size)
        return nn.functional.group_norm(x, norm.num_groups, weight, bias, norm.eps)

    def to_plain(self) -> nn.Module:
        """``nn.GroupNorm(num_groups, C·|G|)`` with each field's affine repeated |G| times: field-major channels
        put each norm group's fields side by side, so its contiguous chunks are the same norm groups."""
        norm: nn.GroupNorm = self.norm
        plain = nn.GroupNorm(norm.num_groups, self.num_fields * self.group_size, eps=norm.eps, affine=norm.affine)
        if norm.affine:
            plain = plain.to(device=norm.weight.device, dtype=norm.weight.dtype)
            with torch.no_grad():
                plain.weight.copy_(norm.weight.repeat_interleave(self.group_size))
                plain.bias.copy_(norm.bias.repeat_interleave(self.group_size))
        return plain.eval()


def _frozen_batch_norm(norm: nn.modules.batchnorm._NormBase, group_size: int, spatial_dims: int) -> nn.Module:
    """An eval-mode ``nn.BatchNormNd`` (MONAI's ``Norm`` factory) over C·|G| channels holding ``norm``'s running
    statistics and affine (C each) repeated |G| times."""
    plain = Norm[Norm.BATCH, spatial_dims](
        norm.num_features * group_size, eps=norm.eps, momentum=norm.momentum, affine=norm.affine
    ).to(device=norm.running_mean.device, dtype=norm.running_mean.dtype)
    with torch.no_grad():
        plain.running_mean.copy_(norm.running_mean.repeat_interleave(group_size))
        plain.running_var.copy_(norm.running_var.repeat_interleave(group_size))
        if norm.affine:
            plain.weight.copy_(norm.weight.repeat_interleave(group_size))
            plain.bias.copy_(norm.bias.repeat_interleave(group_size))
    return plain.eval()
