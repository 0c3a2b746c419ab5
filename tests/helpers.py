"""Shared test helpers (importable because tests/ is on sys.path under pytest's default import mode)."""

import math

import torch
import torch.nn as nn


def forward_flops(net: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval forward pass (convs, matmuls), counted by torch; the expanded filter banks are cached by a
    first pass, so interpolated groups' kernel expansion is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()
    with torch.no_grad():
        net(x)
        with FlopCounterMode(display=False) as counter:
            net(x)
    return counter.get_total_flops()


def assert_compiled_trains_then_validates(net: nn.Module, x: torch.Tensor, one_graph: bool = True) -> None:
    """``torch.compile(net, fullgraph=True, backend="aot_eager")`` (float64 nets and inputs): no graph break (and one
    graph when ``one_graph``); a training step's output and every gradient, then an eval ``no_grad`` call, equal to
    an eager copy (the tolerances are float64 round-off)."""
    import copy

    reference = copy.deepcopy(net)
    explanation = torch._dynamo.explain(copy.deepcopy(net))(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    if one_graph:
        assert explanation.graph_count == 1, explanation.break_reasons
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out = compiled(x)  # a training step first
    out.square().mean().backward()
    expected = reference(x)
    expected.square().mean().backward()
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-9)
    net.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-9, atol=1e-10)


def trained_briefly(net: nn.Module, size: tuple[int, ...] = (16, 16), steps: int = 2) -> nn.Module:
    """A few SGD steps on random (2, in_channels, *size) inputs, so batch-norm running statistics and weights
    are not at their initial values; returns the net in eval mode."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn((2, net.in_channels) + tuple(size))).square().mean().backward()
        opt.step()
    return net.eval()


ROUNDOFF_HEADROOM = 4.0
"""2 for both computations rounding (each deviates from the exact value), 2 for the sum of |products| of one
output entry exceeding the entry itself (products of random sign partly cancel): see :func:`roundoff_bound`."""


def depth_and_fan_in(module: nn.Module) -> tuple[int, int]:
    """(depth, fan_in) of the linear layers of ``module``: ``depth`` counts its convolutions and linear layers
    (every module holding a weight of ≥ 2 dims; escnn's ``R2Conv`` and its subclasses, whose basis coefficients
    are 1-D, too; an upper bound on those on the longest path), ``fan_in`` is the most products one output entry
    of them sums (C_in·|G_in|·k^d of an expanded bank)."""
    depth, fan_in = 0, 1
    for m in module.modules():
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            depth, fan_in = depth + 1, max(fan_in, math.prod(weight.shape[1:]))
        elif any(c.__name__ == "R2Conv" for c in type(m).__mro__):  # escnn (and subclasses): basis coefficients
            depth, fan_in = depth + 1, max(fan_in, m.in_type.size * m.kernel_size ** 2)
    return max(depth, 1), fan_in


def roundoff_bound(module: nn.Module | None = None, depth: int | None = None, fan_in: int | None = None,
                   dtype: torch.dtype = torch.float32) -> float:
    """Relative bound on the difference of two computations of the same function in ``dtype`` that differ only by
    rounding (another summation order, conv algorithm, exporter or runtime), on max |output|:

        eps(dtype) · depth · sqrt(fan_in) · ROUNDOFF_HEADROOM

    Why: one output entry of a conv or linear layer sums ``fan_in`` products; rounding in another order changes it
    by about sqrt(fan_in)·eps times the size of its terms (independent roundings add like a random walk; the worst
    case fan_in·eps is far from what real kernels reach). Layers between (ReLU, max-pool, group pooling, batch
    norm, upsampling) keep a relative error relative (gain about 1 at He initialisation), so the errors of the
    ``depth`` layers add. The headroom is :data:`ROUNDOFF_HEADROOM`. A real fault (a wrong filter, a permuted
    element, a stale bank) gives relative errors of order 1e-2..1, orders of magnitude above this bound.

    ``depth`` and ``fan_in`` default to :func:`depth_and_fan_in` of ``module`` (pass twice the depth for
    gradients: a backward pass runs the layers again).
    """
    if module is not None:
        found_depth, found_fan_in = depth_and_fan_in(module)
        depth = found_depth if depth is None else depth
        fan_in = found_fan_in if fan_in is None else fan_in
    depth, fan_in = depth or 1, fan_in or 1
    return torch.finfo(dtype).eps * depth * math.sqrt(fan_in) * ROUNDOFF_HEADROOM


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, module: nn.Module | None = None, *,
                   depth: int | None = None, fan_in: int | None = None, scale: float | None = None,
                   msg: str = "") -> float:
    """Assert max |actual - expected| ≤ :func:`roundoff_bound` · scale, with ``scale`` = max |expected| unless
    given (pass the largest gradient of a whole net when comparing gradients that are ~0 by cancellation, e.g.
    a conv bias before a batch norm). Shapes must agree; returns the measured relative error.

    For floating tensors of any dtype (the bound uses ``expected``'s eps); exact comparisons (rtol=0, atol=0)
    stay ``torch.testing.assert_close(..., rtol=0, atol=0)``.
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{msg} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert expected.is_floating_point(), f"{msg} compare exactly: {expected.dtype} is not a float"
    reference = expected.detach().double()
    scale = float(reference.abs().max()) if scale is None else float(torch.as_tensor(scale).detach())
    error = float((actual.detach().double() - reference).abs().max()) if expected.numel() else 0.0
    bound = roundoff_bound(module, depth, fan_in, expected.dtype)
    relative = error / scale if scale > 0 else (0.0 if error == 0 else math.inf)
    assert relative <= bound, (
        f"{msg} max |difference| {error:.3e} = {relative:.3e} of the scale {scale:.3e}, above the round-off bound "
        f"{bound:.3e} (eps·depth·sqrt(fan_in)·{ROUNDOFF_HEADROOM:g})"
    )
    return relative


def roundoff_atol(expected: torch.Tensor, module: nn.Module | None = None, **bound_kwargs) -> float:
    """:func:`roundoff_bound` · max |expected| as an absolute tolerance, for tools that take ``atol``/``rtol``
    themselves (MONAI's ``convert_to_torchscript(verify=True)``/``convert_to_onnx``: pass ``rtol=0``)."""
    scale = float(torch.as_tensor(expected).detach().abs().max())
    return roundoff_bound(module, dtype=torch.as_tensor(expected).dtype, **bound_kwargs) * scale
