"""The export protocol of the core: a layer that knows its plain-torch equivalent says so with ``to_plain()``
(:class:`ExportsToPlain`), and :func:`export` replaces every such layer of a network by its result.

A *plain* export holds only torch modules (``nn.ConvNd``, ``nn.BatchNormNd``, ``nn.InstanceNormNd``, ``nn.MaxPoolNd``
...): no class of this package, no group tables; it runs, saves and scripts without ``monai_equivariant``.
"""

from __future__ import annotations

import copy
import functools
from typing import Protocol, runtime_checkable

import torch.nn as nn

__all__ = ["ExportsToPlain", "ScriptsAsExport", "export", "replace_with_plain", "scriptable"]


@runtime_checkable
class ExportsToPlain(Protocol):
    """A module with a plain-torch equivalent: ``to_plain()`` returns torch modules only, giving the same outputs
    in eval mode (export is for inference)."""

    def to_plain(self) -> nn.Module:
        ...


class ScriptsAsExport:
    """Mixin for networks: ``torch.jit.script(net)`` (and MONAI's ``convert_to_torchscript``/``ckpt_export``)
    script :func:`export` of the current weights — plain ``nn.ConvNd`` with the expanded banks, eval mode.

    A class attribute, not a per-instance hook, so networks pickle and ``torch.save``/``torch.load`` like any
    module. TorchScript calls ``__prepare_scriptable__`` before compiling; what it gets is a copy, so the network
    itself is never changed (same state-dict keys, same forward, still trainable).
    """

    def __prepare_scriptable__(self) -> nn.Module:
        return export(self)  # type: ignore[arg-type]


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
    if isinstance(exported, ExportsToPlain):
        return exported.to_plain().eval()
    replace_with_plain(exported)
    return exported


def replace_with_plain(parent: nn.Module) -> None:
    """In place: replace every descendant of ``parent`` that has ``to_plain()`` by its (eval-mode) result."""
    for name, child in list(parent.named_children()):
        if isinstance(child, ExportsToPlain):
            setattr(parent, name, child.to_plain().eval())
        else:
            replace_with_plain(child)


def scriptable(module: nn.Module) -> nn.Module:
    """Make ``torch.jit.script(module)`` script :func:`export` of its current weights; returns ``module``.

    The package's networks already do this (:class:`ScriptsAsExport`), so for them this is a no-op. For other
    modules it sets a picklable hook on the instance (a ``functools.partial``, which ``copy.deepcopy`` rebinds to
    the copy and pickle stores by reference).
    """
    if hasattr(type(module), "__prepare_scriptable__"):
        return module
    module.__prepare_scriptable__ = functools.partial(_export_for_script, module)  # type: ignore[assignment]
    return module


def _export_for_script(module: nn.Module) -> nn.Module:
    plain = export(module)
    plain.__dict__.pop("__prepare_scriptable__", None)
    return plain
