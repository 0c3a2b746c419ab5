"""The eval-mode cache of an expanded filter bank, shared by every layer that builds its filters from parameters.

The rule, in one sentence: a cached bank is reused only while the module is in eval mode with gradients off,
outside every tracer or compiler, and only when the parameters it was built from are *equal in value* (and in
shape, dtype and device) to the parameters now. Comparing values, not version counters or storage pointers,
makes it correct for every way torch code changes weights — ``load_state_dict``, optimizer steps,
``p.data = t``, ``p.data.copy_(t)``, ``p.copy_(t)`` under ``no_grad``, ``.to()``, ``torch.func.functional_call``
and edits through NumPy views — and for parameters created under ``torch.inference_mode()`` (inference tensors
have no version counter). The comparison reads the parameters once per forward (bytewise, at memory speed);
the rebuild it saves writes |G| times as much. Where even that read matters (many small inference forwards),
:func:`frozen_filters` skips it inside a block and compares once on leaving it, raising if anything changed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.nn as nn

__all__ = ["FilterCache", "caching_allowed", "frozen_filters", "plain_tensor"]

T = TypeVar("T")


def plain_tensor(t: torch.Tensor) -> bool:
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
    return all(p is None or plain_tensor(p) for p in params)


def _same(now: torch.Tensor | None, then: torch.Tensor | None) -> bool:
    """Equal shape, dtype, device and values; large CPU tensors are compared by bytes (a NaN weight still finds
    its bank there, and 0.0 and -0.0 differ: either way a bank is reused only for the weight it was built from)."""
    if now is None or then is None:
        return now is None and then is None
    if now.shape != then.shape or now.dtype != then.dtype or now.device != then.device:
        return False
    if (now.device.type == "cpu" and now.numel() > 4096 and now.is_contiguous() and then.is_contiguous()
            and not (now.is_neg() or now.is_conj() or then.is_neg() or then.is_conj())):
        return _same_bytes(now, then)
    return torch.equal(now, then)


def _same_bytes(now: torch.Tensor, then: torch.Tensor) -> bool:
    """Bytewise equality of two contiguous CPU tensors, at memory speed (NumPy compares 8-byte words about 3×
    faster than ``torch.equal`` compares floats on one CPU thread)."""
    a = now.detach().reshape(-1).view(torch.uint8).numpy()
    b = then.detach().reshape(-1).view(torch.uint8).numpy()
    word = np.uint64 if a.size % 8 == 0 else np.uint8
    return bool(np.array_equal(a.view(word), b.view(word)))


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
        self._trust_depth = 0  # > 0 inside frozen_filters(): a filled cache is used without comparing
        self._seen: tuple[torch.Tensor | None, ...] | None = None  # the parameters of the last trusted lookup

    @property
    def filled(self) -> bool:
        return self._snapshot is not None

    def clear(self) -> None:
        self._snapshot, self._value, self._seen = None, None, None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]  # a copy starts empty, outside any frozen_filters() block

    def __deepcopy__(self, memo: dict) -> "FilterCache":
        return FilterCache()

    def get(self, module: nn.Module, params: Sequence[torch.Tensor | None], build: Callable[[], T]) -> T:
        """``build()``, or its cached result when :func:`caching_allowed` and ``params`` equal the snapshot.

        Where caching is not allowed this is exactly ``build()``: nothing is read from or written to the cache.
        """
        if not caching_allowed(module, params):
            return build()
        snapshot = self._snapshot
        if self._trust_depth and snapshot is not None:
            self._seen = tuple(params)
            return self._value  # type: ignore[return-value]
        if snapshot is not None and len(snapshot) == len(params) and all(map(_same, params, snapshot)):
            return self._value  # type: ignore[return-value]
        value = build()
        self._snapshot = tuple(None if p is None else p.detach().clone() for p in params)
        self._value = value
        return value

    def trust(self) -> None:
        """Enter a :func:`frozen_filters` block."""
        self._trust_depth += 1

    def release(self) -> bool:
        """Leave a :func:`frozen_filters` block; False when the parameters of a trusted lookup no longer equal the
        snapshot (the cache is then cleared)."""
        self._trust_depth = max(0, self._trust_depth - 1)
        seen, snapshot = self._seen, self._snapshot
        if self._trust_depth:
            return True
        self._seen = None
        if seen is None or snapshot is None:
            return True
        if len(seen) == len(snapshot) and all(map(_same, seen, snapshot)):
            return True
        self.clear()
        return False


def frozen_filters(module: nn.Module) -> ContextManager[nn.Module]:
    """Within the block, every layer of ``module`` reuses its cached filter bank without comparing its
    parameters on each forward (eval mode, no gradients: otherwise nothing changes). For repeated inference
    (sliding windows, test-time ensembles, benchmarks) on small inputs, where reading every parameter per forward
    costs a few percent.

    The parameters are compared once, on leaving the block: if any changed inside it, ``RuntimeError`` (the
    forwards inside used the filters of the old values), and the stale banks are dropped. So a result is never
    silently stale, except where a change is undone again before the block ends.

    Example::

        net.eval()
        with torch.no_grad(), frozen_filters(net):
            for patch in patches:
                out = net(patch)
    """
    if not isinstance(module, nn.Module):  # checked at the call, not first inside the with block
        raise TypeError(
            f"frozen_filters expects a torch.nn.Module (a network or layer whose filter banks to freeze), got "
            f"{type(module).__name__} {module!r}"
        )
    return _frozen_filters(module)


@contextmanager
def _frozen_filters(module: nn.Module) -> Iterator[nn.Module]:
    caches = [m._cache for m in module.modules() if isinstance(getattr(m, "_cache", None), FilterCache)]
    for cache in caches:
        cache.trust()
    failed = True
    try:
        yield module
        failed = False
    finally:
        stale = [cache for cache in caches if not cache.release()]
        if stale and not failed:
            raise RuntimeError(
                f"parameters of {len(stale)} layer(s) changed inside frozen_filters(): the forwards inside the block "
                "used filter banks built from the old values; change weights outside the block"
            )
