"""The eval-mode cache of an expanded filter bank, shared by every layer that builds its filters from parameters.

When a bank is reused: only while the module is in eval mode with gradients off, outside every tracer or
compiler, and only while the parameters it was built from are unchanged. What "unchanged" means is a setting,
:func:`filter_cache_check`:

- ``"version"`` (the default): the same parameter object, the same storage (the cache holds a reference to it,
  so its memory cannot be reused while cached), storage offset, shape, stride, dtype and device, and the same
  ``_version``, PyTorch's in-place counter of a tensor. No value is read: an eval forward costs a few attribute
  reads per parameter, no copy of the parameters and, on a GPU, no host sync. This sees every change that goes
  through PyTorch's in-place ops or replaces the tensor: optimizer steps (the fused kernels bump no counter:
  every ``torch.optim`` step is recorded by a global step hook instead), ``load_state_dict`` (also with
  ``assign=True``), ``p.copy_(t)``/``p.mul_(c)`` under ``no_grad`` or ``inference_mode``, ``p.data = t``,
  ``p.set_(...)``, ``.to()``/``.half()`` (also with ``torch.__future__.set_swap_module_params_on_conversion``),
  ``torch.utils.swap_tensors``, replacing the parameter, ``torch.func.functional_call``.
  It does **not** see writes that bypass the counter: in-place ops on ``p.data`` (``p.data.mul_(2)``,
  ``p.data.copy_(t)``: ``.data`` is a tensor with a fresh counter), writes through NumPy or DLPack views, and
  kernels outside PyTorch's ops. After such an edit, refresh the caches: :func:`clear_filter_caches` or
  ``net.eval()`` again (every layer clears its cache on ``train(mode)`` and on ``.to()``), or use ``"values"``.
- ``"values"``: the parameters are compared by value (and shape, dtype and device) with a copy kept at build
  time, as before this setting existed: every edit is seen, at the cost of reading every parameter per forward
  (1.06–1.07× the plain export for a P4UNet at batch 4, 64² on one CPU thread; a host sync per layer on a GPU)
  and of one copy of the parameters.

Why the default changed (issue 22 item 4): until then every eval forward compared every parameter with a copy
by value — 1.06–1.07× the plain export, a host sync per layer on a GPU and a second copy of the parameters — to
also catch ``.data`` and NumPy edits, which are rare and done on purpose; now those need a refresh or
``"values"``, and the check costs 0.001 of that forward.

Parameters created under ``torch.inference_mode()`` (inference tensors) have no version counter: they are
always compared by value. For many small inference forwards in ``"values"`` mode, :func:`frozen_filters` skips
the comparison inside a block and checks once on leaving it, raising if anything it can see changed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["FilterCache", "caching_allowed", "clear_filter_caches", "filter_cache_check", "frozen_filters",
           "plain_tensor"]

T = TypeVar("T")
CHECKS = ("version", "values")
_check = "version"  # the process-wide setting of filter_cache_check()


class filter_cache_check:  # noqa: N801  # a function that also works as a context manager, as set_grad_enabled
    """Set how cached filter banks are checked against the parameters (module docstring): ``"version"`` (the
    default: identity, storage and version counter, no value read) or ``"values"`` (every parameter compared by
    value on each eval forward: sees edits through ``.data`` and NumPy views too).

    Takes effect at the call, for the whole process (every thread); used as a context manager, the previous setting is restored
    on leaving the block::

        filter_cache_check("values")          # from now on
        with filter_cache_check("values"):    # only inside the block
            out = net(x)

    ``filter_cache_check.current()`` returns the setting in force.
    """

    def __init__(self, check: str) -> None:
        global _check
        if not isinstance(check, str) or check not in CHECKS:
            raise ValueError(f"filter_cache_check expects one of {CHECKS} (how cached filter banks are checked), "
                             f"got {check!r}")
        self.previous, _check = _check, check

    def __enter__(self) -> "filter_cache_check":
        return self

    def __exit__(self, *exc: object) -> None:
        global _check
        _check = self.previous

    @staticmethod
    def current() -> str:
        return _check


_marks: WeakIdKeyDictionary = WeakIdKeyDictionary()  # parameter -> optimizer steps that held it
_steps = 0  # optimizer steps of the process, so that a lookup reads _marks only after a step


def _after_optimizer_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    """Marks every parameter of a ``torch.optim`` optimizer after its step: fused kernels (``fused=True``) write
    the parameters without bumping their version counter."""
    global _steps
    for group in optimizer.param_groups:
        for p in group["params"]:
            _marks[p] = _marks.get(p, 0) + 1
    _steps += 1


_step_hook = register_optimizer_step_post_hook(_after_optimizer_step)


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


def _layout(p: torch.Tensor) -> tuple:
    """What the version check compares besides identity and storage: version counter, offset, shape, stride,
    dtype, device."""
    return p._version, p.storage_offset(), p.shape, p.stride(), p.dtype, p.device


class _Entry(NamedTuple):
    """What a bank was built from, for one parameter."""

    param: torch.Tensor
    storage: torch.UntypedStorage | None  # None for an inference tensor (compared by value only)
    layout: tuple
    mark: int  # optimizer steps that held it
    value: torch.Tensor | None  # a copy, kept when checking by value or for an inference tensor

    @staticmethod
    def of(p: torch.Tensor | None, by_value: bool) -> "_Entry | None":
        if p is None:
            return None
        if p.is_inference():  # no version counter
            return _Entry(p, None, (), 0, p.detach().clone())
        return _Entry(p, p.untyped_storage(), _layout(p), _marks.get(p, 0), p.detach().clone() if by_value else None)

    def unchanged(self, p: torch.Tensor, by_value: bool, stepped: bool) -> bool:
        """``p`` is what this entry recorded: by value, or by identity, storage, layout and version (and, when an
        optimizer stepped since, its step mark)."""
        if by_value or self.storage is None or p.is_inference():
            return self.value is not None and _same(p, self.value)
        return (p is self.param and p.untyped_storage() is self.storage and _layout(p) == self.layout
                and (not stepped or _marks.get(p, 0) == self.mark))


class _Snapshot:
    """The entries of the parameters a bank was built from, and the optimizer step count at the last match."""

    def __init__(self, params: Sequence[torch.Tensor | None], by_value: bool) -> None:
        self.entries = tuple(_Entry.of(p, by_value) for p in params)
        self.has_values = all(e is None or e.value is not None for e in self.entries)
        self.steps = _steps

    def matches(self, params: Sequence[torch.Tensor | None], by_value: bool) -> bool:
        entries = self.entries
        if len(entries) != len(params):
            return False
        stepped = self.steps != _steps
        for p, e in zip(params, entries):
            if p is None or e is None:
                if p is not e:
                    return False
            elif not e.unchanged(p, by_value, stepped):
                return False
        self.steps = _steps
        return True


class FilterCache:
    """Keeps what ``build()`` returned, with a snapshot of the parameters it was built from (see the module
    docstring for when it is used).

    A plain attribute, not a buffer: state-dict keys never depend on train/eval mode, and neither pickling nor
    ``copy.deepcopy`` carries the cached tensors (a copy starts empty). Owners call :meth:`clear` on ``train()``
    (so ``net.eval()`` refreshes every cache) and ``_apply()``.
    """

    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None
        self._value: object = None
        self._trust_depth = 0  # > 0 inside frozen_filters(): a filled cache is used without checking
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
        """``build()``, or its cached result when :func:`caching_allowed` and ``params`` are unchanged since
        (checked as :func:`filter_cache_check` says).

        Where caching is not allowed this is exactly ``build()``: nothing is read from or written to the cache.
        """
        if not caching_allowed(module, params):
            return build()
        by_value = _check == "values"
        snapshot = self._snapshot
        if snapshot is not None and (snapshot.has_values or not by_value):
            if self._trust_depth:
                self._seen = tuple(params)
                return self._value  # type: ignore[return-value]
            if snapshot.matches(params, by_value):
                return self._value  # type: ignore[return-value]
        value = build()
        self._snapshot = _Snapshot(params, by_value)
        self._value = value
        return value

    def trust(self) -> None:
        """Enter a :func:`frozen_filters` block."""
        self._trust_depth += 1

    def release(self) -> bool:
        """Leave a :func:`frozen_filters` block; False when the parameters of a trusted lookup changed since the
        snapshot, as far as the check in force can see (the cache is then cleared)."""
        self._trust_depth = max(0, self._trust_depth - 1)
        seen, snapshot = self._seen, self._snapshot
        if self._trust_depth:
            return True
        self._seen = None
        if seen is None or snapshot is None:
            return True
        if snapshot.matches(seen, _check == "values" and snapshot.has_values):
            return True
        self.clear()
        return False


def _caches(module: nn.Module, caller: str) -> list[FilterCache]:
    """The filter caches of ``module`` and its submodules; TypeError naming ``caller`` for a non-module."""
    if not isinstance(module, nn.Module):  # checked at the call, not first inside a with block
        raise TypeError(
            f"{caller} expects a torch.nn.Module (a network or layer whose filter banks to "
            f"{'freeze' if caller == 'frozen_filters' else 'clear'}), got {type(module).__name__} {module!r}"
        )
    return [m._cache for m in module.modules() if isinstance(getattr(m, "_cache", None), FilterCache)]


def clear_filter_caches(module: nn.Module) -> int:
    """Drop the cached filter bank of every layer of ``module`` (the next eval forward builds them again); returns
    how many layers hold a cache. The refresh after an edit the default check cannot see (``p.data.mul_``, a
    NumPy view); ``module.eval()`` does the same."""
    caches = _caches(module, "clear_filter_caches")
    for cache in caches:
        cache.clear()
    return len(caches)


def frozen_filters(module: nn.Module) -> ContextManager[nn.Module]:
    """Within the block, every layer of ``module`` reuses its cached filter bank without checking its parameters
    on each forward (eval mode, no gradients: otherwise nothing changes). Worth it in ``"values"`` mode
    (:func:`filter_cache_check`), where every forward reads every parameter; in the default mode it saves a few
    attribute reads per layer.

    The parameters are checked once, on leaving the block, as the check in force can see: if any changed inside
    it, ``RuntimeError`` (the forwards inside used the filters of the old values), and the stale banks are
    dropped. So a result is never silently stale, except where a change is undone again before the block ends
    or (in the default mode) is invisible to the version counter.

    Example::

        net.eval()
        with torch.no_grad(), frozen_filters(net):
            for patch in patches:
                out = net(patch)
    """
    return _frozen_filters(module, _caches(module, "frozen_filters"))


@contextmanager
def _frozen_filters(module: nn.Module, caches: list[FilterCache]) -> Iterator[nn.Module]:
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
