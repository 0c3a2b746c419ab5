"""The helpers that replaced repeated code (issue 20 §3): one "empty folder" rule, one NoduleMNIST3D download, the
FROC metric's candidates shared with its handler."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_equivariant.data.folders import UNSET_FOLDER, existing_folder, is_unset_folder, output_folder, refuse_file
from monai_equivariant.data.nodule_mnist3d import (
    NODULE_MNIST3D_FILES,
    NODULE_MNIST3D_KEYS,
    nodule_mnist3d,
    nodule_mnist3d_file,
    nodule_mnist3d_path,
)
from monai_equivariant.metrics.froc import LUNA16FROCMetric, luna16_froc


@pytest.mark.parametrize("value", [None, "", "  ", "None", "null", " null "])
def test_unset_folder_values_select_the_synthetic_default(value):
    assert is_unset_folder(value)


@pytest.mark.parametrize("value", ["data", Path("data"), "none", "NULL", "0", Path(".")])
def test_any_other_value_is_a_folder(value):
    assert not is_unset_folder(value)
    assert str(value).strip() not in UNSET_FOLDER


def test_data_entry_points_share_the_unset_rule(tmp_path):
    from monai_equivariant.data import histopathology_dataset
    from monai_equivariant.data.nodule_datalist import nodule_data_kind

    for value in (None, "", "None", "null"):
        assert nodule_data_kind(value) == "synthetic"
        assert len(histopathology_dataset(value, "training", synthetic_samples=2, synthetic_size=8)) == 2


def test_refuse_file_names_the_argument_and_leaves_folders_and_missing_paths_alone(tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert refuse_file(tmp_path, "root_dir", "") == tmp_path
    assert refuse_file(str(tmp_path / "missing"), "root_dir", "") == tmp_path / "missing"
    with pytest.raises(ValueError, match=r"^cache_dir '.*a_file' is a file, not a folder: give a folder$"):
        refuse_file(tmp_path / "a_file", "cache_dir", ": give a folder")
    # the two folder checks built on it keep their messages
    with pytest.raises(ValueError, match=r"dataset_dir '.*a_file' is a file, not a folder; expected a folder holding X"):
        existing_folder(tmp_path / "a_file", "dataset_dir", "X")
    with pytest.raises(ValueError, match=r"dataset_dir '.*missing' does not exist; expected a folder holding X"):
        existing_folder(tmp_path / "missing", "dataset_dir", "X")
    with pytest.raises(ValueError, match=r"out '.*a_file' is a file, not a folder: give a folder path \(created"):
        output_folder(tmp_path / "a_file", "out")


def test_intact_synthetic_set_checks_a_set_against_its_own_stamp(tmp_path):
    from monai_equivariant.data import write_synthetic_polyp_dataset
    from monai_equivariant.data.synthetic import SYNTHETIC_STAMP, intact_synthetic_set

    root = write_synthetic_polyp_dataset(tmp_path / "set", num_samples=3, size=16, seed=1)
    assert intact_synthetic_set(root) and intact_synthetic_set(str(root))
    assert not intact_synthetic_set(tmp_path / "missing")
    next(iter(sorted((root / "masks").iterdir()))).write_bytes(b"torn")
    assert not intact_synthetic_set(root)
    (root / SYNTHETIC_STAMP).write_text("{not json")
    assert not intact_synthetic_set(root)


def test_nodule_mnist3d_file_names_the_published_archive_or_refuses_the_size():
    assert nodule_mnist3d_file(28) == NODULE_MNIST3D_FILES[28]
    assert nodule_mnist3d_file(64)[0] == "nodulemnist3d_64.npz"
    with pytest.raises(ValueError, match=r"sizes \[28, 64\], got 32"):
        nodule_mnist3d_file(32)
    assert NODULE_MNIST3D_KEYS == ("train_images", "train_labels", "val_images", "val_labels", "test_images",
                                   "test_labels")


def _npz(path: Path, edge: int = 28) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = (rng.random((2, edge, edge, edge)) * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [1]], np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def test_nodule_mnist3d_path_downloads_through_download_nodule_mnist3d(tmp_path, monkeypatch):
    """``nodule_mnist3d_path(download=True)`` is the download module's fetch: a file without the NoduleMNIST3D keys
    (but with the expected MD5) is deleted and named, as ``download_nodule_mnist3d`` does."""
    import monai.apps.utils as apps_utils

    source = tmp_path / "source.npz"
    np.savez_compressed(source, images=np.zeros(2))
    name, url, _ = NODULE_MNIST3D_FILES[28]
    monkeypatch.setitem(NODULE_MNIST3D_FILES, 28, (name, url, hashlib.md5(source.read_bytes()).hexdigest()))
    monkeypatch.setattr(apps_utils, "_download_with_progress",
                        lambda url, filepath, progress=True: Path(filepath).write_bytes(source.read_bytes()))
    with pytest.raises(ValueError, match="is not NoduleMNIST3D: keys .*train_images"):
        nodule_mnist3d_path(tmp_path / "root", download=True)
    assert not (tmp_path / "root" / name).exists()


def test_nodule_mnist3d_of_the_wrong_edge_is_named(tmp_path):
    _npz(tmp_path / "nodulemnist3d.npz", edge=8)
    with pytest.raises(ValueError, match=r"expected train_images of shape \(N, 28, 28, 28\)"):
        nodule_mnist3d(tmp_path, "train")


def test_froc_candidates_are_what_aggregate_scores():
    metric = LUNA16FROCMetric()
    assert metric.candidates() is None
    probs, labels, scans = [0.9, 0.2, 0.7, 0.4], [1, 0, 0, 1], ["a", "a", "b", "c"]
    metric(torch.tensor(probs), torch.tensor(labels), scans=scans)
    p, y, keys = metric.candidates()
    assert p.shape == y.shape == keys.shape == (4, 1)
    assert p.reshape(-1).tolist() == pytest.approx(probs) and y.reshape(-1).tolist() == labels
    assert torch.unique(keys).numel() == 3
    assert metric.aggregate()["score"] == luna16_froc(probs, labels, num_scans=3)["score"]
    assert luna16_froc([torch.tensor(0.9), torch.tensor(0.2)], (1, 0), num_scans=1)["score"] == 1.0


def test_benchmark_timing_and_distributed_shutdown_live_where_they_are_used():
    """``utils`` is equivariance checks and export only: the torchrun shutdown is the bundles' (``bundle/``), the
    interleaved timing the benchmarks' (``benchmarks/timing.py``)."""
    import json

    import monai_equivariant.bundle as bundle
    import monai_equivariant.utils as utils

    assert not hasattr(utils, "shutdown_distributed") and not hasattr(utils, "interleaved_times")
    assert "shutdown_distributed" in bundle.__all__
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "benchmarks" / "timing.py").is_file()
    for config in sorted(repo.glob("bundles/*/configs/multi_gpu_train.json")):
        assert "$monai_equivariant.bundle.shutdown_distributed(@network)" in json.loads(config.read_text())["finalize"]
