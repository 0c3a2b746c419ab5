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

from monai_equivariant.layers import GroupBatchNorm
from monai_equivariant.layers.functional import CONV_FUNCTIONS

__all__ = ["checkpoint_segment", "frozen_running_stats", "streamable", "streamable_unit", "streamed_conv_norm_relu",
           "streamed_residual_block"]

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
    ends_with_streamed_block: bool = False,
) -> torch.Tensor:
    """``function(*inputs)`` keeping only ``inputs`` for the backward pass and recomputing the rest there.

    ``modules`` are those ``function`` runs (their batch norms are frozen in recomputations). Outputs, gradients
    and running statistics equal those of ``function(*inputs)`` without checkpointing. Nested calls are allowed.
    ``ends_with_chunked_conv``: ``function``'s last op is :func:`chunked_backward_conv`; its own recomputation
    then skips that convolution's forward (the backward pass needs only its inputs, and a recomputation's output
    is discarded). ``ends_with_streamed_block``: likewise for a last :func:`streamed_residual_block`.
    """
    calls = [0]

    def run(*args: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 1 and not _recomputing():
            return function(*args)
        with frozen_running_stats(modules):
            if calls[0] == 1 or not (ends_with_chunked_conv or ends_with_streamed_block):
                return function(*args)
            flag = "skip_conv_forward" if ends_with_chunked_conv else "skip_block_forward"
            setattr(_STATE, flag, True)
            try:
                return function(*args)
            finally:
                setattr(_STATE, flag, False)

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
            spatial = [n + 2 * padding - k + 1 for n, k in zip(x.shape[2:], weight.shape[2:])]
            shape = [x.shape[0], weight.shape[0]] + spatial
            return x.new_zeros(()).expand(shape)
        conv = CONV_FUNCTIONS[x.dim() - 2]
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
    backward pass run ``chunk`` samples at a time (see :class:`_BatchChunkedConv`); a conv without one planar bank
    (:class:`~monai_equivariant.layers.SeparableGroupConv`) runs as it is."""
    if not hasattr(conv, "expanded"):
        return conv(x)
    bank, bias = conv.expanded()
    return _BatchChunkedConv.apply(x, bank, bias, conv.padding, chunk)


def _batch_norm_train(norm: nn.modules.batchnorm._NormBase, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``norm(x)`` in training mode for (B, C, L) ``x`` (running statistics updated as ``nn.BatchNorm1d`` does),
    also returning the batch mean and inverse standard deviation (C,) that its backward needs."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            factor = 1.0 / float(norm.num_batches_tracked)
    return torch.native_batch_norm(
        x, norm.weight, norm.bias, norm.running_mean, norm.running_var, True, factor, norm.eps
    )


def _affine(x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, weight, bias, fields: int) -> torch.Tensor:
    """Batch norm of (n, C·|G|, *spatial) ``x`` with given (C,) statistics (a new tensor); ``weight``/``bias`` may
    be None."""
    alpha = invstd if weight is None else invstd * weight
    beta = -mean * alpha if bias is None else bias - mean * alpha
    shape = (x.shape[0], fields, -1)
    return torch.addcmul(beta[:, None], x.reshape(shape), alpha[:, None]).reshape(x.shape)


def _conv_per_sample(conv: Callable, x: torch.Tensor, weight: torch.Tensor, bias, padding: int) -> torch.Tensor:
    """``conv(x, weight, bias, padding=padding)`` (stride 1, same size) one sample at a time: the convolution's
    workspace (on CPU as large as its output) then scales with one sample."""
    out = torch.empty(x.shape[0], weight.shape[0], *x.shape[2:], dtype=x.dtype, device=x.device)
    for i in range(x.shape[0]):
        out[i] = conv(x[i : i + 1], weight, bias, padding=padding)[0]
    return out


def _conv_backward(grad, x, weight, bias, padding: int, need_x: bool = True) -> tuple:
    """(grad_x, grad_weight, grad_bias) of ``conv(x, weight, bias, padding=padding)`` (stride 1)."""
    dims = x.dim() - 2
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if bias is not None else None, [1] * dims, [padding] * dims,
        [1] * dims, False, [0] * dims, 1, [need_x, True, bias is not None],
    )


def _bn_backward(dy, p, mean, k, mean_dy, scale) -> torch.Tensor:
    """Training batch norm's input gradient on (1, C, L) views, given the batch's (C,) ``mean_dy`` = mean of dy,
    ``k`` = sum(dy·(p - mean))·invstd²/count and ``scale`` = invstd·weight (as ATen's CPU kernel computes it)."""
    t = (p - mean[:, None]).mul_(k[:, None])
    return (dy - mean_dy[:, None]).sub_(t).mul_(scale[:, None])


class _StreamedConvNormReLU(torch.autograd.Function):
    """``relu(bn(conv(x)))`` (batch norm in training mode over ``fields`` statistics shared over the group) whose
    backward keeps only ``x`` and recomputes the rest one sample at a time, in two passes (sums for the norm's
    backward, then the gradients): no activation-sized tensor besides the incoming gradient. For the lifting stem,
    whose input is the small plain image."""

    @staticmethod
    def forward(ctx, x, w, b, g, be, norm, fields, padding):  # type: ignore[override]
        ctx.save_for_backward(x, w, b, g, be)
        ctx.fields, ctx.padding = fields, padding
        conv = CONV_FUNCTIONS[x.dim() - 2]
        p = _conv_per_sample(conv, x, w, b, padding)
        y, mean, invstd = _batch_norm_train(norm, p.reshape(x.shape[0], fields, -1))
        ctx.stats = (mean, invstd)
        return torch.relu_(y).reshape(p.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, w, b, g, be = ctx.saved_tensors
        mean, invstd = ctx.stats
        fields, padding, n = ctx.fields, ctx.padding, x.shape[0]
        conv = CONV_FUNCTIONS[x.dim() - 2]
        c = (1, fields, -1)
        count = n * w.shape[0] * x[0, 0].numel() // fields

        def sample(i):  # p and d(relu input) of sample i
            p = conv(x[i : i + 1], w, b, padding=padding)
            a = torch.relu_(_affine(p, mean, invstd, g, be, fields))
            return p, torch.where(a > 0, grad_out[i : i + 1], 0.0)

        total, dot = x.new_zeros(fields), x.new_zeros(fields)
        for i in range(n):
            p, dr = sample(i)
            total += dr.reshape(c).sum((0, 2))
            dot += (dr.reshape(c) * (p.reshape(c) - mean[:, None])).sum((0, 2))
            del p, dr
        k, scale = dot * invstd * invstd / count, invstd if g is None else invstd * g
        need_x = ctx.needs_input_grad[0]
        grad_x = torch.empty_like(x) if need_x else None
        gw, gb = torch.zeros_like(w), None if b is None else torch.zeros_like(b)
        for i in range(n):
            p, dr = sample(i)
            dp = _bn_backward(dr.reshape(c), p.reshape(c), mean, k, total / count, scale).reshape(p.shape)
            del p, dr
            dx, dw, db = _conv_backward(dp, x[i : i + 1], w, b, padding, need_x)
            gw += dw
            if gb is not None:
                gb += db
            if need_x:
                grad_x[i] = dx[0]
        return grad_x, gw, gb, None if g is None else dot * invstd, None if be is None else total, None, None, None


class _StreamedResidualBlock(torch.autograd.Function):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`` (batch norms in training mode, statistics shared over the
    group: ``fields`` per norm) whose backward keeps only ``x`` and recomputes everything else one sample at a
    time, in three passes (the batch norms' backward needs two sums over the whole batch before any sample's
    input gradient): besides the incoming gradient and ``x`` it holds one full-size work buffer (the second conv's
    output, then the first norm's output gradient, then the input gradient it returns) and a boolean mask of the
    positive outputs. Gradients equal the plain block's up to the summation order."""

    @staticmethod
    def forward(ctx, x, w1, b1, g1, be1, w2, b2, g2, be2, norms, fields, padding):  # type: ignore[override]
        ctx.save_for_backward(x, w1, b1, g1, be1, w2, b2, g2, be2)
        ctx.fields, ctx.padding = fields, padding
        conv = CONV_FUNCTIONS[x.dim() - 2]
        if getattr(_STATE, "skip_block_forward", False):  # a recomputation whose output is discarded
            _STATE.skip_block_forward = False
            return x.new_zeros(()).expand(x.shape[0], w2.shape[0], *x.shape[2:])
        n = x.shape[0]
        p1 = _conv_per_sample(conv, x, w1, b1, padding)
        a1, m1, s1 = _batch_norm_train(norms[0], p1.reshape(n, fields, -1))
        del p1
        a1 = torch.relu_(a1).reshape(n, w1.shape[0], *x.shape[2:])
        p2 = _conv_per_sample(conv, a1, w2, b2, padding)
        del a1
        y, m2, s2 = _batch_norm_train(norms[1], p2.reshape(n, fields, -1))
        del p2
        ctx.stats = (m1, s1, m2, s2)  # (C,) each; kept from this forward, not recomputed
        return torch.relu_(y.add_(x.reshape(y.shape))).reshape(x.shape[0], w2.shape[0], *x.shape[2:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, w1, b1, g1, be1, w2, b2, g2, be2 = ctx.saved_tensors
        m1, s1, m2, s2 = ctx.stats
        fields, padding, n = ctx.fields, ctx.padding, x.shape[0]
        conv = CONV_FUNCTIONS[x.dim() - 2]
        count = n * x[0].numel() // fields  # elements per field statistic
        c = (1, fields, -1)

        def conv_backward(grad, inp, weight, bias):
            return _conv_backward(grad, inp, weight, bias, padding)

        def first(i):  # p1, a1 of sample i
            p1 = conv(x[i : i + 1], w1, b1, padding=padding)
            return p1, torch.relu_(_affine(p1, m1, s1, g1, be1, fields))

        def bn_backward(dy, p, mean, k, total, scale):
            return _bn_backward(dy, p, mean, k, total / count, scale)

        # pass 1: p2 into the work buffer, where the output is positive (bool), sums for bn2's backward
        work = torch.empty(n, w2.shape[0], *x.shape[2:], dtype=x.dtype, device=x.device)
        positive = torch.empty(work.shape, dtype=torch.bool, device=x.device)
        sum2, dot2 = x.new_zeros(fields), x.new_zeros(fields)
        for i in range(n):
            a1 = first(i)[1]
            p2 = conv(a1, w2, b2, padding=padding)
            del a1
            work[i] = p2[0]
            y = _affine(p2, m2, s2, g2, be2, fields).add_(x[i : i + 1])
            torch.gt(y[0], 0, out=positive[i])
            del y
            dy = torch.where(positive[i], grad_out[i], 0.0).reshape(c)
            sum2 += dy.sum((0, 2))
            dot2 += (dy * (p2.reshape(c) - m2[:, None])).sum((0, 2))
            del p2, dy
        # pass 2: bn2 and conv2 backward, relu and the sums for bn1's backward; d(bn1 output) into the work buffer
        k2, scale2 = dot2 * s2 * s2 / count, s2 if g2 is None else s2 * g2
        gw2, gb2 = torch.zeros_like(w2), None if b2 is None else torch.zeros_like(b2)
        sum1, dot1 = x.new_zeros(fields), x.new_zeros(fields)
        for i in range(n):
            p1, a1 = first(i)
            dy = torch.where(positive[i], grad_out[i], 0.0).reshape(c)
            dp2 = bn_backward(dy, work[i].reshape(c), m2, k2, sum2, scale2)
            del dy
            da1, dw, db = conv_backward(dp2.reshape(a1.shape), a1, w2, b2)
            del dp2
            gw2 += dw
            if gb2 is not None:
                gb2 += db
            dr = da1.masked_fill_(a1 <= 0, 0.0)
            del a1
            work[i] = dr[0]
            dr = dr.reshape(c)
            sum1 += dr.sum((0, 2))
            dot1 += (dr * (p1.reshape(c) - m1[:, None])).sum((0, 2))
            del p1, dr, da1
        # pass 3: bn1 and conv1 backward; the input gradient (conv1's plus the shortcut's) into the work buffer
        k1, scale1 = dot1 * s1 * s1 / count, s1 if g1 is None else s1 * g1
        gw1, gb1 = torch.zeros_like(w1), None if b1 is None else torch.zeros_like(b1)
        for i in range(n):
            p1 = conv(x[i : i + 1], w1, b1, padding=padding)
            dp1 = bn_backward(work[i].reshape(c), p1.reshape(c), m1, k1, sum1, scale1).reshape(p1.shape)
            del p1
            dx, dw, db = conv_backward(dp1, x[i : i + 1], w1, b1)
            del dp1
            gw1 += dw
            if gb1 is not None:
                gb1 += db
            work[i] = dx[0].add_(torch.where(positive[i], grad_out[i], 0.0))
            del dx
        grad_x = work
        grads_bn = [None if g is None else d * s for g, d, s in ((g1, dot1, s1), (g2, dot2, s2))]
        grads_beta = [None if be is None else s for be, s in ((be1, sum1), (be2, sum2))]
        return grad_x, gw1, gb1, grads_bn[0], grads_beta[0], gw2, gb2, grads_bn[1], grads_beta[1], None, None, None


def _same_size_conv_batch_norm(unit: nn.Module) -> bool:
    """Whether ``unit`` (a ``GroupConvBlock``) is a same-size conv (stride 1, ``k // 2`` padding) followed by a
    GroupBatchNorm in training mode."""
    conv, norm = unit.conv, unit.norm
    if not unit.layout.startswith("CN") or not hasattr(conv, "expanded"):  # separable convs: no one planar bank
        return False
    return (
        isinstance(norm, GroupBatchNorm)
        and norm.norm.training
        and getattr(conv, "stride", 1) == 1
        and conv.padding * 2 + 1 == conv.kernel_size
    )


def streamable(block: nn.Module) -> bool:
    """Whether :func:`streamed_residual_block` computes ``block`` (a ``GroupResidualBlock``): identity shortcut,
    group batch norms in training mode with batch statistics, ReLU after the first unit and after the sum, no
    dropout, stride-1 convs."""
    first, second = block.first, block.second
    return (
        streamable_unit(first)
        and second.layout == "CN"
        and _same_size_conv_batch_norm(second)
        and isinstance(block.shortcut, nn.Identity)
        and type(block.act) is nn.ReLU
    )


def streamable_unit(unit: nn.Module) -> bool:
    """Whether :func:`streamed_conv_norm_relu` computes ``unit``: a ``GroupConvBlock`` ``[conv, GroupBatchNorm in
    training mode, ReLU]`` with a same-size (stride-1, ``k // 2`` padding) conv, such as the lifting stem."""
    return getattr(unit, "layout", None) == "CNA" and type(unit.act) is nn.ReLU and _same_size_conv_batch_norm(unit)


def streamed_conv_norm_relu(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``unit(x)`` for a :func:`streamable_unit` whose backward keeps only ``x`` and recomputes one sample at a
    time (:class:`_StreamedConvNormReLU`); the running statistics are updated as by ``unit(x)``."""
    w, b = unit.conv.expanded()
    norm = unit.norm.norm
    return _StreamedConvNormReLU.apply(x, w, b, norm.weight, norm.bias, norm, unit.norm.num_fields, unit.conv.padding)


def streamed_residual_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a :func:`streamable` ``GroupResidualBlock`` whose backward recomputes one sample at a time
    (:class:`_StreamedResidualBlock`); the running statistics are updated as by ``block(x)``."""
    first, second = block.first, block.second
    (w1, b1), (w2, b2) = first.conv.expanded(), second.conv.expanded()
    n1, n2 = first.norm.norm, second.norm.norm
    return _StreamedResidualBlock.apply(
        x, w1, b1, n1.weight, n1.bias, w2, b2, n2.weight, n2.bias, (n1, n2), first.norm.num_fields, first.conv.padding
    )
