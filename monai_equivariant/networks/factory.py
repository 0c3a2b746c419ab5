"""Build a network by short name, so a bundle switches architectures with one override (``--network_name``).

Only the chosen network is imported and built. Channels are given as p4 fields and converted with
:func:`matched_channels`, so every choice has (about) the parameter count of the p4 default.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch.nn as nn

from monai_equivariant.networks.nets.group_unet import GroupUNet, matched_channels
from monai_equivariant.utils.export import scriptable

__all__ = ["SEGMENTATION_NETWORKS", "segmentation_network"]

SEGMENTATION_NETWORKS: dict[str, str] = {
    "p4": "P4UNet: 90° rotations (default)",
    "p4m": "GroupUNet(group='p4m'): 90° rotations and reflections",
    "se2": "SE2UNet(num_rotations=12): 30° rotations, interpolated kernels",
    "steerable": "SteerableUNet (escnn): continuous rotations",
    "plain": "GroupUNet(group='trivial'): the plain U-Net of matched parameters",
}


def _optional_net(class_name: str) -> type:
    nets = importlib.import_module("monai_equivariant.networks.nets")
    if not hasattr(nets, class_name):
        raise ValueError(f"network {class_name} is not available in this monai_equivariant installation")
    return getattr(nets, class_name)


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
        channels: fields per level of the p4 net; other nets get :func:`matched_channels` of it.
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
        net = _optional_net("SE2UNet")(channels=matched_channels(channels, "p4", "se2_12"), num_rotations=12, **common)
    elif name == "steerable":
        net = _optional_net("SteerableUNet")(channels=channels, **common)
    else:
        raise ValueError(f"network_name must be one of {sorted(SEGMENTATION_NETWORKS)}, got {name!r}")
    return scriptable(net)
