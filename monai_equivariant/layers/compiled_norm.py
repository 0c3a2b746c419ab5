"""The group norms' batch-norm arithmetic as ``torch.compile`` should see it.

A group batch norm keeps one mean, variance and affine per *field* (C of them) for a tensor of C·|G| channels. The
natural code (``var_mean`` on the field view, per-field values repeated |G| times) is what inductor 2.13's CPU code
generator handles worst once its layout optimisation has made every conv output channels-last:

- a reduction that keeps the field axis (stride |G|) and reduces the group axis (stride 1) becomes one pass over
  the whole activation *per field*, reading |G| floats of every pixel's C·|G|;
- a per-field value used per channel is inlined into the consumer as a load at ``c // |G|``, which it does not
  vectorise: the normalisation and its backward become scalar loops over every element.

Measured on the first P4UNet level (b4, 8 fields, 64²): the norm's forward kernel 3.3x and its backward 3.5x the
plain export's batch-norm kernels. So here the statistics are reduced per *channel* (the plain batch norm's
vectorised reduction) and combined per field by the law of total variance (|G| equal counts), and every per-field
value reaches the channels through :func:`repeat_per_field`, an operator the compiler cannot see into, whose output
is a buffer it reads at ``c``. The backward is written out (:class:`_FieldStatisticsNorm`) so that it, too, reduces
per channel and reads per-channel coefficients. Eager code keeps the native kernel on the field view
(:mod:`~monai_equivariant.layers.norm`): this module runs only under ``torch.compile`` (and ``torch.export``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["batch_statistics_norm", "frozen_statistics_norm", "per_channel", "repeat_per_field"]


@torch.library.custom_op("monai_equivariant::repeat_per_field", mutates_args=())
def repeat_per_field(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """(k, C) per-field rows -> (k, C·|G|) per-channel rows, each value repeated |G| times (field-major channels).

    An operator (opaque to ``torch.compile``) rather than ``repeat_interleave``, so that its output is a buffer read
    at ``c`` (module docstring)."""
    out = values.new_empty(list(values.shape[:-1]) + [values.shape[-1] * group_size])  # never a view of the input
    out.view(list(values.shape) + [group_size]).copy_(values.unsqueeze(-1))
    return out


@repeat_per_field.register_fake
def _(values: torch.Tensor, group_size: int) -> torch.Tensor:
    return values.new_empty(list(values.shape[:-1]) + [values.shape[-1] * group_size])


def _sum_per_field(grad: torch.Tensor, group_size: int) -> torch.Tensor:
    return grad.unflatten(-1, (grad.shape[-1] // group_size, group_size)).sum(-1)


torch.library.register_autograd(
    "monai_equivariant::repeat_per_field",
    lambda ctx, grad: (_sum_per_field(grad, ctx.group_size), None),
    setup_context=lambda ctx, inputs, output: setattr(ctx, "group_size", inputs[1]),
)


def per_channel(values: torch.Tensor | None, group_size: int) -> torch.Tensor | None:
    """(C,) per-field values -> (C·|G|,) per-channel values (each repeated |G| times, field-major), or None: in
    eager code and exported programs (under compile, :func:`repeat_per_field`)."""
    return None if values is None else values.repeat_interleave(group_size)


def _accumulation(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a dtype fit for statistics: float32 for half precision inputs, as it is otherwise."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _per_channel_rows(rows: list[torch.Tensor], group_size: int, ndim: int) -> list[torch.Tensor]:
    """Per-field (C,) vectors -> per-channel (1, C·|G|, 1, ...) tensors broadcasting against an ``ndim`` tensor."""
    spread = repeat_per_field(torch.stack(rows), group_size)
    shape = (1, -1) + (1,) * (ndim - 2)
    return [row.view(shape) for row in spread.unbind(0)]


def _normalize(x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, weight: torch.Tensor | None,
               bias: torch.Tensor | None, group_size: int) -> torch.Tensor:
    """``(x - mean)·invstd·weight + bias`` with per-field (C,) values read per channel: the arithmetic of inductor's
    own batch-norm decomposition, term for term. Not folded into one scale and shift: with fewer than five reads
    inductor 2.13 does not realise the output (say, the ReLU after it) where it is first reused, so it misses the
    channels-last layout that the plain net's batch norm gets there (a U-Net's skip then lands in a contiguous
    ``cat`` and is copied back to channels-last for the next conv; ``realize_reads_threshold``)."""
    rows = [mean, invstd] + [v for v in (weight, bias) if v is not None]
    per_channel = _per_channel_rows(rows, group_size, x.dim())
    y = (x - per_channel[0]) * per_channel[1]
    if weight is not None:
        y = y * per_channel[2]
    if bias is not None:
        y = y + per_channel[-1]
    return y


class _FieldStatisticsNorm(torch.autograd.Function):
    """Training batch norm of (B, C·|G|, *spatial) with statistics per field: ``(y, mean, var)`` with the biased
    per-field ``var``. Reductions run per channel and are combined per field; per-field values reach the channels
    through :func:`repeat_per_field` (module docstring). Once differentiable (compiled graphs are, anyway)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None,  # type: ignore[override]
                bias: torch.Tensor | None, group_size: int,
                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acc = _accumulation(x)
        dims = [0, *range(2, x.dim())]
        var_c, mean_c = torch.var_mean(acc, dim=dims, correction=0)  # (C·|G|,)
        fields = mean_c.shape[0] // group_size
        means, variances = mean_c.view(fields, group_size), var_c.view(fields, group_size)
        mean = means.mean(1)
        var = variances.mean(1) + (means - mean[:, None]).square().mean(1)  # total variance over |G| equal counts
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(acc, mean_c, mean, invstd, weight)
        ctx.group_size = group_size
        ctx.mark_non_differentiable(mean, var)
        return _normalize(acc, mean, invstd, weight, bias, group_size).to(x.dtype), mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor, _grad_mean: torch.Tensor, _grad_var: torch.Tensor):  # type: ignore[override]
        """The batch-norm backward with sums per field: dx = k·(dy - mean(dy) - x̂·mean(dy·x̂)) with k = invstd·w,
        written as dx = k·dy + b·(x - mean) + a with per-channel k, b, a, mean."""
        acc, mean_c, mean, invstd, weight = ctx.saved_tensors
        group_size = ctx.group_size
        dy = _accumulation(grad)
        dims = [0, *range(2, acc.dim())]
        fields = mean.shape[0]
        count = acc.numel() // fields
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        sum_dy_c = dy.sum(dims).view(fields, group_size)
        centred_c = (dy * (acc - mean_c.view(shape))).sum(dims).view(fields, group_size)  # little cancellation
        sum_dy = sum_dy_c.sum(1)
        sum_dy_xmu = (centred_c + (mean_c.view(fields, group_size) - mean[:, None]) * sum_dy_c).sum(1)
        k = invstd if weight is None else invstd * weight
        b = -k * invstd * invstd * sum_dy_xmu / count
        a = -k * sum_dy / count
        k_c, b_c, a_c, mean_f = _per_channel_rows([k, b, a, mean], group_size, acc.dim())
        grad_x = (k_c * dy + b_c * (acc - mean_f) + a_c).to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = (sum_dy_xmu * invstd).to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dy.to(grad.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None


def batch_statistics_norm(x: torch.Tensor, norm: torch.nn.modules.batchnorm._BatchNorm,
                          group_size: int) -> torch.Tensor:
    """Training batch norm of (B, C·|G|, *spatial) ``x`` with statistics per field (over batch, group and space),
    updating ``norm``'s running statistics as ``nn.BatchNorm1d`` does. Its output is not a view, which is what
    ``torch.compile`` needs: after an in-place activation (MONAI's ``ReLU(inplace=True)``) on the view that the
    native kernel's output makes, functionalization saves a re-made view with channels-last strides, and inductor
    2.13 cannot order its symbolic strides ("cannot determine truth value of Relational: 8*s0**2 < 8*s0",
    GroupResNet; the same with plain torch modules, ``tests/test_compile.py``)."""
    y, mean, var = _FieldStatisticsNorm.apply(x, norm.weight, norm.bias, group_size, norm.eps)
    if norm.training and norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            count = x.numel() // norm.num_features
            norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), factor)
            norm.running_var.lerp_((var * (count / max(count - 1, 1))).to(norm.running_var.dtype), factor)
    return y


def frozen_statistics_norm(x: torch.Tensor, norm: torch.nn.modules.batchnorm._NormBase,
                           group_size: int) -> torch.Tensor:
    """Batch norm of (B, C·|G|, *spatial) ``x`` with ``norm``'s running statistics (a fresh output, no view). Inside
    ``torch.export`` it is ``batch_norm`` with them repeated |G| times, the plain export's op (no operator of ours
    in an exported program); under ``torch.compile`` :func:`_normalize` with the per-field values spread to the
    channels by :func:`repeat_per_field` (module docstring)."""
    if torch.compiler.is_exporting():
        return F.batch_norm(x, per_channel(norm.running_mean, group_size), per_channel(norm.running_var, group_size),
                            per_channel(norm.weight, group_size), per_channel(norm.bias, group_size), False, 0.0,
                            norm.eps)
    invstd = torch.rsqrt(norm.running_var + norm.eps)
    return _normalize(_accumulation(x), norm.running_mean, invstd, norm.weight, norm.bias, group_size).to(x.dtype)
