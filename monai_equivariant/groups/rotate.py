"""Rotating tensors about their centre: exact for grid symmetries, bilinear/trilinear otherwise.

One implementation serves ``Group.transform`` for interpolating groups (SE(2,N)) and the equivariance
metrics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["grid_transform", "resample", "rotate", "rotation_matrix_2d"]


def rotation_matrix_2d(angle_degrees: float) -> np.ndarray:
    """(2, 2) rotation by ``angle_degrees`` in (row, column) coordinates; exact at multiples of 90°."""
    quarter = angle_degrees / 90.0
    if abs(quarter - round(quarter)) < 1e-12:
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][int(round(quarter)) % 4]
    else:
        theta = math.radians(angle_degrees)
        c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def grid_transform(x: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """``out[y] = x[M^-1 y]`` for a signed permutation matrix M, via axis permutation and flips."""
    d = matrix.shape[0]
    # out[y] = x[z] with z = M^T y, i.e. z_j = sign_j * y_{p(j)} where M[p(j), j] = sign_j.
    source_axis = np.argmax(np.abs(matrix), axis=0)  # p(j): output axis feeding input axis j
    sign = matrix[source_axis, np.arange(d)]
    flips = [2 + j for j in range(d) if sign[j] < 0]
    if flips:
        x = torch.flip(x, flips)
    # now out[y] = x'[z] with z_j = y_{p(j)}; torch.permute needs, for each output axis i, the input axis j
    # with p(j) = i.
    order = np.argsort(source_axis)
    return x.permute(0, 1, *[2 + int(j) for j in order])


def resample(
    x: torch.Tensor, matrix: np.ndarray, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """``out(y) = x(M^-1 y)`` about the centre of the spatial grid of x (B, C, *spatial).

    Signed permutation matrices are applied exactly (flips and axis permutations, any spatial shape);
    other matrices need equal spatial sizes and interpolate; outside the input ``padding_mode`` applies
    (``"zeros"``, ``"border"`` or ``"reflection"``, as ``torch.nn.functional.grid_sample``).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    d = matrix.shape[0]
    if x.dim() != d + 2:
        raise ValueError(f"expected a (B, C, *spatial) tensor with {d} spatial dims, got {tuple(x.shape)}")
    rounded = np.round(matrix)
    if np.allclose(matrix, rounded, atol=1e-9):
        return grid_transform(x, rounded.astype(np.int64))
    sizes = x.shape[2:]
    if len(set(sizes)) != 1:
        raise ValueError(f"rotations other than grid symmetries need equal spatial sizes, got {tuple(sizes)}")
    n = sizes[0]
    centre = (n - 1) / 2.0
    axes = [torch.arange(n, dtype=torch.float64) - centre] * d
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*spatial, d), tensor axis order
    source = points @ torch.as_tensor(matrix, dtype=torch.float64)  # M^-1 y = M^T y, as row vectors
    normalised = (2 * (source + centre) + 1) / n - 1  # align_corners=False convention
    grid = normalised.flip(-1).to(dtype=x.dtype, device=x.device)  # grid_sample wants (x, y[, z]) order
    grid = grid.unsqueeze(0).expand(x.shape[0], *grid.shape)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def rotate(
    x: torch.Tensor, angle_degrees: float, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Rotate a 2D tensor (B, C, H, W) by ``angle_degrees`` about its centre (exact at multiples of 90°);
    ``padding_mode`` fills what comes from outside the input (see :func:`resample`)."""
    return resample(x, rotation_matrix_2d(angle_degrees), mode=mode, padding_mode=padding_mode)
