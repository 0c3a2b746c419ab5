"""SE(2,N) networks (Bekkers et al.): the SE(2,N) U-Net and a rotation-invariant patch classifier.

Both sample N planar rotations; kernels are rotated by the group's bilinear interpolation operator inside
the disk mask, so any N works. They are exactly equivariant (invariant) under 90° rotations when 4 divides
N, and approximately in between (see :func:`monai_equivariant.utils.rotation_error_curve`).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence

from monai_equivariant.groups import Group, get_group
from monai_equivariant.networks.nets.group_cnn import _CLASSIFIER_DIFFERENCES, GroupCNN
from monai_equivariant.networks.nets.group_unet import _UNET_DIFFERENCES, GroupUNet
from monai_equivariant.networks.nets.presets import Preset

__all__ = ["SE2CNN", "SE2UNet", "se2_group"]


def se2_group(num_rotations: int) -> Group:
    """The group ``se2_<num_rotations>``; ValueError unless num_rotations is an integer ≥ 1."""
    if isinstance(num_rotations, bool) or not isinstance(num_rotations, numbers.Integral) or num_rotations < 1:
        raise ValueError(f"num_rotations must be an integer ≥ 1, got {num_rotations!r}")
    return get_group(f"se2_{int(num_rotations)}")


def _num_rotations(default: int) -> inspect.Parameter:
    return inspect.Parameter("num_rotations", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation="int")


def _se2_preset_group(net: str, values: dict) -> Group:
    """``se2_<num_rotations>`` for the 2D SE(2,N) presets, after their checks (spatial_dims, argument order)."""
    if values["spatial_dims"] != 2:
        raise ValueError(f"{net} is 2D: spatial_dims must be 2, got {values['spatial_dims']}")
    _check_channels_first(net, values["channels"], values["num_rotations"])
    return se2_group(values["num_rotations"])


class SE2UNet(Preset, GroupUNet):
    """:class:`GroupUNet` for SE(2,N): N sampled rotations, interpolated kernels.

    Default fields (5, 9, 18, 37, 74) give, at the default N=12, the plain U-Net's (16, ..., 256) budget:
    1,955,673 parameters with 3 input channels (plain U-Net 1,965,569, see :func:`matched_channels`), of
    which 1,087,071 are unmasked (the disk mask zeroes the corner taps of 3×3 kernels). With fixed fields the
    parameter count grows linearly with N. Exactly equivariant under 90° rotations when 4 divides N.

    Args:
        spatial_dims: must be 2.
        in_channels, out_channels: channels of the plain input and output.
        channels: fields per level (the tensors carry fields·N channels).
        num_rotations: N ≥ 1 (the group ``se2_N``).
        strides, kernel_size, up_kernel_size, num_res_units, act, norm, dropout, bias, adn_ordering, route: as
            :class:`GroupUNet` (``route="input"`` only for N ∈ {1, 2, 4}: other N interpolate their kernels).
        channels_as: ``"fields"`` (default), ``"params"`` or ``"flops"``: as :class:`GroupUNet` (the plain twin is
            MONAI's UNet; disk-masked taps count, as the parameters and the planar conv hold them).
        separable: as :class:`GroupUNet`.
    """

    __doc__ += _UNET_DIFFERENCES
    preset_defaults = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1, "channels": (5, 9, 18, 37, 74)}
    preset_parameters = (_num_rotations(12),)

    def preset_group(self, values: dict) -> Group:
        return _se2_preset_group(type(self).__name__, values)

    def preset_finish(self, values: dict) -> None:
        self.num_rotations = self.group.order


class SE2CNN(Preset, GroupCNN):
    """Rotation-invariant patch classifier (Bekkers et al.'s SE(2,N) CNN for mitosis / PCam-style patches):
    the :class:`GroupCNN` body with the group SE(2,N) — lifting, residual SE(2) group-conv blocks with 2×2
    max-pool down-sampling, projection (max over the N orientations), global spatial average, linear layer.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of the plain input patch.
        out_channels: number of logits.
        channels: fields per stage (the group tensors carry fields·N channels).
        num_rotations: N ≥ 1 sampled rotations (the group ``se2_N``).
        strides: max-pool factor between stages (default 2 each).
        kernel_size: odd kernel size (int or two equal ints); the disk mask keeps 13 of the 25 taps of a 5×5
            kernel (5 of 9 at 3×3).
        act, norm, dropout, bias, adn_ordering, num_res_units, checkpointing, route: as :class:`GroupCNN`.
        channels_as: ``"fields"`` (default), ``"params"`` or ``"flops"``: as :class:`GroupCNN` (the plain twin is
            ``GroupCNN(group="trivial")`` with the same other arguments).
        separable: as :class:`GroupCNN`.

    Same argument order as :class:`SE2UNet`: ``SE2CNN(2, 3, 2, (8, 16, 32))`` is a 3-stage net on RGB patches.
    Input (B, in_channels, H, W) with H and W divisible by prod(strides); output (B, out_channels) logits,
    invariant to rotations of the input by multiples of 90° (exactly, when 4 divides N).
    """

    __doc__ += _CLASSIFIER_DIFFERENCES
    preset_defaults = {"spatial_dims": 2, "in_channels": 3, "out_channels": 2, "channels": (8, 16, 32),
                       "kernel_size": 5}
    preset_parameters = (_num_rotations(8),)

    def preset_group(self, values: dict) -> Group:
        return _se2_preset_group(type(self).__name__, values)

    def preset_finish(self, values: dict) -> None:
        self.num_rotations = self.group.order


def _check_channels_first(net: str, channels: object, num_rotations: object) -> None:
    """TypeError naming the argument order when ``channels`` and ``num_rotations`` look swapped (the pre-0.1
    ``SE2CNN(spatial_dims, in, out, num_rotations, channels)``)."""
    if isinstance(channels, numbers.Integral) and isinstance(num_rotations, Sequence):
        raise TypeError(
            f"{net} takes (spatial_dims, in_channels, out_channels, channels, num_rotations, ...): got channels="
            f"{channels!r} and num_rotations={num_rotations!r}, which look swapped"
        )
