"""Conv → norm → activation → dropout units on group tensors, and the two-conv U-Net level."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch.nn as nn
from monai.networks.layers.factories import Act

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    as_kernel_size,
    get_group_act_layer,
    get_group_dropout_layer,
    get_group_norm_layer,
)

__all__ = ["GroupConvBlock", "GroupDoubleConv", "check_block_order", "renamed_fields"]

F = TypeVar("F", bound=Callable[..., Any])
_RENAMED = {"in_fields": "in_channels", "out_fields": "out_channels"}


def renamed_fields(init: F) -> F:
    """Accept the pre-0.1 keywords ``in_fields``/``out_fields`` (FutureWarning) for ``in_channels``/
    ``out_channels``; the signature shown by ``inspect`` stays the new one."""

    @functools.wraps(init)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        for old, new in _RENAMED.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{type(self).__name__}: pass {new} only (not also the old name {old})")
                warnings.warn(f"{type(self).__name__}: {old} is renamed {new}", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_block_order(block: str, in_channels: object, out_channels: object) -> None:
    """TypeError for the pre-0.1 argument order ``Block(group, in, out)``: blocks now take
    ``(in_channels, out_channels, group, ...)`` like :class:`~monai_equivariant.layers.GroupConv`."""
    for value in (in_channels, out_channels):
        if isinstance(value, (Group, str)):
            raise TypeError(
                f"{block} takes (in_channels, out_channels, group, ...) like GroupConv; got a group as a channel count "
                f"({value!r}): the old order (group, in, out) is no longer accepted"
            )


class GroupConvBlock(nn.Sequential):
    """One (lifting or group) conv, group norm, pointwise activation and dropout (MONAI's ``Convolution`` with
    ``adn_ordering="NDA"`` order N, A, D on group tensors).

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial); ``lifting=True`` takes a plain input.

    Args:
        in_channels: input fields C_in (input channels for ``lifting=True``).
        out_channels: output fields C_out (the tensor has C_out·|G| channels).
        group: group name or :class:`~monai_equivariant.groups.Group`.
        kernel_size: odd int, or a sequence of equal odd ints (one per spatial dim).
        act: MONAI act spec (``"relu"``, ``("leakyrelu", {"negative_slope": 0.1})``) or None.
        norm: ``"batch"``, ``"instance"`` (group-shared statistics; also ``("batch", {...})``, ``"groupbatch"``)
            or None.
        dropout: probability or MONAI dropout spec (``("alphadropout", {"p": 0.1})``); 0 / None for none.
        bias: conv bias (one per field).
        lifting: the conv is a :class:`~monai_equivariant.layers.LiftingConv` (plain input).

    Layout ``[conv, norm, act?, dropout?]`` (``nn.Sequential``; ``nn.Identity`` for ``norm=None``).
    """

    @renamed_fields
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: Sequence[int] | int = 3,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        lifting: bool = False,
    ) -> None:
        check_block_order(type(self).__name__, in_channels, out_channels)
        group = as_group(group)
        size = as_kernel_size(kernel_size, group.spatial_dims)
        conv_cls = LiftingConv if lifting else GroupConv
        layers: list[nn.Module] = [conv_cls(in_channels, out_channels, group, size, bias=bias)]
        layers.append(get_group_norm_layer(norm, out_channels, group.order, group.spatial_dims))
        for layer in (get_group_act_layer(act), get_group_dropout_layer(dropout)):
            if layer is not None:
                layers.append(layer)
        super().__init__(*layers)


class GroupDoubleConv(nn.Sequential):
    """Two :class:`GroupConvBlock` in a row (one classic U-Net level); the first lifts when ``lifting=True``.

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial). Arguments as :class:`GroupConvBlock`.
    """

    @renamed_fields
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: Sequence[int] | int = 3,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        lifting: bool = False,
    ) -> None:
        check_block_order(type(self).__name__, in_channels, out_channels)
        unit = dict(group=group, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias)
        super().__init__(
            GroupConvBlock(in_channels, out_channels, lifting=lifting, **unit),
            GroupConvBlock(out_channels, out_channels, **unit),
        )
