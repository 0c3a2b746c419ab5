"""Measure f(g·x) against g·f(x) for every group element, and at arbitrary rotation angles (2D).

Thin users of the measuring core :mod:`monai_equivariant.metrics.equivariance_helper`: the rotations, the disk
mask and :func:`eval_mode_restored` come from there (re-exported here under their old import paths)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch

from monai_equivariant.groups import Group, as_group
from monai_equivariant.metrics.equivariance_helper import disk_mask, equivariance_transformations, eval_mode_restored

__all__ = [
    "check_equivariance",
    "assert_equivariant",
    "disk_mask",
    "eval_mode_restored",
    "rotation_error_curve",
    "FIELD_TYPES",
]

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


@torch.no_grad()
def rotation_error_curve(
    module: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    angles: Sequence[float],
    out_type: str = "plain",
    radius: float | None = None,
) -> torch.Tensor:
    """Relative equivariance error of a 2D module at arbitrary rotation angles (degrees).

    For each angle θ: ``‖f(R_θ x) − R_θ f(x)‖ / ‖f(x)‖`` (L2 norms over the batch and channels, inside the
    disk of ``radius`` pixels about the centre, valid in both frames), with ``R_θ`` the bilinear rotation
    :func:`monai_equivariant.groups.rotate` (exact at multiples of 90°). For ``out_type="invariant"`` the
    outputs (e.g. logits) are compared whole: ``‖f(R_θ x) − f(x)‖ / ‖f(x)‖``.

    Use smooth inputs that vanish outside the disk (e.g. blurred noise times :func:`disk_mask`), so the
    rotation itself loses no content; put the module in eval mode first.

    Args:
        module: maps (B, C, H, H) to (B, C', H, H) (``plain``) or to any invariant tensor (``invariant``).
        x: (B, C, H, H) input, square.
        angles: rotation angles in degrees.
        out_type: ``"plain"`` or ``"invariant"``.
        radius: radius of the compared disk (default ``H / 2 - 1``).

    Returns:
        (len(angles),) float64 tensor of relative errors.
    """
    if out_type not in ("plain", "invariant"):
        raise ValueError(f"out_type must be 'plain' or 'invariant', got {out_type!r}")
    if x.dim() != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"rotation_error_curve needs a square (B, C, H, H) input, got {tuple(x.shape)}")
    reference = module(x)
    if out_type == "plain":
        if reference.dim() != 4 or reference.shape[2:] != x.shape[2:]:
            raise ValueError(f"plain outputs must be (B, C', H, H) like the input, got {tuple(reference.shape)}")
        mask = disk_mask(x.shape[2], radius, device=x.device).to(reference.dtype)
    else:
        mask = torch.ones((), dtype=reference.dtype, device=reference.device)
    scale = (reference * mask).norm().clamp_min(torch.finfo(reference.dtype).tiny)
    angles = [float(a) for a in angles]
    rotations = equivariance_transformations(2, angles=angles).outputs if angles else ()  # bilinear, zero padding
    errors = []
    for rotation in rotations:
        actual = module(rotation(x))
        expected = rotation(reference) if out_type == "plain" else reference
        errors.append(((actual - expected) * mask).norm() / scale)
    return torch.tensor([float(e) for e in errors], dtype=torch.float64)
