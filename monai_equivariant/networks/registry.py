"""The one registry of networks the factory builds by short name (the bundles' ``--network_name``).

Each :class:`NetworkEntry` says how to build a network, how its channels follow from the channels asked for (the
channel rule), which group its weights act on, which grid group its exactness is checked against, and what it is.
The factory (:mod:`~monai_equivariant.networks.factory`), the bundles' override checks
(:data:`monai_equivariant.bundle.overrides.BUNDLE_SPECS`), their checkpoint checks
(:mod:`monai_equivariant.bundle.weights`) and :func:`monai_equivariant.bundle.checked_group` all read it, so adding
a network is one :func:`register` call here.

Networks are imported only when built (the steerable one needs escnn).

To add a network: one :class:`NetworkEntry` in ``_builtin_entries()`` below (or :func:`register` from outside the
package). It then builds by ``--network_name`` in every bundle of its task and dimension, its checkpoints are
recognised by its group, and its exactness is checked against ``checked_group``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

__all__ = ["NETWORKS", "TASKS", "NetworkEntry", "RegistryView", "lookup", "network_entries", "network_names",
           "register"]

TASKS = ("segmentation", "classification")

Channels = tuple[int, ...]


@dataclass(frozen=True)
class NetworkEntry:
    """One network a bundle can pick by name.

    Attributes:
        name: the ``--network_name`` (unique per task and spatial_dims).
        task: ``"segmentation"`` (output (B, C, *spatial)) or ``"classification"`` (output (B, C) logits).
        spatial_dims: 2 or 3.
        build: ``build(channels, num_rotations, **kwargs)`` -> the network; kwargs are ``spatial_dims``,
            ``in_channels``, ``out_channels`` and the rest (``norm``, ``dropout``...).
        channels: the channel rule ``channels(asked, num_rotations)`` -> the fields passed to ``build`` (asked: p4
            fields for segmentation, the equivariant net's fields for classification).
        group: the group its weights act on (``"{N}"`` stands for ``num_rotations``; ``"steerable"`` for escnn).
        checked_group: the grid group its exactness is checked against (the plain nets: their counterparts').
        description: one line for docs and messages.
        separable: its group convs after the lifting are separable (their weights say so: ``*.pointwise.weight``),
            which tells its checkpoints from those of the full net of the same group.
    """

    name: str
    task: str
    spatial_dims: int
    build: Callable[..., nn.Module]
    channels: Callable[[Channels, int], Channels]
    group: str
    checked_group: str
    description: str
    separable: bool = False

    def group_name(self, num_rotations: int = 8) -> str:
        """:attr:`group` with ``{N}`` replaced by ``num_rotations``."""
        return self.group.format(N=int(num_rotations))


NETWORKS: dict[tuple[str, int, str], NetworkEntry] = {}
"""(task, spatial_dims, name) -> entry, in registration order (the order bundles list the names in)."""


def register(entry: NetworkEntry) -> NetworkEntry:
    """Add ``entry`` (ValueError if its task is unknown or its name is taken for that task and dimension)."""
    if entry.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {entry.task!r}")
    key = (entry.task, int(entry.spatial_dims), entry.name)
    if key in NETWORKS:
        raise ValueError(f"network {entry.name!r} is already registered for {entry.task} in {entry.spatial_dims}D")
    NETWORKS[key] = entry
    return entry


def network_entries(task: str | None = None, spatial_dims: int | None = None) -> list[NetworkEntry]:
    """The registered entries of ``task`` and ``spatial_dims`` (None: any), in registration order."""
    return [e for (t, d, _), e in NETWORKS.items()
            if (task is None or t == task) and (spatial_dims is None or d == int(spatial_dims))]


def network_names(task: str | None = None, spatial_dims: int | None = None) -> tuple[str, ...]:
    """The names of :func:`network_entries` (each once), in registration order."""
    return tuple(dict.fromkeys(e.name for e in network_entries(task, spatial_dims)))


def lookup(task: str, name: str, spatial_dims: int) -> NetworkEntry | None:
    """The entry called ``name`` for ``task`` in ``spatial_dims`` D, or None."""
    return NETWORKS.get((task, int(spatial_dims), name))


class RegistryView(Mapping):
    """A read-only mapping computed from the registry on every access (so it includes entries registered later):
    the tables other modules publish (the factory's names, the bundles' groups) are views, never copies."""

    def __init__(self, table: Callable[[], Mapping[Any, Any]]) -> None:
        self._table = table

    def __getitem__(self, key: Any) -> Any:
        return self._table()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return repr(dict(self._table()))


# ------------------------------------------------------------------------------------------- builders and rules


def _same(channels: Channels, num_rotations: int) -> Channels:
    return channels


def _matched(from_group: str, to_group: str, spatial_dims: int) -> Callable[[Channels, int], Channels]:
    """The channel rule giving the parameters of ``from_group`` fields under ``to_group`` (``{N}``: num_rotations)."""

    def rule(channels: Channels, num_rotations: int) -> Channels:
        from monai_equivariant.networks.nets.group_unet import matched_channels

        source, target = (g.format(N=int(num_rotations)) for g in (from_group, to_group))
        return matched_channels(channels, source, target, spatial_dims)

    return rule


def _group_unet(group: str, separable: bool = False) -> Callable[..., nn.Module]:
    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.group_unet import GroupUNet

        return GroupUNet(channels=channels, group=group, separable=separable, **kwargs)

    return build


def _se2_unet(rotations: int) -> Callable[..., nn.Module]:
    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.se2 import SE2UNet

        return SE2UNet(channels=channels, num_rotations=rotations, **kwargs)

    return build


def _steerable_unet(rotations: int) -> Callable[..., nn.Module]:
    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets import SteerableUNet

        return SteerableUNet(channels=channels, num_rotations=rotations, **kwargs)

    return build


def _half(channels: Channels, num_rotations: int) -> Channels:
    """Regular C8 fields with the p4 net's feature-map widths (SteerableUNet's own convention): half the fields."""
    return tuple(max(1, c // 2) for c in channels)


def _se2_cnn(rotations: int | None) -> Callable[..., nn.Module]:
    """SE2CNN with ``rotations`` orientations (None: the bundle's ``num_rotations``)."""

    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.se2 import SE2CNN

        return SE2CNN(num_rotations=int(num_rotations) if rotations is None else rotations, channels=channels,
                      **kwargs)

    return build


def _group_cnn(group: str, separable: bool = False) -> Callable[..., nn.Module]:
    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.group_cnn import GroupCNN

        return GroupCNN(channels=channels, group=group, separable=separable, **kwargs)

    return build


def _with_default_plan(channels: Channels, kwargs: dict) -> dict:
    """``kwargs`` completed with :func:`~monai_equivariant.networks.nets.dyn_unet.default_plan` for ``len(channels)``
    levels (what kwargs give wins)."""
    from monai_equivariant.networks.nets.dyn_unet import default_plan

    return {**default_plan(int(kwargs.get("spatial_dims", 3)), len(channels)), **kwargs}


def _dyn_unet(group: str) -> Callable[..., nn.Module]:
    """GroupDynUNet with ``channels`` as its ``filters`` and, unless given in kwargs, the default plan."""

    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.dyn_unet import GroupDynUNet

        return GroupDynUNet(filters=channels, group=group, **_with_default_plan(channels, kwargs))

    return build


def _monai_dynunet(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
    """MONAI's own ``DynUNet`` with ``filters=channels`` and, unless given in kwargs, the default plan (its sides:
    multiples of the strides' products, not the twin's odd sides)."""
    from monai.networks.nets import DynUNet

    return DynUNet(filters=channels, **_with_default_plan(channels, kwargs))


def _basic_features(channels: Channels, num_rotations: int) -> Channels:
    """BasicUNet's six features from the asked channels: five encoder levels (fewer: the last doubled; more: the first
    five), then the first level's width for the last up-sampling step (MONAI's pattern (32, 32, ..., 256, 32))."""
    widths = list(channels[:5])
    while len(widths) < 5:
        widths.append(2 * widths[-1])
    return (*widths, widths[0])


def _basic_unet(group: str) -> Callable[..., nn.Module]:
    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.group_basic_unet import GroupBasicUNet

        return GroupBasicUNet(features=channels, group=group, **kwargs)

    return build


def _segresnet(group: str) -> Callable[..., nn.Module]:
    """GroupSegResNet with the first asked width as ``init_filters`` (MONAI's blocks (1, 2, 2, 4): sides multiples of
    8); a ``dropout`` kwarg is its ``dropout_prob``."""

    def build(channels: Channels, num_rotations: int, **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.group_segresnet import GroupSegResNet

        if "dropout" in kwargs:
            kwargs["dropout_prob"] = kwargs.pop("dropout")
        return GroupSegResNet(init_filters=channels[0], group=group, **kwargs)

    return build


def _builtin_entries() -> Sequence[NetworkEntry]:
    seg, cls = "segmentation", "classification"
    return (
        NetworkEntry("p4", seg, 2, _group_unet("p4"), _same, "p4", "p4", "P4UNet: 90° rotations (default)"),
        NetworkEntry("p4m", seg, 2, _group_unet("p4m"), _matched("p4", "p4m", 2), "p4m", "p4m",
                     "GroupUNet(group='p4m'): 90° rotations and reflections"),
        NetworkEntry("se2", seg, 2, _se2_unet(12), _matched("p4", "se2_12", 2), "se2_12", "p4",
                     "SE2UNet(num_rotations=12): 30° rotations, interpolated kernels"),
        NetworkEntry("steerable", seg, 2, _steerable_unet(8), _half, "steerable", "p4",
                     "SteerableUNet(num_rotations=8) (escnn): steerable filters, regular C8 fields"),
        NetworkEntry("plain", seg, 2, _group_unet("trivial"), _matched("p4", "trivial", 2), "trivial", "p4",
                     "GroupUNet(group='trivial'): the plain U-Net of matched parameters"),
        NetworkEntry("se2", cls, 2, _se2_cnn(None), _same, "se2_{N}", "p4",
                     "SE2CNN(num_rotations=8): 2D, logits invariant to 45° rotations (exact at 90°) (default, 2D)"),
        NetworkEntry("p4", cls, 2, _se2_cnn(4), _same, "se2_4", "p4",
                     "SE2CNN(num_rotations=4): 2D, exactly invariant to 90° rotations"),
        NetworkEntry("plain", cls, 2, _se2_cnn(1), _matched("se2_{N}", "trivial", 2), "trivial", "p4",
                     "SE2CNN with N=1: 2D, the plain CNN of matched parameters"),
        NetworkEntry("O", cls, 3, _group_cnn("O"), _same, "O", "O",
                     "GroupCNN(group='O'): 3D, exactly invariant to the 24 cube rotations (default, 3D)"),
        NetworkEntry("Oh", cls, 3, _group_cnn("Oh"), _same, "Oh", "Oh",
                     "GroupCNN(group='Oh'): 3D, cube rotations and reflections"),
        NetworkEntry("D4h", cls, 3, _group_cnn("D4h"), _same, "D4h", "D4h",
                     "GroupCNN(group='D4h'): 3D, in-plane 90° rotations and flips"),
        NetworkEntry("plain", cls, 3, _group_cnn("trivial"), _matched("O", "trivial", 3), "trivial", "O",
                     "GroupCNN(group='trivial'): 3D, the plain CNN of matched parameters"),
        NetworkEntry("dynunet_d4h", seg, 3, _dyn_unet("D4h"), _same, "D4h", "D4h",
                     "GroupDynUNet(group='D4h'): 3D nnU-Net, in-plane 90° rotations and flips (anisotropic plans)"),
        NetworkEntry("dynunet", seg, 3, _monai_dynunet, _matched("D4h", "trivial", 3), "trivial", "D4h",
                     "monai.networks.nets.DynUNet (nnU-Net): 3D, the plain net of the D4h twin's parameters"),
        NetworkEntry("dynunet_plain", seg, 3, _dyn_unet("trivial"), _matched("D4h", "trivial", 3), "trivial", "D4h",
                     "GroupDynUNet(group='trivial'): 3D, the D4h twin's plan and odd sides without the group, matched "
                     "parameters"),
        NetworkEntry("p4_separable", seg, 2, _group_unet("p4", separable=True), _same, "p4", "p4",
                     "GroupUNet(group='p4', separable=True): the p4 fields with separable group convs (about 1/9 "
                     "of the weights and mixing FLOPs)", separable=True),
        NetworkEntry("O_separable", cls, 3, _group_cnn("O", separable=True), _same, "O", "O",
                     "GroupCNN(group='O', separable=True): 3D, the O fields with separable group convs (about 1/27 "
                     "of the weights and mixing FLOPs)", separable=True),
        NetworkEntry("basicunet_p4", seg, 2, _basic_unet("p4"), _basic_features, "p4", "p4",
                     "GroupBasicUNet(group='p4'): MONAI's BasicUNet, 90° rotations (sides multiples of 16)"),
        NetworkEntry("segresnet_p4", seg, 2, _segresnet("p4"), _same, "p4", "p4",
                     "GroupSegResNet(group='p4'): MONAI's SegResNet, 90° rotations (sides multiples of 8)"),
    )


for _entry in _builtin_entries():
    register(_entry)


# ------------------------------------------------------------------------------------ ResNet classifiers (issue 21)


def _resnet_stages(rule: Callable[[Channels, int], Channels]) -> Callable[[Channels, int], Channels]:
    """The four stage widths of a ResNet from the asked channels (fewer than four: the last doubled; more: the first
    four), then ``rule``."""

    def stages(channels: Channels, num_rotations: int) -> Channels:
        widths = list(channels[:4])
        while len(widths) < 4:
            widths.append(2 * widths[-1])
        return rule(tuple(widths), num_rotations)

    return stages


RESNET_STEM = {"conv1_t_stride": 1, "no_max_pool": True}
"""The stem of the registered ResNets (MONAI's arguments): no down-sampling before the three strided stages, so the
input sides are multiples of 8 (MONAI's default stem, max-pool 2, would make them multiples of 16), which the
histopathology bundle's sizes (8·n, PCam's 96) are."""


def _group_resnet(group: str) -> Callable[..., nn.Module]:
    """GroupResNet with MONAI's resnet10 layout (basic blocks, one per stage), :data:`RESNET_STEM` and ``channels``
    as its fields."""

    def build(channels: Channels, num_rotations: int, spatial_dims: int, in_channels: int, out_channels: int,
              **kwargs) -> nn.Module:
        from monai_equivariant.networks.nets.group_resnet import GroupResNet

        return GroupResNet("basic", (1, 1, 1, 1), channels, spatial_dims=spatial_dims, n_input_channels=in_channels,
                           num_classes=out_channels, group=group, **{**RESNET_STEM, **kwargs})

    return build


def _monai_resnet(channels: Channels, num_rotations: int, spatial_dims: int, in_channels: int, out_channels: int,
                  **kwargs) -> nn.Module:
    """MONAI's own ResNet (resnet10 layout, :data:`RESNET_STEM`) with ``block_inplanes=channels``; a bare
    ``norm="instance"`` (the bundles' default) is made affine: MONAI's ResNet initialises every norm's weight and fails
    on an instance norm without one."""
    from monai.networks.nets import ResNet

    if isinstance(kwargs.get("norm"), str) and kwargs["norm"].lower() == "instance":
        kwargs["norm"] = ("instance", {"affine": True})

    return ResNet("basic", [1, 1, 1, 1], list(channels), spatial_dims=spatial_dims, n_input_channels=in_channels,
                  num_classes=out_channels, **{**RESNET_STEM, **kwargs})


def resnet_entries() -> tuple[NetworkEntry, ...]:
    """The ResNet classifiers' entries ("resnet_p4" 2D, "resnet_O" 3D, and the plain twin "resnet" = MONAI's ResNet
    at about the same parameters), with :data:`RESNET_STEM` (input sides multiples of 8).

    The 2D entries are registered (below): the histopathology bundle's inputs (8·n, PCam's 96) fit. The 3D ones are
    not: every entry of a task and dimension is offered by that task's bundles, and the nodule bundle declares inputs
    of 4·n voxels and NoduleMNIST3D's cubes are 28³, which no ResNet with three strided stages takes. Register them
    (``register(entry)``) where the inputs fit.
    """
    cls = "classification"
    return (
        NetworkEntry("resnet_p4", cls, 2, _group_resnet("p4"), _resnet_stages(_same), "p4", "p4",
                     "GroupResNet(group='p4'): 2D ResNet-10 layout, logits invariant to 90° rotations"),
        NetworkEntry("resnet", cls, 2, _monai_resnet, _resnet_stages(_matched("p4", "trivial", 2)), "trivial", "p4",
                     "monai.networks.nets.ResNet: 2D, the plain twin of resnet_p4 at about its parameters"),
        NetworkEntry("resnet_O", cls, 3, _group_resnet("O"), _resnet_stages(_same), "O", "O",
                     "GroupResNet(group='O'): 3D ResNet-10 layout, logits invariant to the 24 cube rotations"),
        NetworkEntry("resnet", cls, 3, _monai_resnet, _resnet_stages(_matched("O", "trivial", 3)), "trivial", "O",
                     "monai.networks.nets.ResNet: 3D, the plain twin of resnet_O at about its parameters"),
    )


for _entry in resnet_entries():
    if _entry.spatial_dims == 2:
        register(_entry)
