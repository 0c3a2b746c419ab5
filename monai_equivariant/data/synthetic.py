"""Built-in synthetic data with the real tasks' structure, so every workflow runs without downloads."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["synthetic_polyp"]


def synthetic_polyp(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One polyp-like sample: a textured, vignetted RGB frame with 1-2 rounded, oriented, lobed blobs.

    Returns:
        image (3, size, size) float32 in [0, 1]; mask (1, size, size) float32 in {0, 1}.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = (size - 1) / 2
    background = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 16)
    background = (background - background.mean()) / (background.std() + 1e-8)
    tissue = np.stack([0.55 + 0.08 * background, 0.30 + 0.05 * background, 0.25 + 0.04 * background])
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, size=2)
        a, b = rng.uniform(0.08 * size, 0.2 * size), rng.uniform(0.06 * size, 0.14 * size)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(theta) + dx * np.sin(theta)
        v = -dy * np.sin(theta) + dx * np.cos(theta)
        angle = np.arctan2(v, u)
        lobes = 1 + 0.15 * np.sin(rng.integers(2, 5) * angle + rng.uniform(0, 2 * np.pi))
        mask |= (u / a) ** 2 + (v / b) ** 2 <= lobes**2
    texture = gaussian_filter(rng.standard_normal((size, size)), sigma=1.0)
    shading = gaussian_filter(mask.astype(np.float64), sigma=2.0)
    polyp = np.stack([0.80 + 0.05 * texture, 0.45 + 0.05 * texture, 0.35 + 0.04 * texture])
    image = tissue * (1 - shading) + polyp * shading
    vignette = 1 - 0.5 * (((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * centre**2))
    image = image * vignette + 0.03 * rng.standard_normal((3, size, size))
    return np.clip(image, 0, 1).astype(np.float32), mask[None].astype(np.float32)
