"""Normalisation of group tensors with statistics (and affine parameters) shared over the group axis."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["GroupBatchNorm", "GroupInstanceNorm", "get_group_norm"]


class _SharedOverGroup(nn.Module):
    """Views (B, C·|G|, *spatial) as (B, C, |G|·prod(spatial)) and normalises per field C."""

    def __init__(self, norm: nn.Module, num_fields: int, group_size: int) -> None:
        super().__init__()
        self.norm = norm
        self.num_fields = int(num_fields)
        self.group_size = int(group_size)

    def extra_repr(self) -> str:
        return f"num_fields={self.num_fields}, group_size={self.group_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.num_fields * self.group_size
        if x.dim() < 3 or x.shape[1] != expected:
            raise ValueError(
                "group norm expects (B, " + str(expected) + ", *spatial) = " + str(self.num_fields)
                + " fields x |G|=" + str(self.group_size) + ", got " + str(x.dim()) + " dims with "
                + str(x.shape[1]) + " channels"
            )
        return self.norm(x.reshape(x.shape[0], self.num_fields, -1)).reshape(x.shape)


class GroupBatchNorm(_SharedOverGroup):
    """Batch norm of a group tensor: one mean/variance/affine per field, over batch, group and space.

    Args:
        num_fields: C (the tensor has C·|G| channels).
        group_size: |G|.
        **kwargs: passed to ``nn.BatchNorm1d`` (eps, momentum, affine, track_running_stats).
    """

    def __init__(self, num_fields: int, group_size: int, **kwargs: Any) -> None:
        super().__init__(nn.BatchNorm1d(num_fields, **kwargs), num_fields, group_size)


class GroupInstanceNorm(_SharedOverGroup):
    """Instance norm of a group tensor: statistics per sample and field, over group and space.

    Args: as :class:`GroupBatchNorm` (kwargs go to ``nn.InstanceNorm1d``).
    """

    def __init__(self, num_fields: int, group_size: int, **kwargs: Any) -> None:
        super().__init__(nn.InstanceNorm1d(num_fields, **kwargs), num_fields, group_size)


_NORMS = {"batch": GroupBatchNorm, "instance": GroupInstanceNorm}


def get_group_norm(norm: str | tuple | None, num_fields: int, group_size: int) -> nn.Module:
    """MONAI-style norm spec (``"batch"``, ``("instance", {"affine": True})``, None) -> a group norm layer."""
    if norm is None:
        return nn.Identity()
    name, kwargs = (norm, {}) if isinstance(norm, str) else (norm[0], dict(norm[1]) if len(norm) > 1 else {})
    name = str(name).lower()
    if name not in _NORMS:
        raise ValueError(f"unknown norm {name!r} for group tensors; expected one of {sorted(_NORMS)} or None")
    return _NORMS[name](num_fields, group_size, **kwargs)
