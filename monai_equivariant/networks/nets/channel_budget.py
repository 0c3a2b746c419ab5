"""How a network reads its ``channels`` argument (``channels_as``): as fields (the default), or as the channels of
its plain twin (the MONAI net a user swaps out), matched by parameters or by conv multiply-adds per pixel.

The match is solved, not derived by a per-level formula: the fields are the given channels scaled uniformly,
``max(1, round(c·s))``, and the scale ``s`` is the one whose net counts closest to the plain twin (parameters, or
multiply-adds of the convolutions per input pixel). Lifting layers, heads, shortcuts, biases and norms are
counted as built, so the match holds for the real nets (within a few % for widths of a few fields upwards).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from monai_equivariant.layers import GroupConv, GroupConvTranspose, LiftingConv

__all__ = ["CHANNELS_AS", "budget_fields", "check_channels_as", "conv_macs_per_pixel", "solve_fields",
           "trainable_parameters"]

CHANNELS_AS = ("fields", "params", "flops")
"""The readings of ``channels``: ``"fields"`` (fields per level, the tensors carry fields·|G| channels),
``"params"`` (the plain twin's channels, fields chosen for equal parameters), ``"flops"`` (equal conv
multiply-adds per pixel)."""

Fields = tuple[int, ...]


def check_channels_as(value: object) -> str:
    """``value`` if it is one of :data:`CHANNELS_AS`; ValueError naming the choices otherwise."""
    if not isinstance(value, str) or value not in CHANNELS_AS:
        raise ValueError(f"channels_as must be one of {CHANNELS_AS}, got {value!r}")
    return value


def trainable_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _planar_weights(module: nn.Module) -> int:
    """Weights of the planar conv the module runs (a group conv runs its expanded bank: |G|× its weight; a
    steerable conv one of out_type.size × in_type.size × k^d)."""
    if isinstance(module, (GroupConv, LiftingConv, GroupConvTranspose)):
        return module.weight.numel() * module.group_order
    if _is_steerable_conv(module):
        return module.out_type.size * module.in_type.size * module.kernel_size ** module.in_type.gspace.dimensionality
    return module.weight.numel()


def _is_steerable_conv(module: nn.Module) -> bool:
    """escnn's ``R2Conv``/``R3Conv`` (and subclasses), recognised without importing escnn."""
    return any(c.__name__ in ("R2Conv", "R3Conv") for c in type(module).__mro__)


def _is_conv(module: nn.Module) -> bool:
    convs = (GroupConv, LiftingConv, GroupConvTranspose, nn.modules.conv._ConvNd)
    return isinstance(module, convs) or _is_steerable_conv(module)


@torch.no_grad()
def conv_pixel_ratios(net: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """{name: pixels per input pixel} for every convolution of ``net``: the output pixels of a conv (the input
    pixels of a transposed conv, which runs its weights once per input pixel), over the input's pixels, from one
    eval forward of zeros of ``input_shape`` (C, *spatial). The ratios do not depend on the widths."""
    ratios: dict[str, float] = {}
    pixels = math.prod(input_shape[1:])
    hooks = []
    for name, module in net.named_modules():
        if _is_conv(module):
            def hook(m: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
                transposed = getattr(m, "transposed", False) is True  # nn.ConvTransposeNd, GroupConvTranspose
                seen = args[0] if transposed else out
                ratios[name] = math.prod(getattr(seen, "tensor", seen).shape[2:]) / pixels  # escnn: .tensor
            hooks.append(module.register_forward_hook(hook))
    training = net.training
    try:
        net.eval()
        net(torch.zeros((1, *input_shape)))
    finally:
        net.train(training)
        for h in hooks:
            h.remove()
    return ratios


def conv_macs_per_pixel(net: nn.Module, input_shape: Sequence[int], ratios: dict[str, float] | None = None) -> float:
    """Multiply-adds of the convolutions of ``net`` per input pixel (a group conv counts its expanded planar bank;
    linear layers, norms and pooling are not counted): sum over convs of weights × pixels per input pixel.

    ``input_shape`` (C, *spatial) is an input size the net accepts (any: the count per pixel is the same for every
    admissible size); ``ratios`` (from :func:`conv_pixel_ratios` of a net of the same layout) skips the forward.
    """
    ratios = conv_pixel_ratios(net, input_shape) if ratios is None else ratios
    total = 0.0
    for name, module in net.named_modules():
        if _is_conv(module):
            if name not in ratios:
                return conv_macs_per_pixel(net, input_shape)  # a conv the probe did not have: measure this net
            total += _planar_weights(module) * ratios[name]
    return total


class _SkipInit(TorchFunctionMode):
    """Candidate nets are only counted: skip the random initialisation of their weights (half of a build's time)."""

    SKIPPED = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_, nn.init.normal_, nn.init.uniform_,
                         nn.init.kaiming_normal_, nn.init.kaiming_uniform_, nn.init.trunc_normal_})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _counted(build: Callable[[Fields], nn.Module], count: Callable[[nn.Module], float]) -> Callable[[Fields], float]:
    """``count(build(fields))`` with the weights left uninitialised (never run)."""

    def cost(fields: Fields) -> float:
        with _SkipInit():
            net = build(fields)
        return float(count(net))

    return cost


def solve_fields(channels: Sequence[int], cost: Callable[[Fields], float], target: float, start: float) -> Fields:
    """The fields ``max(1, round(c·s))`` (one scale ``s`` for every level) whose ``cost`` is closest to ``target``.

    ``cost`` grows about quadratically with the widths (parameters and multiply-adds both do): a few Newton steps on
    ``s`` from ``start``, a bracket, then bisection over the scales where a rounded width changes (each set of
    fields is evaluated once). When the closest uniform scale is still more than 1 % off (widths of a few fields),
    single levels then move by one field while that brings the cost closer.
    """
    channels = [int(c) for c in channels]
    seen: dict[Fields, float] = {}

    def fields_at(s: float) -> Fields:
        return tuple(max(1, math.floor(c * s + 0.5)) for c in channels)

    def cost_at(s: float) -> float:
        fields = fields_at(s)
        if fields not in seen:
            seen[fields] = float(cost(fields))
        return seen[fields]

    s = float(start)
    for _ in range(4):
        value = cost_at(s)
        if value == target:
            return fields_at(s)
        step = s * math.sqrt(target / value)
        if fields_at(step) == fields_at(s):
            break
        s = step
    low, high = s, s
    for _ in range(60):  # widen by 1 % steps (the Newton estimate is usually within that)
        if cost_at(low) <= target or fields_at(low) == (1,) * len(channels):
            break
        low /= 1.01
    for _ in range(60):
        if cost_at(high) >= target:
            break
        high *= 1.01
    breaks = sorted({(m + 0.5) / c for c in channels
                     for m in range(math.floor(c * low - 0.5), math.floor(c * high - 0.5) + 1)
                     if low < (m + 0.5) / c < high})
    scales = [low] + [(a + b) / 2 for a, b in zip(breaks, breaks[1:])] + [high]
    i, j = 0, len(scales) - 1
    while j - i > 1:  # cost(scales[i]) <= target <= cost(scales[j])
        middle = (i + j) // 2
        if cost_at(scales[middle]) <= target:
            i = middle
        else:
            j = middle
    best = min(seen, key=lambda f: (abs(seen[f] - target), f))
    return _refine(best, seen, cost, target)


def _refine(fields: Fields, seen: dict[Fields, float], cost: Callable[[Fields], float], target: float,
            tolerance: float = 0.01) -> Fields:
    """Where rounding one scale leaves the cost more than ``tolerance`` off (a few fields per level: one field more
    at the first level can be 30 % of the multiply-adds), move single levels by one field while that brings the
    cost closer."""
    gap = abs(seen[fields] - target)
    for _ in range(4 * len(fields)):
        if gap <= tolerance * target:
            break
        moves = [fields[:i] + (f + d,) + fields[i + 1:] for i, f in enumerate(fields) for d in (-1, 1) if f + d >= 1]
        for move in moves:
            if move not in seen:
                seen[move] = float(cost(move))
        closest = min(moves, key=lambda f: (abs(seen[f] - target), f))
        if abs(seen[closest] - target) >= gap:
            break
        fields, gap = closest, abs(seen[closest] - target)
    return fields


def budget_fields(
    channels_as: str,
    channels: Sequence[int],
    build: Callable[[Fields], nn.Module],
    plain: Callable[[], nn.Module],
    input_shape: Sequence[int],
    group_order: int,
) -> Fields:
    """The fields a net builds from ``channels`` read as ``channels_as`` (see :data:`CHANNELS_AS`).

    Args:
        channels_as: ``"fields"`` returns ``channels``; ``"params"`` / ``"flops"`` solve for the fields whose net
            (``build(fields)``) has the parameters / conv multiply-adds per pixel of ``plain()`` (the plain twin
            built from ``channels``) closest.
        channels: per-level channels as the user gave them.
        build: the equivariant net from fields (the same arguments otherwise).
        plain: the plain twin.
        input_shape: (C, *spatial) of an input both nets accept (to count multiply-adds per pixel).
        group_order: |G| (the start of the search: sqrt(|G|) for parameters, |G| for multiply-adds).

    The candidate nets are built with the global RNG state saved and restored, so the net built afterwards has
    the weights it would have with the solved fields given directly.
    """
    channels_as = check_channels_as(channels_as)
    channels = tuple(int(c) for c in channels)
    if channels_as == "fields":
        return channels
    with torch.random.fork_rng(devices=[]):
        if channels_as == "params":
            with _SkipInit():
                target = trainable_parameters(plain())
            cost = _counted(build, trainable_parameters)
            fields = solve_fields(channels, cost, target, 1 / math.sqrt(group_order))
        else:
            target = conv_macs_per_pixel(plain(), input_shape)  # runs a forward: initialised weights
            probe = build(tuple(range(1, len(channels) + 1)))  # distinct widths: every shortcut conv exists
            ratios = conv_pixel_ratios(probe, input_shape)
            cost = _counted(build, lambda net: conv_macs_per_pixel(net, input_shape, ratios))
            fields = solve_fields(channels, cost, target, 1 / group_order)
        achieved = cost(fields)
    if abs(achieved - target) > 0.05 * target:
        what = "parameters" if channels_as == "params" else "conv multiply-adds per pixel"
        warnings.warn(
            f"channels_as={channels_as!r}: the closest fields {fields} give {achieved:,.0f} {what}, "
            f"{achieved / target:.0%} of the plain twin's {target:,.0f} for channels {channels} (a group of "
            f"{group_order} elements needs at least one field per level): widen the channels or read them as fields",
            stacklevel=3,
        )
    return fields
