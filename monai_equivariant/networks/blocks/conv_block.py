"""Conv + MONAI ``ADN`` (norm, dropout, activation) units on group tensors, and the two-conv U-Net level."""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn as nn
from monai.networks.blocks import ADN
from monai.networks.layers.factories import Act

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers.plain import replace_with_plain
from monai_equivariant.networks.blocks.factories import (
    ActSpec,
    DropoutSpec,
    NormSpec,
    as_kernel_shape,
    check_adn_ordering,
    check_group_act,
    get_group_dropout_layer,
    group_conv_class,
    group_dropout_spec,
    group_norm_spec,
)

__all__ = ["GroupConvBlock", "GroupDoubleConv", "check_block_order", "plain_sequential", "renamed_fields"]

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
    """One (lifting or group) conv followed by MONAI's ``ADN`` (group norm, dropout, pointwise activation in the
    order ``adn_ordering``), as MONAI's ``Convolution`` on group tensors.

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial); ``lifting=True`` takes a plain input.

    Args:
        in_channels: input fields C_in (input channels for ``lifting=True``).
        out_channels: output fields C_out (the tensor has C_out·|G| channels).
        group: group name or :class:`~monai_equivariant.groups.Group`.
        kernel_size: odd int, or a sequence of equal odd ints (one per spatial dim); per-axis sides such as
            ``(1, 3, 3)`` where the group maps that kernel grid onto itself (D4h, not O); an even side only along a
            strided axis.
        act: MONAI act spec (``"relu"``, ``("leakyrelu", {"negative_slope": 0.1})``) or None.
        norm: ``"batch"``, ``"instance"`` (group-shared statistics; also ``("batch", {...})``, ``"groupbatch"``)
            or None.
        dropout: probability or MONAI dropout spec (``("alphadropout", {"p": 0.1})``); 0 / None for none.
        bias: conv bias (one per field).
        lifting: the conv is a :class:`~monai_equivariant.layers.LiftingConv` (plain input).
        adn_ordering: MONAI's order of the layers after the conv: N = norm, D = dropout, A = act; ``"NDA"``
            (default, as MONAI's ``UNet``) is norm, dropout, act.
        stride: the conv's stride, an int or one per axis (default 1; see
            :class:`~monai_equivariant.layers.GroupConv` for the sizes it is exact on).
        separable: the (non-lifting, more than 1×1) conv is a
            :class:`~monai_equivariant.layers.SeparableGroupConv` (pointwise group mixing, then a depthwise conv of
            the group-transformed kernels: about k^d× fewer mixing FLOPs and weights); a lifting conv stays full.

    ``to_plain()`` gives an ``nn.Sequential`` of the plain exports of its layers.

    Layout ``[conv, *ADN]`` (``nn.Sequential``: the conv, then MONAI's ``ADN`` layers in ``adn_ordering``, with
    ``nn.Identity`` in the norm's place for ``norm=None``). The block interface — :attr:`conv`, :attr:`norm`,
    :attr:`act`, :attr:`dropout`, :attr:`layout` and :meth:`after_conv` — is what checkpointing reads.
    """

    __jit_unused_properties__ = ["conv", "norm", "act", "dropout"]

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
        adn_ordering: str = "NDA",
        stride: Sequence[int] | int = 1,
        separable: bool = False,
    ) -> None:
        check_block_order(type(self).__name__, in_channels, out_channels)
        group = as_group(group)
        dims = group.spatial_dims
        size = as_kernel_shape(kernel_size, group, stride)
        ordering = check_adn_ordering(adn_ordering)
        conv = group_conv_class(group, size, lifting, separable)(in_channels, out_channels, group, size, bias=bias,
                                                                 stride=stride)
        get_group_dropout_layer(dropout)  # ValueError naming a bad dropout spec
        adn = ADN(
            ordering, in_channels=out_channels * group.order, act=None if act == "" else act,
            norm=group_norm_spec(norm, group.order), norm_dim=dims, dropout=group_dropout_spec(dropout),
            dropout_dim=1,
        )
        check_group_act(getattr(adn, "A", None), act)
        layers, layout = [conv], "C"
        for letter in ordering:
            if letter in adn._modules or letter == "N":
                layers.append(adn._modules.get(letter) or nn.Identity())
                layout += letter
        super().__init__(*layers)
        self.layout = layout
        self.adn_ordering = ordering

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "layout" not in self.__dict__:  # pickled before ADN: [conv, norm, act?, dropout?] (N, A, D)
            letters = ["N"] + ["D" if isinstance(m, nn.modules.dropout._DropoutNd) else "A" for m in list(self)[2:]]
            self.layout, self.adn_ordering = "C" + "".join(letters), "NAD"

    def _role(self, letter: str) -> nn.Module | None:
        return self[self.layout.index(letter)] if letter in self.layout else None

    @property
    def conv(self) -> nn.Module:
        """The lifting or group conv."""
        return self[0]

    @property
    def norm(self) -> nn.Module:
        """The group norm (``nn.Identity`` for none)."""
        return self._role("N")

    @property
    def act(self) -> nn.Module | None:
        """The activation, or None."""
        return self._role("A")

    @property
    def dropout(self) -> nn.Module | None:
        """The dropout, or None."""
        return self._role("D")

    @torch.jit.unused
    def after_conv(self, y: torch.Tensor) -> torch.Tensor:
        """The layers after the conv (norm, dropout, act in ``adn_ordering``) applied to the conv's output ``y``."""
        for layer in list(self)[1:]:
            y = layer(y)
        return y

    def to_plain(self) -> nn.Module:
        """An ``nn.Sequential`` of copies of the layers, each replaced by its plain export where it has one."""
        return plain_sequential(self)


class GroupDoubleConv(nn.Sequential):
    """Two :class:`GroupConvBlock` in a row (one classic U-Net level); the first lifts when ``lifting=True``.

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial). Arguments as :class:`GroupConvBlock` (``separable``:
    both convs but a lifting one).
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
        adn_ordering: str = "NDA",
        separable: bool = False,
    ) -> None:
        check_block_order(type(self).__name__, in_channels, out_channels)
        unit = dict(group=group, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias,
                    adn_ordering=adn_ordering, separable=separable)
        super().__init__(
            GroupConvBlock(in_channels, out_channels, lifting=lifting, **unit),
            GroupConvBlock(out_channels, out_channels, **unit),
        )

    def to_plain(self) -> nn.Module:
        """An ``nn.Sequential`` of the plain exports of the two units."""
        return plain_sequential(self)


def plain_sequential(sequence: nn.Sequential) -> nn.Sequential:
    """A copy of ``sequence`` as a plain ``nn.Sequential`` whose layers are replaced by their plain exports."""
    plain = nn.Sequential(*copy.deepcopy(list(sequence))).eval()
    replace_with_plain(plain)
    return plain
