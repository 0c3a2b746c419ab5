"""Synthetic nodule false-positive-reduction data: nodule-like blobs (label 1) vs vessel-like tubes,
bifurcations and plates (label 0) in noisy 3D patches, each at a uniformly random 3D orientation."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["NEGATIVE_SHAPES", "random_rotation", "synthetic_nodule_patch", "synthetic_nodules"]

NEGATIVE_SHAPES = ("tube", "bifurcation", "plate")
"""The structures of label 0 (the false positives a nodule detector proposes)."""


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3×3 rotation matrix (Haar measure on SO(3), via QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _soft(distance: np.ndarray, radius: float, edge: float = 0.6) -> np.ndarray:
    """Anti-aliased occupancy in [0, 1] of the set {distance < radius}."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - radius) / edge, -30, 30)))


def _segment_distance(points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Distance of points (3, N) to the half-line from the origin along unit ``direction``."""
    t = np.clip(direction @ points, 0.0, None)
    return np.linalg.norm(points - t[None] * direction[:, None], axis=0)


def _line_distance(points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    t = direction @ points
    return np.linalg.norm(points - t[None] * direction[:, None], axis=0)


def _shape(kind: str, q: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Occupancy (N,) of one structure in its own frame q (3, N) (voxel units, centred)."""
    if kind == "nodule":
        radii = rng.uniform(0.11, 0.2) * size * rng.uniform(0.8, 1.2, size=3)
        scaled = np.linalg.norm(q / radii[:, None], axis=0) * radii.mean()
        return _soft(scaled, radii.mean())
    if kind == "tube":
        return _soft(_line_distance(q, np.array([1.0, 0.0, 0.0])), rng.uniform(0.05, 0.1) * size)
    if kind == "bifurcation":
        radius = rng.uniform(0.05, 0.09) * size
        half = np.deg2rad(rng.uniform(25, 55))
        branches = [np.array([-1.0, 0.0, 0.0]), np.array([np.cos(half), np.sin(half), 0.0]),
                    np.array([np.cos(half), -np.sin(half), 0.0])]
        distance = np.min([_segment_distance(q, b) for b in branches], axis=0)
        return _soft(distance, radius)
    if kind == "plate":
        return _soft(np.abs(q[0]), rng.uniform(0.03, 0.07) * size)
    raise ValueError(f"unknown structure {kind!r}; expected 'nodule' or one of {NEGATIVE_SHAPES}")


def synthetic_nodule_patch(
    rng: np.random.Generator,
    label: int,
    size: int = 32,
    noise: float = 0.25,
    distractor_probability: float = 0.5,
    kind: str | None = None,
) -> np.ndarray:
    """One (1, size, size, size) float32 patch: a centred structure at a random 3D orientation in noise.

    Args:
        rng: the random generator (seeded by the caller).
        label: 1 = nodule-like blob, 0 = tube, bifurcation or plate (drawn uniformly unless ``kind``).
        size: edge length of the cube patch.
        noise: std of the white noise; a smooth background texture of std ``noise`` is added too.
        distractor_probability: chance of an extra thin off-centre vessel (either label).
        kind: force the structure (``"nodule"``, ``"tube"``, ``"bifurcation"``, ``"plate"``).
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (vessel/plate) or 1 (nodule), got {label}")
    kind = kind or ("nodule" if label == 1 else NEGATIVE_SHAPES[rng.integers(len(NEGATIVE_SHAPES))])
    if (kind == "nodule") != (label == 1):
        raise ValueError(f"structure {kind!r} does not have label {label}")
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1)
    centre = rng.uniform(-size / 16, size / 16, size=3)
    q = random_rotation(rng).T @ (grid - centre[:, None])
    volume = rng.uniform(0.8, 1.2) * _shape(kind, q, size, rng)
    if rng.random() < distractor_probability:
        offset = rng.uniform(0.25, 0.4) * size * rng.choice([-1, 1], size=3)
        q_extra = random_rotation(rng).T @ (grid - offset[:, None])
        radius = rng.uniform(0.03, 0.05) * size
        volume = np.maximum(volume, 0.8 * _soft(_line_distance(q_extra, np.array([1.0, 0, 0])), radius))
    volume = volume.reshape(size, size, size)
    texture = gaussian_filter(rng.standard_normal((size, size, size)), sigma=2.0)
    texture *= noise / (texture.std() + 1e-8)
    volume = volume + texture + noise * rng.standard_normal((size, size, size))
    return volume[None].astype(np.float32)


def synthetic_nodules(
    num_samples: int,
    size: int = 32,
    seed: int = 0,
    positive_fraction: float = 0.5,
    noise: float = 0.25,
    distractor_probability: float = 0.5,
) -> list[dict]:
    """A seeded list of ``{"image": (1, size, size, size) float32, "label": int}`` for ``monai.data.Dataset``.

    Labels are exactly ``round(num_samples · positive_fraction)`` ones, in shuffled order. Every structure has
    its own uniformly random 3D rotation (not only cube symmetries), so a test set probes real rotations.
    """
    if num_samples < 0 or not 0 <= positive_fraction <= 1:
        raise ValueError(
            f"need num_samples ≥ 0 and positive_fraction in [0, 1], got {num_samples}, {positive_fraction}"
        )
    if size < 4:
        raise ValueError(f"size must be ≥ 4, got {size}")
    rng = np.random.default_rng(seed)
    labels = np.zeros(num_samples, dtype=np.int64)
    labels[: int(round(num_samples * positive_fraction))] = 1
    rng.shuffle(labels)
    return [
        {"image": synthetic_nodule_patch(rng, int(y), size, noise, distractor_probability), "label": int(y)}
        for y in labels
    ]
