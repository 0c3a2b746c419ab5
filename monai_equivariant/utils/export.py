"""Export equivariant networks to plain torch: group convs become ``nn.ConvNd`` with expanded filters."""

from __future__ import annotations

import copy

import torch.nn as nn

__all__ = ["export"]


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
    _replace(exported)
    return exported


def _replace(parent: nn.Module) -> None:
    for name, child in list(parent.named_children()):
        if hasattr(child, "to_plain"):
            setattr(parent, name, child.to_plain().eval())
        else:
            _replace(child)
