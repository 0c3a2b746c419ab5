"""Measure f(g·x) against g·f(x) for every group element."""

from __future__ import annotations

from typing import Callable

import torch

from monai_equivariant.groups import Group, as_group

__all__ = ["check_equivariance", "assert_equivariant", "FIELD_TYPES"]

FIELD_TYPES = ("plain", "regular", "invariant")
"""How a tensor transforms: ``plain`` (B, C, *spatial) images, ``regular`` group tensors
(B, C·|G|, *spatial), ``invariant`` anything that must not change (logits, pooled features)."""


def _act(group: Group, x: torch.Tensor, g: int, kind: str) -> torch.Tensor:
    if kind == "invariant":
        return x
    if kind not in FIELD_TYPES:
        raise ValueError(f"field type must be one of {FIELD_TYPES}, got {kind!r}")
    return group.transform(x, g, regular=kind == "regular")


@torch.no_grad()
def check_equivariance(
    module: Callable[[torch.Tensor], torch.Tensor],
    group: str | Group,
    x: torch.Tensor,
    in_type: str = "plain",
    out_type: str = "plain",
    elements: list[int] | None = None,
    relative: bool = False,
) -> torch.Tensor:
    """Max |f(g·x) - g·f(x)| for each group element (one forward of x, one per element).

    Args:
        module: the function or network (put it in eval mode first if it has batch statistics).
        group: the group or its name.
        x: an input of the module's expected layout.
        in_type, out_type: ``"plain"``, ``"regular"`` or ``"invariant"`` (see :data:`FIELD_TYPES`).
        elements: element indices to test (default: all).
        relative: divide by max |f(x)| (the output scale).

    Returns:
        (len(elements),) float tensor of errors, in element order.
    """
    group = as_group(group)
    elements = list(range(group.order)) if elements is None else list(elements)
    reference = module(x)
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny) if relative else 1.0
    errors = []
    for g in elements:
        expected = _act(group, reference, g, out_type)
        actual = module(_act(group, x, g, in_type))
        if actual.shape != expected.shape:
            raise ValueError(f"element {g}: output shape {tuple(actual.shape)} != {tuple(expected.shape)}")
        errors.append(((actual - expected).abs().max() / scale).item())
    return torch.tensor(errors, dtype=torch.float64)


def assert_equivariant(
    module: Callable[[torch.Tensor], torch.Tensor],
    group: str | Group,
    x: torch.Tensor,
    in_type: str = "plain",
    out_type: str = "plain",
    rtol: float = 1e-4,
    elements: list[int] | None = None,
) -> torch.Tensor:
    """:func:`check_equivariance` with ``relative=True``; raise AssertionError naming the worst element."""
    errors = check_equivariance(module, group, x, in_type, out_type, elements, relative=True)
    worst = int(errors.argmax())
    if errors[worst] > rtol:
        raise AssertionError(
            f"not equivariant under {as_group(group).name}: relative error {errors[worst]:.3e} > {rtol:g} "
            f"at element {worst if elements is None else elements[worst]}"
        )
    return errors
