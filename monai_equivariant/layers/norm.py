"""Normalisation of group tensors with statistics (and affine parameters) shared over the group axis."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Norm

from monai_equivariant.layers.compiled_norm import batch_statistics_norm, frozen_statistics_norm, per_channel

__all__ = ["GroupBatchNorm", "GroupGroupNorm", "GroupInstanceNorm"]


class _FieldBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``nn.BatchNorm1d``'s parameters, buffers and updates, for (B, C, *rest) inputs of any rank ≥ 3 (the
    (B, C, |G|, *spatial) field view of :class:`_SharedOverGroup`)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 3:
            raise ValueError(f"expected an input of at least 3 dims (B, C, ...), got {input.dim()}")


class _FieldInstanceNorm(nn.modules.instancenorm._InstanceNorm):
    """``nn.InstanceNorm1d``'s parameters, buffers and updates, for (B, C, *rest) inputs of any rank ≥ 3:
    statistics per sample and channel over ``rest``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() < 3:
            raise ValueError(f"expected an input of at least 3 dims (B, C, ...), got {input.dim()}")
        return self._apply_instance_norm(input)


class _SharedOverGroup(nn.Module):
    """Normalises (B, C·|G|, *spatial) per field C (statistics over the |G| and spatial axes); ``self.norm`` holds
    the parameters and running statistics (per field) and normalises the field view (B, C, |G|, *spatial).

    That view only splits the channel axis, so it is a view both of contiguous and of channels-last tensors, and it
    leaves the spatial sizes alone. The (B, C, |G|·prod(spatial)) reshape of earlier versions copied channels-last
    tensors (and its backward again), which is what inductor's CPU layout optimisation makes of every conv output:
    compiled P4UNet training cost 1.09-1.17x its compiled plain export through those copies. Under ``torch.compile``
    the subclasses' ``forward_for_compile`` returns tensors that are not views instead. The norm's parameter and
    buffer names and shapes are those of the 1D norms of earlier versions, so checkpoints load unchanged."""

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

    def fields_view(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C·|G|, *spatial) -> (B, C, |G|, *spatial), what ``self.norm`` normalises: a view for contiguous and
        channels-last tensors."""
        return x.unflatten(1, (self.num_fields, self.group_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C·|G|, *spatial) -> the same shape: the native kernel on the field view; under ``torch.compile``,
        :meth:`forward_for_compile`."""
        self.check_channels(x)
        if torch.compiler.is_compiling():
            return self.forward_for_compile(x)
        return self.norm(self.fields_view(x)).flatten(1, 2)

    def forward_for_compile(self, x: torch.Tensor) -> torch.Tensor:
        """The same map as :meth:`forward` with an output that is not a view (subclasses)."""
        raise NotImplementedError


class GroupBatchNorm(_SharedOverGroup):
    """Batch norm of a group tensor: one mean/variance/affine per field, over batch, group and space.

    Args:
        num_fields: C (the tensor has C·|G| channels).
        group_size: |G|.
        spatial_dims: used by :meth:`to_plain` to pick ``nn.BatchNorm{1,2,3}d`` (default 2).
        **kwargs: eps, momentum, affine, track_running_stats (as ``nn.BatchNorm1d``'s).
    """

    def __init__(self, num_fields: int, group_size: int, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(_FieldBatchNorm(num_fields, **kwargs), num_fields, group_size)
        self.spatial_dims = int(spatial_dims)

    def forward_for_compile(self, x: torch.Tensor) -> torch.Tensor:
        """The same map with an output that is not a view, in the form inductor compiles well
        (:mod:`~monai_equivariant.layers.compiled_norm` says why): with running statistics in eval mode,
        ``frozen_statistics_norm``, else ``batch_statistics_norm``. In eager mode the native kernel on the view is
        faster (fewer ops)."""
        norm: _FieldBatchNorm = self.norm
        if not norm.training and norm.running_mean is not None:
            return frozen_statistics_norm(x, norm, self.group_size)
        return batch_statistics_norm(x, norm, self.group_size)

    def to_plain(self) -> nn.Module:
        """An eval-mode ``nn.BatchNormNd`` over C·|G| channels with each field's statistics and affine
        repeated |G| times: the same outputs as this layer in eval mode (export is for inference)."""
        if self.norm.running_mean is None:
            raise ValueError("export needs running statistics (track_running_stats=True) to freeze batch norm")
        return _frozen_batch_norm(self.norm, self.group_size, self.spatial_dims)


class GroupInstanceNorm(_SharedOverGroup):
    """Instance norm of a group tensor: statistics per sample and field, over group and space.

    Args: as :class:`GroupBatchNorm` (kwargs as ``nn.InstanceNorm1d``'s).
    """

    def __init__(self, num_fields: int, group_size: int, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(_FieldInstanceNorm(num_fields, **kwargs), num_fields, group_size)
        self.spatial_dims = int(spatial_dims)

    def forward_for_compile(self, x: torch.Tensor) -> torch.Tensor:
        """The same map with an output that is not a view where it can be
        (:func:`~monai_equivariant.layers.compiled_norm.batch_statistics_norm` says why): without running
        statistics (the default), ``group_norm`` on ``x`` with one norm group per field and each field's affine
        repeated |G| times; with them, those in eval mode, and the native kernel on the field view in training mode
        (which updates them)."""
        norm: _FieldInstanceNorm = self.norm
        if not norm.track_running_stats or norm.running_mean is None:
            return F.group_norm(x, self.num_fields, per_channel(norm.weight, self.group_size),
                                per_channel(norm.bias, self.group_size), norm.eps)
        if not norm.training:
            return frozen_statistics_norm(x, norm, self.group_size)
        return norm(self.fields_view(x)).flatten(1, 2)

    def to_plain(self) -> nn.Module:
        """The same map in plain torch, eval mode: ``nn.GroupNorm`` with one group per field (statistics per sample
        over the field's |G| channels and space, affine repeated |G| times); with running statistics
        (``track_running_stats=True``, which instance norm uses in eval mode) an ``nn.BatchNormNd`` holding them."""
        norm: _FieldInstanceNorm = self.norm
        if norm.track_running_stats and norm.running_mean is not None:
            return _frozen_batch_norm(norm, self.group_size, self.spatial_dims)
        return _plain_group_norm(self.num_fields, norm, self.num_fields, self.group_size)


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
        |G| times (field-major channels keep each norm group's fields side by side). Not through a (B, C, -1)
        reshape (what the other norms used before their (B, C, |G|, *spatial) view): torch 2.13's inductor, with its
        CPU layout optimisation (channels-last conv outputs), compiled that reshape's backward into wrong gradients
        in GroupSegResNet (5e-2 of the scale; ``tests/test_compile.py``)."""
        self.check_channels(x)
        norm: nn.GroupNorm = self.norm
        return F.group_norm(x, norm.num_groups, per_channel(norm.weight, self.group_size),
                            per_channel(norm.bias, self.group_size), norm.eps)

    def to_plain(self) -> nn.Module:
        """``nn.GroupNorm(num_groups, C·|G|)`` with each field's affine repeated |G| times: field-major channels
        put each norm group's fields side by side, so its contiguous chunks are the same norm groups."""
        norm: nn.GroupNorm = self.norm
        return _plain_group_norm(norm.num_groups, norm, self.num_fields, self.group_size)


def _plain_group_norm(num_groups: int, norm: nn.Module, num_fields: int, group_size: int) -> nn.Module:
    """An eval-mode ``nn.GroupNorm(num_groups, C·|G|)`` with ``norm``'s eps and its per-field affine (if any)
    repeated |G| times: field-major channels put each norm group's fields side by side."""
    plain = nn.GroupNorm(num_groups, num_fields * group_size, eps=norm.eps, affine=norm.affine)
    if norm.affine:
        plain = plain.to(device=norm.weight.device, dtype=norm.weight.dtype)
        with torch.no_grad():
            plain.weight.copy_(per_channel(norm.weight, group_size))
            plain.bias.copy_(per_channel(norm.bias, group_size))
    return plain.eval()


def _frozen_batch_norm(norm: nn.modules.batchnorm._NormBase, group_size: int, spatial_dims: int) -> nn.Module:
    """An eval-mode ``nn.BatchNormNd`` (MONAI's ``Norm`` factory) over C·|G| channels holding ``norm``'s running
    statistics and affine (C each) repeated |G| times."""
    plain = Norm[Norm.BATCH, spatial_dims](
        norm.num_features * group_size, eps=norm.eps, momentum=norm.momentum, affine=norm.affine
    ).to(device=norm.running_mean.device, dtype=norm.running_mean.dtype)
    with torch.no_grad():
        plain.running_mean.copy_(per_channel(norm.running_mean, group_size))
        plain.running_var.copy_(per_channel(norm.running_var, group_size))
        if norm.affine:
            plain.weight.copy_(per_channel(norm.weight, group_size))
            plain.bias.copy_(per_channel(norm.bias, group_size))
    return plain.eval()
