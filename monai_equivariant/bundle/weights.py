"""The bundles' networks, which say which network a checkpoint belongs to when its weights do not fit.

:func:`bundle_network` builds ``--network_name`` through the factory (``network_def`` of every bundle config)
and registers a ``load_state_dict`` pre-hook on it. Every way a bundle loads weights ends in that call
(``CheckpointLoader`` in evaluate / inference / ``--resume``, ``python -m monai.bundle ckpt_export``), so a
checkpoint of another network is refused with one line, before torch lists every size mismatch::

    checkpoint was trained with network_name=p4 (group p4, |G|=4); this bundle builds network_name=p4m
    (group p4m, |G|=8): run with --network_name p4, or point --ckpt_dir at a p4m model

The group is read from the weights themselves (:func:`weights_group_order`: the group axis of the group
convolutions), so it works for checkpoints written before this existed. A training checkpoint
(``checkpoint_epoch=N.pt``: ``model``, ``optimizer``, ...) given where the network's weights are expected is
named as such, pointing at ``--key_in_ckpt model``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from monai_equivariant.bundle.baselines import lateral_permutation
from monai_equivariant.networks.registry import RegistryView, network_entries

__all__ = ["NETWORK_GROUPS", "bundle_network", "network_groups", "weights_group_order"]

STEERABLE = "steerable"


def _separable_names() -> set[tuple[str, int, str]]:
    return {(e.task, e.spatial_dims, e.name) for e in network_entries() if e.separable}


def _network_groups_table() -> dict[tuple[str, int], dict[str, str]]:
    table: dict[tuple[str, int], dict[str, str]] = {}
    for entry in network_entries():
        table.setdefault((entry.task, entry.spatial_dims), {})[entry.name] = entry.group
    return table


NETWORK_GROUPS: RegistryView = RegistryView(_network_groups_table)
"""(task, spatial_dims) -> network_name -> the group its weights act on ("se2_{N}": num_rotations); a view of
:mod:`monai_equivariant.networks.registry`."""


def network_groups(task: str, spatial_dims: int, num_rotations: int = 8) -> dict[str, tuple[str, int | str]]:
    """network_name -> (group name, |G|) of the bundle's networks (|G| ``"steerable"`` for the escnn net)."""
    from monai_equivariant.groups import get_group

    table = NETWORK_GROUPS.get((str(task), int(spatial_dims)))
    if table is None:
        raise ValueError(f"task/spatial_dims must be one of {sorted(NETWORK_GROUPS)}, got {(task, spatial_dims)}")
    out: dict[str, tuple[str, int | str]] = {}
    for name, group in table.items():
        group = group.format(N=int(num_rotations))
        out[name] = (group, STEERABLE) if group == STEERABLE else (group, get_group(group, int(spatial_dims)).order)
    return out


def weights_separable(state_dict: Mapping[str, Any]) -> bool:
    """True when the weights hold separable group convs (a ``*.pointwise.weight`` entry)."""
    return any(key.endswith(".pointwise.weight") for key in state_dict)


def _network_group(task: str, name: str, spatial_dims: int, num_rotations: int) -> Any:
    """The group of the registered net ``name`` (None for steerable nets and for names the factory will refuse with
    its own message)."""
    from monai_equivariant.groups import as_group
    from monai_equivariant.networks.registry import lookup

    entry = lookup(task, name.lower(), spatial_dims)
    if entry is None or entry.group == STEERABLE:
        return None
    try:
        return as_group(entry.group.replace("{N}", str(num_rotations)), spatial_dims)
    except ValueError:
        return None


def weights_group_order(state_dict: Mapping[str, Any], spatial_dims: int) -> int | str:
    """|G| of the network whose weights these are: the largest group axis of a convolution weight
    ``(C_out, C_in, |G_in|, *k)`` (1 for a plain net), or ``"steerable"`` for escnn's flat ``weights``."""
    orders = [
        int(value.shape[2]) for value in state_dict.values()
        if isinstance(value, torch.Tensor) and value.dim() == int(spatial_dims) + 3
    ]
    if not orders and any(key.endswith(".weights") for key in state_dict):
        return STEERABLE
    return max(orders, default=1)


_TRAINING_KEYS = ("model", "optimizer", "lr_scheduler", "trainer")


def _describe(groups: dict[str, tuple[str, int | str]], order: int | str) -> str:
    names = [name for name, (_, o) in groups.items() if o == order]
    if not names:
        return f"a network over a group of order |G|={order}, which is none of {sorted(groups)}"
    group = groups[names[0]][0]
    size = "" if order == STEERABLE else f", |G|={order}"
    return f"network_name={' or '.join(names)} (group {group}{size})"


def _check_weights(
    module: nn.Module, state_dict: Mapping[str, Any], prefix: str, local_metadata: Any, strict: bool,
    missing_keys: list, unexpected_keys: list, error_msgs: list, *, network_name: str, task: str,
    spatial_dims: int, num_rotations: int,
) -> None:
    """``load_state_dict`` pre-hook: raise ValueError naming the networks when the weights belong to another."""
    if prefix:
        return
    if all(key in state_dict for key in _TRAINING_KEYS[:2]) and isinstance(state_dict.get("model"), Mapping):
        raise ValueError(
            "this is a training checkpoint (checkpoint_epoch=N.pt, entries "
            f"{sorted(k for k in state_dict if not k.startswith('_'))}), not the network's weights: pass "
            "--key_in_ckpt model to ckpt_export, or use models/model.pt"
        )
    own = module.state_dict()
    mismatched = [key for key, value in own.items() if key in state_dict
                  and isinstance(state_dict[key], torch.Tensor) and state_dict[key].shape != value.shape]
    foreign = strict and set(own) != {key for key in state_dict if not key.startswith("_")}
    if not mismatched and not foreign:
        return
    groups = network_groups(task, spatial_dims, num_rotations)
    separable, kind = _separable_names(), weights_separable(state_dict)
    candidates = {name: value for name, value in groups.items()  # the networks these weights can be from
                  if ((task, int(spatial_dims), name) in separable) == kind}
    theirs, ours = weights_group_order(state_dict, spatial_dims), weights_group_order(own, spatial_dims)
    if theirs != ours or kind != weights_separable(own):
        wanted = [name for name, (_, o) in candidates.items() if o == theirs]
        hint = f"run with --network_name {wanted[0]}, or " if wanted else ""
        raise ValueError(
            f"checkpoint was trained with {_describe(candidates, theirs)}; this bundle builds "
            f"{_describe({network_name: groups[network_name]}, ours)}: {hint}point --ckpt_dir at a "
            f"{network_name} model"
        )
    example = (f"{mismatched[0]}: {tuple(state_dict[mismatched[0]].shape)} in the checkpoint, "
               f"{tuple(own[mismatched[0]].shape)} here") if mismatched else \
        f"{len(set(own) ^ set(state_dict))} parameter names differ"
    raise ValueError(
        f"checkpoint is a {_describe(candidates, theirs)} network like this bundle's network_name={network_name}, "
        f"but its layers have other sizes ({example}): was it trained with other --network_channels"
        f"{' or --num_rotations' if task == 'classification' and spatial_dims == 2 else ''}?"
    )


def bundle_network(
    task: str, name: str, spatial_dims: int, num_rotations: int = 8, label_permutation: Any = None, **kwargs: Any
) -> nn.Module:
    """``--network_name name`` built by :func:`~monai_equivariant.networks.factory.segmentation_network` or
    :func:`~monai_equivariant.networks.factory.classification_network` (``task``), with the pre-hook that
    names the network a mismatched checkpoint was trained with (see the module doc).

    Args:
        task: ``"segmentation"`` or ``"classification"``.
        label_permutation: lateral classes (e.g. ``[0, 2, 1, 3]``): a net whose group holds reflections gets the
            lateral head (its output channels swap by it under the reflections); nets without reflections (plain,
            rotations only) keep left and right anyway and are built without it.
        kwargs: passed to the factory (``in_channels``, ``out_channels``, ``channels``, ``norm``...).
    """
    from monai_equivariant.networks import factory

    if task not in ("segmentation", "classification"):
        raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
    group = _network_group(task, str(name), int(spatial_dims), int(num_rotations))
    permutation = None if group is None else lateral_permutation(group, label_permutation, int(spatial_dims))
    if permutation is not None:
        kwargs["label_permutation"] = permutation
    if task == "segmentation":
        net = factory.segmentation_network(name, spatial_dims, **kwargs)
    else:
        net = factory.classification_network(name, spatial_dims, num_rotations=num_rotations, **kwargs)
    hook = functools.partial(_check_weights, network_name=str(name), task=task, spatial_dims=int(spatial_dims),
                             num_rotations=int(num_rotations))
    net.register_load_state_dict_pre_hook(hook)
    return net
