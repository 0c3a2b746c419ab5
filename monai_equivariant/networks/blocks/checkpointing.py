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
    function: Callable[..., torch.Tensor],
    *inputs: torch.Tensor,
    modules: Sequence[nn.Module],
    ends_with_chunked_conv: bool = False,
) -> torch.Tensor:
    """``function(*inputs)`` keeping only ``inputs`` for the backward pass and recomputing the rest there.

    ``modules`` are those ``function`` runs (their batch norms are frozen in recomputations). Outputs, gradients
    and running statistics equal those of ``function(*inputs)`` without checkpointing. Nested calls are allowed.
    ``ends_with_chunked_conv``: ``function``'s last op is :func:`chunked_backward_conv`; its own recomputation
    then skips that convolution's forward (the backward pass needs only its inputs, and a recomputation's output
    is discarded).
    """
    calls = [0]

    def run(*args: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 1 and not _recomputing():
            return function(*args)
        with frozen_running_stats(modules):
            if calls[0] == 1 or not ends_with_chunked_conv:
                return function(*args)
            _STATE.skip_conv_forward = True
            try:
                return function(*args)
            finally:
                _STATE.skip_conv_forward = False

    return checkpoint(run, *inputs, use_reentrant=False, preserve_rng_state=True)


class _BatchChunkedConv(torch.autograd.Function):
    """``F.conv{2,3}d(x, weight, bias, padding=padding)``, whose backward runs ``chunk`` samples at a time: the
    convolution backward's workspace (on CPU several times the input's size) then scales with one chunk instead of
    the whole batch. Same forward; gradients equal up to the summation order of the weight gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int, chunk: int):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.chunk, ctx.has_bias = int(padding), int(chunk), bias is not None
        if getattr(_STATE, "skip_conv_forward", False):  # a recomputation whose output is discarded
            _STATE.skip_conv_forward = False
            shape = [x.shape[0], weight.shape[0]] + [n + 2 * padding - k + 1 for n, k in zip(x.shape[2:], weight.shape[2:])]
            return x.new_zeros(()).expand(shape)
        conv = torch.nn.functional.conv2d if x.dim() == 4 else torch.nn.functional.conv3d
        return conv(x, weight, bias, padding=padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        dims = x.dim() - 2
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = grad_out.new_zeros(weight.shape[0]) if need_b else None
        for start in range(0, x.shape[0], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_out[part], x[part], weight, [weight.shape[0]] if ctx.has_bias else None,
                [1] * dims, [ctx.padding] * dims, [1] * dims, False, [0] * dims, 1, [need_x, need_w, need_b],
            )
            if need_x:
                grad_x[part] = gx
            if need_w:
                grad_w += gw
            if need_b:
                grad_b += gb
        return grad_x, grad_w, grad_b, None, None


def chunked_backward_conv(conv: nn.Module, x: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """``conv(x)`` for a :class:`~monai_equivariant.layers.GroupConv` / ``LiftingConv`` (stride 1), with the
    backward pass run ``chunk`` samples at a time (see :class:`_BatchChunkedConv`)."""
    bank, bias = conv.expanded()
    return _BatchChunkedConv.apply(x, bank, bias, conv.padding, chunk)
