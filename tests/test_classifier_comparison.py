"""benchmarks/classifier_comparison.py runs end to end in its --quick setting and its data has the structure the
comparison needs (mirror pairs that no rotation maps onto each other)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from test_benchmarks_smoke import load


@pytest.fixture(scope="module")
def bench():
    return load("classifier_comparison")


def test_quick_run_writes_both_tables(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        runs = bench.main(["--quick", "--tables", "main", "diagnosis", "--out-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    names = [row.name for row in bench.MAIN_ROWS + bench.DIAGNOSIS_ROWS]
    assert [r["model"] for r in runs] == names
    for r in runs:
        assert 0.0 <= r["test_error"] <= 1.0 and r["train_seconds"] > 0 and r["parameters"] > 0
    by_name = {r["model"]: r for r in runs}
    plain = by_name["plain CNN"]["parameters"]
    for name in ("p4", "p4m (default head: rotation-invariant)", "se2_8 (default kernel 5×5)"):
        assert abs(by_name[name]["parameters"] / plain - 1) < 0.35  # equal parameters, within tiny-width rounding
    assert by_name["se2_8 (default kernel 5×5)"]["kernel"] == 5
    assert by_name["se2_8, kernel_size=3 (old default)"]["kernel"] == 3
    flops = by_name["plain CNN, equal FLOPs (p4)"]["macs_per_pixel"]
    assert abs(flops / by_name["p4"]["macs_per_pixel"] - 1) < 0.35
    for stem, rows in (("classifier_comparison", bench.MAIN_ROWS), ("classifier_comparison_diagnosis",
                                                                     bench.DIAGNOSIS_ROWS)):
        text = (tmp_path / f"{stem}.md").read_text()
        assert text.startswith("Command: `python benchmarks/classifier_comparison.py --quick")
        assert all(f"| {row.name} |" in text for row in rows)
        with open(tmp_path / f"{stem}.csv", newline="") as f:
            assert [r["model"] for r in csv.DictReader(f)] == [row.name for row in rows]


def test_kernel_table_shows_what_45_degrees_keep(bench, tmp_path):
    bench.main(["--diagnose", "--out-dir", str(tmp_path)])
    lines = (tmp_path / "classifier_comparison_kernels.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["3×3", "5×5", "7×7"]
    assert [int(line.split("|")[2]) for line in lines[2:]] == [5, 13, 29]  # taps in the disk
    edge_norm = [float(line.split("|")[3].split("/")[1]) for line in lines[2:]]
    assert edge_norm == sorted(edge_norm)  # a larger kernel keeps more of a rotated edge


def test_glyphs_are_mirror_pairs_not_rotations_of_each_other(bench):
    size = 24
    for a, b in bench.MIRROR_PAIRS:
        mirrored = [[(r, -c) for r, c in line] for line in bench.GLYPHS[a]]
        assert sorted(map(sorted, mirrored)) == sorted(map(sorted, bench.GLYPHS[b]))
        for quarter in range(4):  # no 90° rotation maps a onto b (nor, by symmetry of the drawing, any angle)
            c, s = round(math.cos(quarter * math.pi / 2)), round(math.sin(quarter * math.pi / 2))
            rotated = [[(c * r - s * col, s * r + c * col) for r, col in line] for line in bench.GLYPHS[a]]
            assert sorted(map(sorted, rotated)) != sorted(map(sorted, bench.GLYPHS[b]))
    images, labels = bench.glyph_set(12, size, seed=0)
    assert images.shape == (12, 1, size, size) and images.dtype == torch.float32
    assert np.bincount(labels.numpy()).tolist() == [2] * len(bench.CLASSES)
    again, _ = bench.glyph_set(12, size, seed=0)
    torch.testing.assert_close(images, again, rtol=0, atol=0)  # reproducible


def test_rotation_augmentation_keeps_shape_and_turns_each_image(bench):
    images, _ = bench.glyph_set(4, 16, seed=1)
    rotated = bench.rotate_batch(images, torch.Generator().manual_seed(0))
    assert rotated.shape == images.shape
    assert all((rotated[i] - images[i]).abs().max() > 0.1 for i in range(4))
