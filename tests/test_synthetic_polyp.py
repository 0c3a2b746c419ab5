"""Synthetic endoscopy frames: dark border around a round/octagonal view, highlights, varied lighting, quick."""

from __future__ import annotations

import json
import time

import numpy as np

from monai_equivariant.data.synthetic import (
    SYNTHETIC_POLYP_VERSION,
    field_of_view,
    synthetic_polyp,
    write_synthetic_polyp_dataset,
)


def test_frames_have_a_dark_border_highlights_and_varied_lighting() -> None:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    frames = [synthetic_polyp(rng, 64) for _ in range(40)]
    assert (time.perf_counter() - start) / len(frames) < 0.05  # quick: a few ms a frame
    brightness = []
    for image, mask in frames:
        assert image.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
        assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
        assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
        corners = image[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.max() < 0.08  # the dark border: corners are outside every field of view
        centre = image[:, 24:40, 24:40]
        assert centre.mean() > 4 * corners.mean() + 0.1  # the lit view is much brighter
        assert image.max() > 0.97  # a specular highlight saturates
        brightness.append(float(centre.mean()))
    assert np.std(brightness) > 0.03  # lighting varies from frame to frame


def test_field_of_view_is_round_or_octagonal_and_masks_stay_inside() -> None:
    rng = np.random.default_rng(1)
    views = [field_of_view(64, rng) for _ in range(20)]
    fractions = {round(float(v.mean()), 2) for v in views}
    assert all(0.55 < f < 0.9 for f in fractions) and len(fractions) > 3
    assert all(not v[0, 0] and not v[-1, -1] and v[32, 32] for v in views)
    image, mask = synthetic_polyp(np.random.default_rng(2), 48)
    assert mask[0, :2].sum() == 0 and mask[0, :, :2].sum() == 0  # no polyp pixels in the border


def test_dataset_stamp_regenerates_sets_written_by_older_generators(tmp_path) -> None:
    root = write_synthetic_polyp_dataset(tmp_path / "set", num_samples=3, size=32, seed=0)
    stamp = json.loads((root / "synthetic.json").read_text())
    assert stamp["version"] == SYNTHETIC_POLYP_VERSION
    old = dict(stamp, version=SYNTHETIC_POLYP_VERSION - 1)
    (root / "synthetic.json").write_text(json.dumps(old))
    before = (root / "images" / "synthetic_0000.png").stat().st_mtime_ns
    time.sleep(0.01)
    write_synthetic_polyp_dataset(root, num_samples=3, size=32, seed=0)
    assert (root / "images" / "synthetic_0000.png").stat().st_mtime_ns != before
    assert json.loads((root / "synthetic.json").read_text())["version"] == SYNTHETIC_POLYP_VERSION
