"""The eval-mode cache of an expanded filter bank, shared by every layer that builds its filters."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch
import torch.nn as nn

__all__ = ["FilterCache"]

T = TypeVar("T")


class FilterCache:
    """Keeps what ``build()`` returned while the module is in eval mode with gradients off, and rebuilds it
    whenever one of the parameters changes (storage, in-place version, dtype or device).

    A plain attribute, not a buffer: state-dict keys never depend on train/eval mode. Owners call
    :meth:`clear` from ``train()`` and ``_apply()``.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: object = None

    @property
    def filled(self) -> bool:
        return self._key is not None

    def clear(self) -> None:
        self._key, self._value = None, None

    def get(self, module: nn.Module, params: Sequence[torch.Tensor | None], build: Callable[[], T]) -> T:
        """``build()``, or its cached result when ``module`` is in eval mode, grad is off and params are unchanged."""
        if module.training or torch.is_grad_enabled():
            self.clear()
            return build()
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params if p is not None)
        if self._key != key:
            self._key, self._value = key, build()
        return self._value  # type: ignore[return-value]
