"""Export equivariant networks to plain torch: group convs become ``nn.ConvNd`` with expanded filters."""

from __future__ import annotations

import copy
import types

import torch.nn as nn

__all__ = ["export", "replace_with_plain", "scriptable"]


def export(module: nn.Module) -> nn.Module:
    """A copy of ``module`` for inference in plain torch: every lifting/group conv becomes an
    ``nn.Conv2d``/``nn.Conv3d`` holding its expanded filter bank (and expanded bias), every group batch norm
    an ``nn.BatchNormNd`` with its statistics repeated over the group. Outputs equal the original's in eval
    mode; the copy is in eval mode, has no dependency on group tables, and can be scripted or traced.

    Modules that define ``to_plain()`` (our convs, and any layer that knows its own plain equivalent) are
    replaced by its result; the rest is already plain torch and is kept.
    """
    exported = copy.deepcopy(module)
    exported.eval()
    if hasattr(exported, "to_plain"):
        return exported.to_plain().eval()
    replace_with_plain(exported)
    return exported


def replace_with_plain(parent: nn.Module) -> None:
    """In place: replace every descendant of ``parent`` that has ``to_plain()`` by its (eval-mode) result."""
    for name, child in list(parent.named_children()):
        if hasattr(child, "to_plain"):
            setattr(parent, name, child.to_plain().eval())
        else:
            replace_with_plain(child)


def scriptable(module: nn.Module) -> nn.Module:
    """Make ``torch.jit.script(module)`` script :func:`export` of its current weights; returns ``module``.

    TorchScript cannot compile the group convs (they expand their weights with Python tables), but it calls a
    module's ``__prepare_scriptable__`` first: this sets that hook on the instance. The module itself is
    unchanged (same state-dict keys, same forward), so bundles can load checkpoints into it and MONAI's
    ``ckpt_export`` writes the plain-torch equivalent.
    """

    module.__prepare_scriptable__ = types.MethodType(_export_for_script, module)  # type: ignore[assignment]
    return module


def _export_for_script(module: nn.Module) -> nn.Module:
    # a bound method: deepcopy rebinds it to the copy, so a copied module exports its own weights
    plain = export(module)
    plain.__dict__.pop("__prepare_scriptable__", None)
    return plain
