"""Build a network by short name, so a bundle switches architectures with one override (``--network_name``).

The names, builders and channel rules are the entries of :mod:`~monai_equivariant.networks.registry`: only the
chosen network is imported and built. Segmentation channels are given as p4 fields and converted by the entry's
channel rule (:func:`matched_channels`), so every choice has (about) the parameter count of the p4 default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from monai_equivariant.networks.registry import NetworkEntry, RegistryView, lookup, network_entries

__all__ = ["CLASSIFICATION_NETWORKS", "SEGMENTATION_NETWORKS", "build_network", "classification_network",
           "segmentation_network"]


def _descriptions(task: str) -> dict[str, str]:
    """name -> description of the registered networks of ``task`` (one name in several dimensions: joined)."""
    out: dict[str, str] = {}
    for entry in network_entries(task):
        out[entry.name] = f"{out[entry.name]}; {entry.description}" if entry.name in out else entry.description
    return out


SEGMENTATION_NETWORKS: RegistryView = RegistryView(lambda: _descriptions("segmentation"))
"""name -> description of every segmentation network (a view of the registry)."""
CLASSIFICATION_NETWORKS: RegistryView = RegistryView(lambda: _descriptions("classification"))
"""name -> description of every classification network, 2D and 3D (a view of the registry)."""


def build_network(entry: NetworkEntry, spatial_dims: int, in_channels: int, out_channels: int,
                  channels: Sequence[int], num_rotations: int = 8, **kwargs) -> nn.Module:
    """``entry``'s network with its channel rule applied to ``channels``; ``kwargs`` go to the network."""
    fields = entry.channels(tuple(int(c) for c in channels), int(num_rotations))
    return entry.build(fields, int(num_rotations), spatial_dims=spatial_dims, in_channels=in_channels,
                       out_channels=out_channels, **kwargs)


def segmentation_network(
    name: str = "p4",
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 1,
    channels: Sequence[int] = (8, 16, 32, 64, 128),
    **kwargs,
) -> nn.Module:
    """The U-Net called ``name`` (one of :data:`SEGMENTATION_NETWORKS`); ``torch.jit.script`` of it scripts its
    plain-torch export (every net here is a ``ScriptsAsExport``).

    Args:
        name: ``"p4"``, ``"p4m"``, ``"se2"``, ``"steerable"`` or ``"plain"``.
        channels: fields per level of the p4 net; p4m/se2/plain get :func:`matched_channels` of it (equal
            parameters), steerable gets half as many C8 fields (equal feature-map widths, fewer parameters).
        kwargs: passed to the network (``norm``, ``dropout``...).

    Input (B, in_channels, H, W), output (B, out_channels, H, W).
    """
    name = str(name).lower()
    entry = lookup("segmentation", name, spatial_dims) or next(
        (e for e in network_entries("segmentation") if e.name == name), None)  # the net refuses the dimension
    if entry is None:
        raise ValueError(f"network_name must be one of {sorted(SEGMENTATION_NETWORKS)}, got {name!r}")
    return build_network(entry, spatial_dims, in_channels, out_channels, channels, **kwargs)


def classification_network(
    name: str = "se2",
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 2,
    channels: Sequence[int] = (8, 16, 32),
    num_rotations: int = 8,
    **kwargs,
) -> nn.Module:
    """The patch classifier called ``name`` (one of :data:`CLASSIFICATION_NETWORKS` of its dimension).

    Args:
        name: ``"se2"``, ``"p4"`` (2D); ``"O"``, ``"Oh"``, ``"D4h"`` (3D); ``"plain"`` (either).
        channels: fields per level of the equivariant net (2D: SE(2, num_rotations); 3D: the named group;
            ``plain`` gets :func:`matched_channels` of the 2D se2 / 3D O default).
        kwargs: passed to the network (``norm``, ``dropout``...).

    Input (B, in_channels, *spatial), output (B, out_channels) logits.
    """
    entry = lookup("classification", name, spatial_dims) if isinstance(name, str) else None
    if entry is None:
        names = [e.name for e in network_entries("classification", spatial_dims)]
        raise ValueError(f"network_name {name!r} with spatial_dims={spatial_dims} is not one of: {names}")
    return build_network(entry, spatial_dims, in_channels, out_channels, channels, num_rotations, **kwargs)
