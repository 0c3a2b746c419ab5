"""Equivariant networks with MONAI-style constructors; plain tensors in, plain tensors out."""

from monai_equivariant.networks.nets.dyn_unet import GroupDynUNet
from monai_equivariant.networks.nets.group_basic_unet import GroupBasicUNet
from monai_equivariant.networks.nets.group_cnn import GroupCNN, count_parameters, matched_baseline
from monai_equivariant.networks.nets.group_unet import GroupUNet, P4MUNet, P4UNet, matched_channels
from monai_equivariant.networks.nets.se2 import SE2CNN, SE2UNet
from monai_equivariant.steerable.unet import PlainSteerableUNet, SteerableUNet
from monai_equivariant.networks.nets.group_segresnet import GroupSegResNet
from monai_equivariant.networks.nets.group_resnet import GroupResNet, group_resnet10, group_resnet18, group_resnet34

__all__ = [
    "GroupBasicUNet",
    "GroupCNN",
    "GroupDynUNet",
    "GroupUNet",
    "P4MUNet",
    "P4UNet",
    "PlainSteerableUNet",
    "SE2CNN",
    "SE2UNet",
    "SteerableUNet",
    "count_parameters",
    "matched_baseline",
    "matched_channels",
    "GroupResNet",
    "GroupSegResNet",
    "group_resnet10",
    "group_resnet18",
    "group_resnet34",
]
