"""Activation checkpointing that leaves training unchanged: ``torch.utils.checkpoint`` (non-reentrant, RNG state
preserved, so dropout draws the same masks) with batch-norm running statistics updated once per step.

A recomputation runs the segment's batch norms again on the same batch; their outputs use the batch statistics,
so they are the same, but the running statistics would move a second (or, nested, a third) time. Every run after
the first, and every run inside another segment's recomputation, restores them afterwards.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_segment", "frozen_running_stats"]

_STATE = threading.local()


def _recomputing() -> bool:
    return getattr(_STATE, "depth", 0) > 0


@contextlib.contextmanager
def frozen_running_stats(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run a recomputation: the running statistics of every batch norm in ``modules`` are restored on exit (also
    when the recomputation stops early), and nested segments know they are being recomputed."""
    norms = [
        m
        for module in modules
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.running_mean is not None
    ]
    saved = [(m, [b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)]) for m in norms]
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1
        with torch.no_grad():
            for m, values in saved:
                for buffer, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), values):
                    buffer.copy_(value)


def checkpoint_segment(
    function: Callable[..., torch.Tensor], *inputs: torch.Tensor, modules: Sequence[nn.Module]
) -> torch.Tensor:
    """``function(*inputs)`` keeping only ``inputs`` for the backward pass and recomputing the rest there.

    ``modules`` are those ``function`` runs (their batch norms are frozen in recomputations). Outputs, gradients
    and running statistics equal those of ``function(*inputs)`` without checkpointing. Nested calls are allowed.
    """
    calls = [0]

    def run(*args: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 1 and not _recomputing():
            return function(*args)
        with frozen_running_stats(modules):
            return function(*args)

    return checkpoint(run, *inputs, use_reentrant=False, preserve_rng_state=True)
