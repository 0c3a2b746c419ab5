"""The Medical Segmentation Decathlon loader (monai_equivariant.data.decathlon) on tiny NIfTI task folders the tests
write, and the synthetic organ set written in that layout (monai_equivariant.data.synthetic_organs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_equivariant.data import (
    ORGAN_LABELS,
    decathlon_datalist,
    decathlon_labels,
    decathlon_modalities,
    organ_datalist,
    organ_in_channels,
    organ_num_classes,
    synthetic_organ_volume,
    write_decathlon_json,
    write_nifti,
    write_synthetic_organ_dataset,
)
from monai_equivariant.data.synthetic import SYNTHETIC_STAMP


def write_task(root: Path, count: int = 3, shape=(6, 10, 12), spacing=(2.5, 1.0, 1.0)) -> Path:
    """A tiny MSD task folder (imagesTr/, labelsTr/, dataset.json) of ``count`` random (z, y, x) pairs."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        name = f"case_{index}.nii.gz"
        write_nifti(root / "imagesTr" / name, rng.random(shape).astype(np.float32), spacing)
        write_nifti(root / "labelsTr" / name, (rng.random(shape) > 0.7).astype(np.uint8), spacing)
        pairs.append((f"./imagesTr/{name}", f"./labelsTr/{name}"))
    write_decathlon_json(root, "Task99_Tiny", {0: "background", 1: "spleen"}, "CT", pairs)
    return root


def test_decathlon_datalist_reads_the_training_pairs_in_order_with_absolute_paths(tmp_path):
    root = write_task(tmp_path / "Task99_Tiny")
    items = decathlon_datalist(root)
    assert [Path(i["image"]).name for i in items] == ["case_0.nii.gz", "case_1.nii.gz", "case_2.nii.gz"]
    assert all(Path(i["image"]).is_absolute() and Path(i["label"]).parent.name == "labelsTr" for i in items)
    assert decathlon_labels(root) == {0: "background", 1: "spleen"} and decathlon_modalities(root) == {0: "CT"}
    assert organ_num_classes(root) == 2 and organ_in_channels(root) == 1
    assert organ_num_classes("") == len(ORGAN_LABELS) == 4 and organ_in_channels(None) == 1


def test_write_nifti_puts_z_last_with_the_anisotropic_spacing_in_the_affine(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # (z, y, x)
    path = write_nifti(tmp_path / "v.nii.gz", volume, (2.5, 1.0, 0.8))
    image = nib.load(str(path))
    assert image.shape == (6, 5, 4)  # NIfTI (x, y, z)
    assert np.allclose(np.diag(image.affine), [0.8, 1.0, 2.5, 1.0])
    assert np.allclose(image.header.get_zooms(), (0.8, 1.0, 2.5))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), volume)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "dataset.json").unlink(), r"has no dataset\.json.*imagesTr"),
        (lambda root: (root / "dataset.json").write_text("{oops"), r"cannot read .*dataset\.json.* as JSON"),
        (lambda root: (root / "dataset.json").write_text(json.dumps({"training": []})), r"no non-empty 'training'"),
        (lambda root: (root / "labelsTr" / "case_1.nii.gz").unlink(), r"label file .*case_1\.nii\.gz.* does not exist"),
        (lambda root: (root / "imagesTr" / "case_2.nii.gz").write_bytes(b"not a nifti"),
         r"cannot read image file .*case_2\.nii\.gz.* as NIfTI"),
        (lambda root: write_nifti(root / "labelsTr" / "case_0.nii.gz", np.zeros((6, 10, 11), np.uint8), (2.5, 1, 1)),
         r"label .*case_0\.nii\.gz.* is \(11, 10, 6\) but its image .*case_0\.nii\.gz.* is \(12, 10, 6\)"),
    ],
    ids=["no-dataset-json", "bad-json", "empty-training", "missing-label", "not-nifti", "shape-mismatch"],
)
def test_decathlon_datalist_names_the_broken_file(tmp_path, damage, message):
    root = write_task(tmp_path / "task")
    damage(root)
    with pytest.raises(ValueError, match=message):
        decathlon_datalist(root)


def test_a_truncated_volume_passes_the_header_read_but_not_the_decode(tmp_path):
    root = write_task(tmp_path / "task", shape=(8, 16, 16))
    path = root / "imagesTr" / "case_1.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2])[:-8])  # half the voxels, and the gzip trailer cut off
    assert len(decathlon_datalist(root, decode=False)) == 3  # the header is intact
    with pytest.raises(ValueError, match=r"cannot read image file .*case_1\.nii\.gz.* as NIfTI"):
        decathlon_datalist(root)


def test_decathlon_datalist_refuses_a_missing_folder_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match=r"dataset_dir .*nowhere.* does not exist; expected a folder holding dataset"):
        decathlon_datalist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="dataset_dir is empty"):
        decathlon_datalist("")
    root = write_task(tmp_path / "task")
    content = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(dict(content, labels={"1": "spleen"})))
    with pytest.raises(ValueError, match=r"'labels' must map 0, 1, \.\.\., K-1"):
        decathlon_labels(root)


def test_synthetic_organ_volume_has_left_right_and_central_organs_on_their_sides():
    rng = np.random.default_rng(3)
    for _ in range(4):
        image, label = synthetic_organ_volume(rng, (12, 32, 32))
        assert image.shape == label.shape == (12, 32, 32) and image.dtype == np.float32 and label.dtype == np.uint8
        assert set(np.unique(label)) == {0, 1, 2, 3}
        centre_x = {k: np.nonzero(label == k)[2].mean() for k in (1, 2, 3)}
        # x grows towards the patient's right (RAS): the left organ at low x, the right one at high x
        assert centre_x[1] < 15.5 - 4 and centre_x[2] > 15.5 + 4 and abs(centre_x[3] - 15.5) < 4
        for k in (1, 2, 3):  # organs are brighter than the body around them
            assert image[label == k].mean() > image[(label == 0) & (image > 0.15)].mean()
    with pytest.raises(ValueError, match="max_tilt must be in"):
        synthetic_organ_volume(rng, max_tilt=90)
    with pytest.raises(ValueError, match=r"shape must be 3 sizes \(z, y, x\), each >= 8"):
        synthetic_organ_volume(rng, (4, 32, 32))


def test_synthetic_organ_set_is_in_the_decathlon_layout_stamped_and_reused(tmp_path):
    root = write_synthetic_organ_dataset(tmp_path / "organs", num_samples=3, shape=(8, 16, 16), seed=1)
    items = decathlon_datalist(root)
    assert len(items) == 3 and (root / SYNTHETIC_STAMP).is_file()
    first = nib.load(items[0]["image"])
    assert first.shape == (16, 16, 8) and np.allclose(first.header.get_zooms(), (1.0, 1.0, 2.5))  # z 2.5x in-plane
    assert decathlon_labels(root) == ORGAN_LABELS
    stamp = (root / SYNTHETIC_STAMP).stat().st_mtime_ns
    write_synthetic_organ_dataset(root, num_samples=3, shape=(8, 16, 16), seed=1)
    assert (root / SYNTHETIC_STAMP).stat().st_mtime_ns == stamp  # intact: reused, not written again
    (root / "labelsTr" / "organs_001.nii.gz").write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="synthetic organ set: .*of another size"):
        write_synthetic_organ_dataset(root, num_samples=3, shape=(8, 16, 16), seed=1)
    assert len(decathlon_datalist(root)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".organs.")]  # no temporary folder left


def test_synthetic_organ_set_is_written_atomically_and_never_replaces_a_foreign_folder(tmp_path, monkeypatch):
    import monai_equivariant.data.synthetic_organs as organs

    root = write_synthetic_organ_dataset(tmp_path / "organs", num_samples=2, shape=(8, 16, 16))
    before = sorted(p.name for p in (root / "imagesTr").iterdir())

    def failing(rng, shape):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(organs, "synthetic_organ_volume", failing)
    with pytest.raises(RuntimeError, match="killed"):
        write_synthetic_organ_dataset(root, num_samples=4, shape=(8, 16, 16))  # other parameters: rewritten
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == before and len(decathlon_datalist(root)) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".organs.")]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "scan.nii.gz").write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"'.*mine' exists and is not a synthetic organ set .*scan\.nii\.gz.*refusing"):
        write_synthetic_organ_dataset(mine, num_samples=2, shape=(8, 16, 16))


def test_organ_datalist_splits_msd_pairs_and_evaluation_never_writes_the_training_set(tmp_path):
    task = write_task(tmp_path / "task", count=8)
    split = organ_datalist(task, tmp_path / "lists", seed=0)
    assert [len(split[k]) for k in ("training", "validation", "test")] == [6, 1, 1]
    assert not (tmp_path / "lists").exists()  # a real dataset: nothing written
    held_out = organ_datalist("", tmp_path / "lists", synthetic_samples=4, volume_size=(8, 16, 16), training=False)
    assert (tmp_path / "lists" / "synthetic_organs_held_out").is_dir()
    assert not (tmp_path / "lists" / "synthetic_organs").exists()
    trained = organ_datalist("", tmp_path / "lists", synthetic_samples=5, volume_size=(8, 16, 16))
    assert "synthetic_organs/" in trained["training"][0]["image"] and sum(len(v) for v in trained.values()) == 5
    # evaluation reads the training run's set, whatever its own --synthetic_samples
    again = organ_datalist("", tmp_path / "lists", synthetic_samples=7, volume_size=(8, 16, 16), training=False)
    assert again == trained and sum(len(v) for v in held_out.values()) == 4
    # ... and splits it as training did (its seed is in the set's stamp), so its test volumes were never trained on
    assert organ_datalist("", tmp_path / "lists", seed=5, training=False) == trained
