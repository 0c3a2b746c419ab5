"""Build a network by short name, so a bundle switches architectures with one override (``--network_name``).

Only the chosen network is imported and built. Channels are given as p4 fields and converted with
:func:`matched_channels`, so every choice has (about) the parameter count of the p4 default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from monai_equivariant.networks.nets.group_cnn import GroupCNN
from monai_equivariant.networks.nets.group_unet import GroupUNet, matched_channels
from monai_equivariant.networks.nets.se2 import SE2CNN, SE2UNet
from monai_equivariant.networks.nets.steerable_unet import SteerableUNet
from monai_equivariant.utils.export import scriptable

__all__ = ["CLASSIFICATION_NETWORKS", "SEGMENTATION_NETWORKS", "classification_network", "segmentation_network"]

SEGMENTATION_NETWORKS: dict[str, str] = {
    "p4": "P4UNet: 90° rotations (default)",
    "p4m": "GroupUNet(group='p4m'): 90° rotations and reflections",
    "se2": "SE2UNet(num_rotations=12): 30° rotations, interpolated kernels",
    "steerable": "SteerableUNet(num_rotations=8) (escnn): steerable filters, regular C8 fields",
    "plain": "GroupUNet(group='trivial'): the plain U-Net of matched parameters",
}


def segmentation_network(
    name: str = "p4",
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 1,
    channels: Sequence[int] = (8, 16, 32, 64, 128),
    **kwargs,
) -> nn.Module:
    """The U-Net called ``name`` (one of :data:`SEGMENTATION_NETWORKS`), scriptable (see :func:`scriptable`).

    Args:
        name: ``"p4"``, ``"p4m"``, ``"se2"``, ``"steerable"`` or ``"plain"``.
        channels: fields per level of the p4 net; p4m/se2/plain get :func:`matched_channels` of it (equal
            parameters), steerable gets half as many C8 fields (equal feature-map widths, fewer parameters).
        kwargs: passed to the network (``norm``, ``dropout``...).

    Input (B, in_channels, H, W), output (B, out_channels, H, W).
    """
    name = str(name).lower()
    channels = tuple(int(c) for c in channels)
    common = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)
    if name in ("p4", "p4m", "plain"):
        group = "trivial" if name == "plain" else name
        net = GroupUNet(channels=matched_channels(channels, "p4", group, spatial_dims), group=group, **common)
    elif name == "se2":
        net = SE2UNet(channels=matched_channels(channels, "p4", "se2_12"), num_rotations=12, **common)
    elif name == "steerable":
        # regular C8 fields with the p4 net's feature-map widths (SteerableUNet's own convention): half the fields
        net = SteerableUNet(channels=tuple(max(1, c // 2) for c in channels), num_rotations=8, **common)
    else:
        raise ValueError(f"network_name must be one of {sorted(SEGMENTATION_NETWORKS)}, got {name!r}")
    return scriptable(net)


CLASSIFICATION_NETWORKS: dict[str, str] = {
    "se2": "SE2CNN(num_rotations=8): 2D, logits invariant to 45° rotations (exact at 90°) (default, 2D)",
    "p4": "SE2CNN(num_rotations=4): 2D, exactly invariant to 90° rotations",
    "O": "GroupCNN(group='O'): 3D, exactly invariant to the 24 cube rotations (default, 3D)",
    "Oh": "GroupCNN(group='Oh'): 3D, cube rotations and reflections",
    "D4h": "GroupCNN(group='D4h'): 3D, in-plane 90° rotations and flips",
    "plain": "the plain CNN of matched parameters (SE2CNN with N=1 in 2D, GroupCNN(group='trivial') in 3D)",
}


def classification_network(
    name: str = "se2",
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 2,
    channels: Sequence[int] = (8, 16, 32),
    num_rotations: int = 8,
    **kwargs,
) -> nn.Module:
    """The patch classifier called ``name`` (one of :data:`CLASSIFICATION_NETWORKS`), scriptable.

    Args:
        name: ``"se2"``, ``"p4"`` (2D); ``"O"``, ``"Oh"``, ``"D4h"`` (3D); ``"plain"`` (either).
        channels: fields per level of the equivariant net (2D: SE(2, num_rotations); 3D: the named group;
            ``plain`` gets :func:`matched_channels` of the 2D se2 / 3D O default).
        kwargs: passed to the network (``norm``, ``dropout``...).

    Input (B, in_channels, *spatial), output (B, out_channels) logits.
    """
    channels = tuple(int(c) for c in channels)
    common = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)
    if spatial_dims == 2 and name in ("se2", "p4", "plain"):
        rotations = {"se2": int(num_rotations), "p4": 4, "plain": 1}[name]
        fields = matched_channels(channels, f"se2_{int(num_rotations)}", "trivial", 2) if name == "plain" else channels
        net = SE2CNN(num_rotations=rotations, channels=fields, **common)
    elif spatial_dims == 3 and name in ("O", "Oh", "D4h", "plain"):
        group = "trivial" if name == "plain" else name
        fields = matched_channels(channels, "O", "trivial", 3) if name == "plain" else channels
        net = GroupCNN(channels=fields, group=group, **common)
    else:
        raise ValueError(
            f"network_name {name!r} with spatial_dims={spatial_dims} is not one of: {CLASSIFICATION_NETWORKS}"
        )
    return scriptable(net)
