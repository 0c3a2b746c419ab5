"""Equivariant networks with MONAI-style constructors; plain tensors in, plain tensors out."""

from monai_equivariant.networks.nets.group_unet import GroupUNet, P4MUNet, P4UNet, matched_channels
from monai_equivariant.networks.nets.steerable_unet import PlainSteerableUNet, SteerableUNet

__all__ = ["GroupUNet", "P4MUNet", "P4UNet", "PlainSteerableUNet", "SteerableUNet", "matched_channels"]
