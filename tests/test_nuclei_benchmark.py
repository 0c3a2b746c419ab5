"""The BBBC038 nuclei sample shipped with the package (real data, CC0), its loader's errors, and the real-data
benchmark end to end at a tiny setting (issue 23 item 1)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from monai_equivariant.data import BBBC038_SAMPLE_DIR, load_bbbc038_sample
from monai_equivariant.networks.nets import count_parameters
from test_benchmarks_smoke import load


def test_the_shipped_sample_is_the_real_image_with_its_provenance():
    image, foreground = load_bbbc038_sample()
    assert image.shape == foreground.shape == (1, 512, 512) and image.dtype == torch.float32
    assert set(torch.unique(foreground).tolist()) == {0.0, 1.0}
    labels = np.asarray(Image.open(BBBC038_SAMPLE_DIR / "mask2d.tif"))
    assert len(np.unique(labels)) - 1 == 125  # 125 labelled nuclei, as the provenance note says
    assert 0.05 < float(foreground.mean()) < 0.5  # nuclei cover part of the frame
    q01, q998 = torch.quantile(image.flatten(), torch.tensor([0.01, 0.998]))
    assert abs(float(q01)) < 1e-3 and abs(float(q998) - 1) < 1e-3  # scaled by its own percentiles
    provenance = (BBBC038_SAMPLE_DIR / "README.md").read_text()
    assert "CC0" in provenance and "stardist" in provenance and "BBBC038" in provenance


def _write(folder, image_size=(8, 8), mask_size=(8, 8)):
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.arange(np.prod(image_size), dtype=np.uint16).reshape(image_size)).save(folder / "img2d.tif")
    Image.fromarray((np.arange(np.prod(mask_size)) % 3).astype(np.uint16).reshape(mask_size)).save(
        folder / "mask2d.tif")
    return folder


def test_a_folder_in_the_sample_layout_loads(tmp_path):
    image, foreground = load_bbbc038_sample(_write(tmp_path / "sample"))
    assert image.shape == (1, 8, 8) and foreground.shape == (1, 8, 8)
    assert float(foreground[0, 0, 1]) == 1.0 and float(foreground[0, 0, 0]) == 0.0  # rows and columns as stored


def test_missing_corrupt_and_mismatched_files_are_named(tmp_path):
    folder = _write(tmp_path / "sample")
    (folder / "mask2d.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask file .*mask2d.tif.* does not exist; expected img2d.tif and"):
        load_bbbc038_sample(folder)
    (folder / "mask2d.tif").write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(ValueError, match=r"cannot read BBBC038 mask file .*mask2d.tif"):
        load_bbbc038_sample(folder)
    _write(folder, mask_size=(8, 6))
    with pytest.raises(ValueError, match=r"mask .*mask2d.tif.* is 8x6 but image .*img2d.tif.* is 8x8"):
        load_bbbc038_sample(folder)


@pytest.fixture(scope="module")
def bench():
    return load("nuclei_benchmark")


def test_the_split_keeps_test_and_training_regions_apart(bench):
    image = torch.arange(16.0).reshape(1, 4, 4)
    regions = bench.split(image, image)
    left, quadrant, test = regions["left_half"][0], regions["quadrant"][0], regions["test"][0]
    assert left.shape == (1, 4, 2) and quadrant.shape == (1, 2, 2) and test.shape == (2, 1, 2, 2)
    assert not set(test.flatten().tolist()) & set(left.flatten().tolist())  # no test pixel is trained on
    assert set(quadrant.flatten().tolist()) <= set(left.flatten().tolist())
    with pytest.raises(ValueError, match="square image of even side"):
        bench.split(torch.zeros(1, 4, 6), torch.zeros(1, 4, 6))


def test_rows_are_matched_at_equal_parameters_and_one_at_equal_flops(bench):
    fields = (2, 4, 8)
    channels = bench.network_channels(fields, ("p4", "plain", "plain_flops", "p4m", "se2"))
    p4 = count_parameters(bench.BUILDERS["p4"](channels["p4"]))
    for name in ("plain", "p4m", "se2"):
        params = count_parameters(bench.BUILDERS[name](channels[name]))
        assert abs(params - p4) / p4 < 0.1, (name, params, p4)
    x = torch.zeros(1, 1, 32, 32)
    gflops = {n: bench.forward_gflops(bench.BUILDERS[n](channels[n]), x) for n in ("p4", "plain_flops")}
    assert abs(gflops["plain_flops"] - gflops["p4"]) / gflops["p4"] < 0.15, gflops


def test_quick_run_writes_table_runs_and_figure(bench, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "nuclei"
    paths = bench.main(["--quick", "--rows", "p4", "plain_aug", "plain_aug_ensemble", "--settings", "quadrant",
                        "--out-dir", str(out)])
    table = paths["table"].read_text()
    for label in ("P4UNet", "U-Net + rotation aug., equal params", "U-Net + rotation aug. + p4 ensemble"):
        assert f"| {label} |" in table
    with open(paths["runs"]) as f:
        runs = list(csv.DictReader(f))
    assert {r["row"] for r in runs} == {"p4", "plain_aug", "plain_aug_ensemble"} and len(runs) == 3
    curves = np.array([[float(r[f"dice_{a:g}"]) for a in bench.CURVE_ANGLES] for r in runs])
    assert curves.shape == (3, 25) and ((curves >= 0) & (curves <= 1)).all()
    p4 = next(r for r in runs if r["row"] == "p4")
    dice = [float(p4[f"dice_{a:g}"]) for a in (0, 90, 180, 270)]
    assert max(dice) - min(dice) < 1e-5  # P4UNet is exact at the quarter turns, trained or not
    assert paths["figure"].stat().st_size > 10_000
