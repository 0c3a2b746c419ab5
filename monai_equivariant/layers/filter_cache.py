"""The eval-mode cache of an expanded filter bank, shared by every layer that builds its filters from parameters.

The rule, in one sentence: a cached bank is reused only while the module is in eval mode with gradients off,
outside every tracer or compiler, and only when the parameters it was built from are *equal in value* (and in
shape, dtype and device) to the parameters now. Comparing values, not version counters or storage pointers,
makes it correct for every way torch code changes weights — ``load_state_dict``, optimizer steps,
``p.data = t``, ``p.data.copy_(t)``, ``p.copy_(t)`` under ``no_grad``, ``.to()``, ``torch.func.functional_call``
and edits through NumPy views — and for parameters created under ``torch.inference_mode()`` (inference tensors
have no version counter). The comparison reads the parameters once per forward; the rebuild it saves writes
|G| times as much.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch
import torch.nn as nn

__all__ = ["FilterCache", "caching_allowed"]

T = TypeVar("T")


def _plain_tensor(t: torch.Tensor) -> bool:
    """A real tensor (not a FakeTensor, functorch wrapper or other subclass used by tracers)."""
    if type(t) not in (torch.Tensor, nn.Parameter):
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(t)


def caching_allowed(module: nn.Module, params: Sequence[torch.Tensor | None]) -> bool:
    """True when a cached bank may be used or stored: eval mode, gradients off, no tracing/scripting/compiling/
    exporting, and real (not fake or wrapped) parameters."""
    if module.training or torch.is_grad_enabled():
        return False
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return all(p is None or _plain_tensor(p) for p in params)


def _same(now: torch.Tensor | None, then: torch.Tensor | None) -> bool:
    if now is None or then is None:
        return now is None and then is None
    return (
        now.shape == then.shape and now.dtype == then.dtype and now.device == then.device and torch.equal(now, then)
    )


class FilterCache:
    """Keeps what ``build()`` returned, with a snapshot of the parameters it was built from (see the module
    docstring for when it is used).

    A plain attribute, not a buffer: state-dict keys never depend on train/eval mode, and neither pickling nor
    ``copy.deepcopy`` carries the cached tensors (a copy starts empty). Owners may call :meth:`clear` to free the
    memory (on ``train()`` and ``_apply()``); correctness never depends on it.
    """

    def __init__(self) -> None:
        self._snapshot: tuple[torch.Tensor | None, ...] | None = None
        self._value: object = None

    @property
    def filled(self) -> bool:
        return self._snapshot is not None

    def clear(self) -> None:
        self._snapshot, self._value = None, None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def __deepcopy__(self, memo: dict) -> "FilterCache":
        return FilterCache()

    def get(self, module: nn.Module, params: Sequence[torch.Tensor | None], build: Callable[[], T]) -> T:
        """``build()``, or its cached result when :func:`caching_allowed` and ``params`` equal the snapshot.

        Where caching is not allowed this is exactly ``build()``: nothing is read from or written to the cache.
        """
        if not caching_allowed(module, params):
            return build()
        snapshot = self._snapshot
        if snapshot is not None and len(snapshot) == len(params) and all(map(_same, params, snapshot)):
            return self._value  # type: ignore[return-value]
        value = build()
        self._snapshot = tuple(None if p is None else p.detach().clone() for p in params)
        self._value = value
        return value
