"""Residual units on group tensors: the ResNet basic block (:class:`GroupResidualBlock`, used by the classifiers)
and MONAI's ``ResidualUnit`` (:class:`GroupResidualUnit`, used by the U-Nets with ``num_res_units > 0``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act, Conv

from monai_equivariant.groups import Group, as_group
from monai_equivariant.layers import GroupBatchNorm, GroupInstanceNorm
from monai_equivariant.networks.blocks.checkpointing import (
    checkpoint_segment,
    chunked_backward_conv,
    streamable,
    streamed_residual_block,
)
from monai_equivariant.networks.blocks.conv_block import GroupConvBlock, check_block_order, renamed_fields
from monai_equivariant.networks.blocks.factories import ActSpec, DropoutSpec, NormSpec, get_group_act_layer

__all__ = ["GroupResidualBlock", "GroupResidualUnit"]


class GroupResidualBlock(nn.Module):
    """``act(norm(conv(act(norm(conv(x))))) + shortcut(x))`` on group tensors (ResNet basic block).

    (B, C_in·|G|, *spatial) -> (B, C_out·|G|, *spatial'). The shortcut is the identity when C_in == C_out (stride 1,
    group input), else a 1×1 group conv (lifting conv for ``lifting=True``) with the block's stride, followed by a
    group norm (MONAI's ``UnetResBlock`` with ``lifting``/``stride``). Every piece is equivariant, so the block is.

    Args:
        in_channels, out_channels: fields C_in, C_out.
        group: the group of the fields (name or :class:`~monai_equivariant.groups.Group`).
        kernel_size: odd kernel size of the two convs (int or equal sides).
        act, norm: MONAI-style specs (``"relu"``; ``"batch"``, ``"instance"``, None), see :class:`GroupConvBlock`.
        dropout: dropout (probability or MONAI spec) in the first unit.
        bias: conv biases.
        adn_ordering: order of norm (N), dropout (D) and act (A) after each conv (MONAI's, default ``"NDA"``).
        stride: stride of the first conv and the shortcut (an int or one per axis; default 1).
        lifting: the first conv and the shortcut take a plain input (B, C_in, *spatial).
        separable: the group convs (not a lifting one, not the 1×1 shortcut) are
            :class:`~monai_equivariant.layers.SeparableGroupConv`.

    ``checkpointing`` (attribute, default False; set by :class:`~monai_equivariant.networks.nets.GroupCNN`): in
    training with gradients on, keep only the first conv's output and the second conv's output for the backward
    pass; the norms, activations and the shortcut are recomputed there. A :func:`streamable` block (identity
    shortcut, group batch norms, ReLU, no dropout) keeps only its input and runs its backward one sample at a time
    (:func:`streamed_residual_block`). Outputs, gradients and running statistics are unchanged (float round-off).
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
        adn_ordering: str = "NDA",
        stride: Sequence[int] | int = 1,
        lifting: bool = False,
        separable: bool = False,
    ) -> None:
        super().__init__()
        check_block_order(type(self).__name__, in_channels, out_channels)
        group = as_group(group)
        unit = dict(group=group, kernel_size=kernel_size, norm=norm, bias=bias, adn_ordering=adn_ordering,
                    separable=separable)
        self.residual = nn.Sequential(
            GroupConvBlock(in_channels, out_channels, act=act, dropout=dropout, stride=stride, lifting=lifting,
                           **unit),
            GroupConvBlock(out_channels, out_channels, act=None, **unit),
        )
        strided = stride != 1 and any(int(s) != 1 for s in (stride if isinstance(stride, Sequence) else [stride]))
        if in_channels == out_channels and not strided and not lifting:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = GroupConvBlock(in_channels, out_channels, group, kernel_size=1, act=None, norm=norm,
                                           bias=bias, adn_ordering=adn_ordering, stride=stride, lifting=lifting)
        self.act = get_group_act_layer(act) or nn.Identity()
        self.checkpointing = False

    __jit_unused_properties__ = ["first", "second"]

    @property
    def first(self) -> GroupConvBlock:
        """The first unit: conv, norm, dropout and act."""
        return self.residual[0]

    @property
    def second(self) -> GroupConvBlock:
        """The second unit: conv and norm (no act: it follows the sum)."""
        return self.residual[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in·|G|, *spatial) -> (B, C_out·|G|, *spatial)."""
        if self.checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return self._checkpointed(x)
        return self.act(self.residual(x) + self.shortcut(x))

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        if streamable(self) and not torch.is_autocast_enabled():
            return streamed_residual_block(self, x)
        first, second = self.first, self.second
        pre_first = chunked_backward_conv(first.conv, x)  # saves x, which the caller keeps anyway
        pre_second = checkpoint_segment(
            self._middle, pre_first, modules=[first, second.conv], ends_with_chunked_conv=True
        )
        return checkpoint_segment(self._tail, pre_second, x, modules=[second, self.shortcut, self.act])

    def _middle(self, pre_first: torch.Tensor) -> torch.Tensor:
        """Norm, act, dropout of the first unit, then the second conv (recomputed: only its input is kept)."""
        y = self.first.after_conv(pre_first)
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return chunked_backward_conv(self.second.conv, y)
        return self.second.conv(y)

    def _tail(self, pre_second: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Norm of the second unit, shortcut, sum and act."""
        second = self.second
        norm = second.norm
        group_norm = isinstance(norm, (GroupBatchNorm, GroupInstanceNorm))
        if second.layout == "CN" and group_norm and type(self.act) is nn.ReLU:
            # the norm's output is a fresh tensor that no backward needs: add and ReLU in place on it (ReLU's
            # backward needs only its output), two activations fewer while this segment is recomputed
            y = norm(pre_second)
            return torch.relu_(y.add_(self.shortcut(x)))
        return self.act(second.after_conv(pre_second) + self.shortcut(x))


class GroupResidualUnit(nn.Module):
    """MONAI's ``ResidualUnit`` on group tensors: ``subunits`` conv-norm-act units plus a shortcut, summed.

    (B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial). The shortcut is the identity when the input already has
    C_out fields, else a 1×1 group conv (a 1×1 lifting conv for ``lifting=True``, plain input), as MONAI's 1×1
    residual conv. No activation after the sum (as MONAI's unit).

    Args:
        in_channels, out_channels: fields C_in (input channels when ``lifting``), C_out.
        group: group name or :class:`~monai_equivariant.groups.Group`.
        kernel_size: odd kernel size of the units (int or equal sides).
        subunits: conv-norm-act units (≥ 1), MONAI's ``subunits`` (the U-Nets pass ``num_res_units``).
        act, norm, dropout, bias, adn_ordering: as :class:`GroupConvBlock` (every unit).
        lifting: the first unit and the shortcut take a plain input.
        separable: the units' group convs (not a lifting one) are
            :class:`~monai_equivariant.layers.SeparableGroupConv`; the 1×1 shortcut stays a group conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: str | Group,
        kernel_size: Sequence[int] | int = 3,
        subunits: int = 2,
        act: ActSpec = Act.RELU,
        norm: NormSpec = "batch",
        dropout: DropoutSpec = 0.0,
        bias: bool = True,
        lifting: bool = False,
        adn_ordering: str = "NDA",
        separable: bool = False,
    ) -> None:
        super().__init__()
        check_block_order(type(self).__name__, in_channels, out_channels)
        if isinstance(subunits, bool) or int(subunits) != subunits or subunits < 1:
            raise ValueError(f"subunits must be an integer ≥ 1, got {subunits!r}")
        group = as_group(group)
        unit = dict(group=group, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias,
                    adn_ordering=adn_ordering, separable=separable)
        self.conv = nn.Sequential(
            *[
                GroupConvBlock(in_channels if i == 0 else out_channels, out_channels, lifting=lifting and i == 0,
                               **unit)
                for i in range(int(subunits))
            ]
        )
        if in_channels == out_channels and not lifting:
            self.residual: nn.Module = nn.Identity()
        else:
            conv_cls = Conv[Conv.LIFTING if lifting else Conv.GROUPCONV, group.spatial_dims]
            self.residual = conv_cls(in_channels, out_channels, group, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in[·|G|], *spatial) -> (B, C_out·|G|, *spatial)."""
        return self.conv(x) + self.residual(x)
