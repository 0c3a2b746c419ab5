import hashlib
import importlib
import zlib
from pathlib import Path

import numpy as np
import pytest

from monai_equivariant.data import (
    extract_patch,
    luna16_patches,
    nodule_mnist3d,
    read_metaimage,
    read_metaimage_header,
    synthetic_nodule_patch,
    synthetic_nodules,
    world_to_voxel,
)
from monai_equivariant.data.synthetic_nodules import random_rotation
from monai_equivariant.metrics import classification_scores, froc_curve, luna16_froc

# ---------------------------------------------------------------- NoduleMNIST3D


def _write_npz(path: Path, size: int, counts=(6, 2, 3)) -> dict:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 1), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.mark.parametrize("size,name", [(28, "nodulemnist3d.npz"), (64, "nodulemnist3d_64.npz")])
def test_nodule_mnist3d_reads_real_layout(tmp_path, size, name):
    arrays = _write_npz(tmp_path / name, size)
    for split in ("train", "val", "test"):
        data = nodule_mnist3d(tmp_path, split, size=size)
        assert len(data) == len(arrays[f"{split}_labels"])
        assert data[0]["image"].shape == (1, size, size, size) and data[0]["image"].dtype == np.float32
        np.testing.assert_allclose(data[-1]["image"][0], arrays[f"{split}_images"][-1] / 255.0, rtol=1e-6)
        assert [d["label"] for d in data] == arrays[f"{split}_labels"].reshape(-1).tolist()


def test_nodule_mnist3d_missing_file_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="nodulemnist3d_64.npz.*train_images"):
        nodule_mnist3d(tmp_path, size=64)
    with pytest.raises(ValueError, match="split"):
        nodule_mnist3d(tmp_path, split="training")
    with pytest.raises(ValueError, match="sizes"):
        nodule_mnist3d(tmp_path, size=32)


def test_nodule_mnist3d_existing_file_is_not_downloaded_and_bad_md5_is_clear(tmp_path, monkeypatch):
    import monai.apps.utils as apps_utils

    def no_network(*args, **kwargs):
        raise AssertionError("network used although the file exists")

    monkeypatch.setattr(apps_utils, "_download_with_progress", no_network)
    _write_npz(tmp_path / "nodulemnist3d.npz", 28)
    assert len(nodule_mnist3d(tmp_path, "val", download=True)) == 2  # present: used as is
    with pytest.raises(ValueError, match="published MD5 8755a7e9e05a4d9ce80a24c3e7a256f3"):
        nodule_mnist3d(tmp_path, "val", check_md5=True)


def test_nodule_mnist3d_download_with_wrong_md5_is_refused(tmp_path, monkeypatch):
    import monai.apps.utils as apps_utils

    def fake_download(url, filepath, progress=True):  # a corrupt transfer, no network
        Path(filepath).write_bytes(b"not an npz")

    monkeypatch.setattr(apps_utils, "_download_with_progress", fake_download)
    with pytest.raises(ValueError, match="published MD5"):
        nodule_mnist3d(tmp_path, "train", download=True)
    assert not (tmp_path / "nodulemnist3d.npz").exists()


def test_nodule_mnist3d_download_with_right_md5(tmp_path, monkeypatch):
    import monai.apps.utils as apps_utils
    module = importlib.import_module("monai_equivariant.data.nodule_mnist3d")

    source = tmp_path / "source.npz"
    _write_npz(source, 28)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    name, url, _ = module.NODULE_MNIST3D_FILES[28]
    monkeypatch.setitem(module.NODULE_MNIST3D_FILES, 28, (name, url, md5))
    def fake_download(url, filepath, progress=True):
        Path(filepath).write_bytes(source.read_bytes())

    monkeypatch.setattr(apps_utils, "_download_with_progress", fake_download)
    assert len(nodule_mnist3d(tmp_path / "root", "test", download=True)) == 3


# ---------------------------------------------------------------- LUNA16 (.mhd/.raw + candidates.csv)

SPACING_XYZ = (0.8, 0.7, 2.0)
ORIGIN_XYZ = (-10.0, 5.0, 100.0)


def _write_mhd(path: Path, volume_zyx: np.ndarray, element="MET_SHORT", msb=False, spacing=SPACING_XYZ,
               origin=ORIGIN_XYZ, local=False, compressed=False) -> None:
    dtype = {"MET_SHORT": "i2", "MET_FLOAT": "f4", "MET_UCHAR": "u1"}[element]
    data = volume_zyx.astype(np.dtype(dtype).newbyteorder(">" if msb else "<")).tobytes()
    if compressed:
        data = zlib.compress(data)
    nz, ny, nx = volume_zyx.shape
    lines = [
        "ObjectType = Image", "NDims = 3", "BinaryData = True",
        f"BinaryDataByteOrderMSB = {msb}", f"CompressedData = {compressed}",
        "TransformMatrix = 1 0 0 0 1 0 0 0 1", f"Offset = {' '.join(map(str, origin))}",
        "CenterOfRotation = 0 0 0", "AnatomicalOrientation = RAI",
        f"ElementSpacing = {' '.join(map(str, spacing))}", f"DimSize = {nx} {ny} {nz}",
        f"ElementType = {element}", f"ElementDataFile = {'LOCAL' if local else path.stem + '.raw'}",
    ]
    header = ("\n".join(lines) + "\n").encode()
    if local:
        path.write_bytes(header + data)
    else:
        path.write_bytes(header)
        path.with_suffix(".raw").write_bytes(data)


def _volume(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 400, size=(9, 12, 14)).astype(np.int16)


@pytest.mark.parametrize("kwargs", [
    {}, {"msb": True}, {"element": "MET_FLOAT"}, {"local": True}, {"compressed": True},
])
def test_metaimage_reader_round_trip(tmp_path, kwargs):
    volume = _volume()
    _write_mhd(tmp_path / "scan.mhd", volume, **kwargs)
    array, header = read_metaimage(tmp_path / "scan.mhd")
    assert array.shape == (9, 12, 14) and header.dim_size == (14, 12, 9)
    np.testing.assert_array_equal(np.asarray(array), volume)
    assert header.spacing == SPACING_XYZ and header.origin == ORIGIN_XYZ


def test_world_to_voxel_order_and_direction(tmp_path):
    _write_mhd(tmp_path / "scan.mhd", _volume())
    header = read_metaimage_header(tmp_path / "scan.mhd")
    # voxel (z, y, x) = (3, 4, 5) is at world x = -10 + 5·0.8, y = 5 + 4·0.7, z = 100 + 3·2
    np.testing.assert_allclose(world_to_voxel((-6.0, 7.8, 106.0), header), (3, 4, 5), atol=1e-12)
    flipped = header.__class__(**{**header.__dict__, "direction": np.diag([-1.0, 1.0, 1.0])})
    np.testing.assert_allclose(world_to_voxel((-14.0, 7.8, 106.0), flipped), (3, 4, 5), atol=1e-12)


def test_metaimage_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="scan.mhd"):
        read_metaimage(tmp_path / "scan.mhd")
    _write_mhd(tmp_path / "scan.mhd", _volume())
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(FileNotFoundError, match="scan.raw"):
        read_metaimage(tmp_path / "scan.mhd")
    _write_mhd(tmp_path / "short.mhd", _volume())
    (tmp_path / "short.raw").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="fewer than"):
        read_metaimage(tmp_path / "short.mhd")
    (tmp_path / "bad.mhd").write_text("NDims = 3\nDimSize = 2 2 2\nElementType = MET_WEIRD\nElementDataFile = x.raw\n")
    with pytest.raises(ValueError, match="unsupported ElementType"):
        read_metaimage_header(tmp_path / "bad.mhd")


def test_extract_patch_equals_slice_at_native_spacing_and_pads_with_air():
    volume = np.arange(7 * 8 * 9, dtype=np.float32).reshape(7, 8, 9)
    patch = extract_patch(volume, (3, 4, 4), (1.0, 1.0, 1.0), size=5, new_spacing=1.0)
    np.testing.assert_array_equal(patch, volume[1:6, 2:7, 2:7])
    corner = extract_patch(volume, (0, 0, 0), (1.0, 1.0, 1.0), size=3, new_spacing=1.0, pad_value=-1000)
    assert corner[0].min() == -1000 and corner[1, 1, 1] == volume[0, 0, 0]
    np.testing.assert_array_equal(corner[1:, 1:, 1:], volume[:2, :2, :2])
    # isotropic resampling: samples at ±0.5 mm are ±0.25 voxel in z (2 mm) and ±0.5 voxel in y, x (1 mm);
    # the volume is linear (72 z + 9 y + x), so trilinear interpolation is exact
    half = extract_patch(volume, (3, 4, 4), (2.0, 1.0, 1.0), size=2, new_spacing=1.0)
    np.testing.assert_allclose(half[:, 0, 0], [72 * 2.75 + 9 * 3.5 + 3.5, 72 * 3.25 + 9 * 3.5 + 3.5], rtol=1e-6)


def _luna_root(tmp_path: Path) -> tuple[Path, list]:
    root = tmp_path / "luna16"
    (root / "subset0").mkdir(parents=True)
    (root / "subset1").mkdir()
    volumes = {}
    prefix = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
    for subset, uid in (("subset0", prefix + "100"), ("subset1", prefix + "200")):
        volume = np.full((10, 16, 16), -1000, dtype=np.int16)
        volume[5, 8, 6] = 300  # a bright voxel: z=5, y=8, x=6
        _write_mhd(root / subset / f"{uid}.mhd", volume, spacing=(1.0, 1.0, 2.0), origin=(-8.0, 2.0, 50.0))
        volumes[uid] = volume
    uids = list(volumes)
    rows = [
        (uids[0], -8.0 + 6, 2.0 + 8, 50.0 + 5 * 2, 1),  # on the bright voxel
        (uids[0], -8.0 + 1, 2.0 + 1, 50.0, 0),  # near a corner (padded)
        (uids[1], -8.0 + 6, 2.0 + 8, 50.0 + 10, 0),
    ]
    text = "seriesuid,coordX,coordY,coordZ,class\n" + "".join(f"{u},{x},{y},{z},{c}\n" for u, x, y, z, c in rows)
    (root / "candidates.csv").write_text(text)
    return root, rows


def test_luna16_patches_centred_clipped_and_cached(tmp_path):
    root, rows = _luna_root(tmp_path)
    cache = tmp_path / "cache"
    data = luna16_patches(root, patch_size=5, spacing=1.0, hu_window=(-1000, 400), cache_dir=cache)
    assert [d["label"] for d in data] == [1, 0, 0]
    first = data[0]["image"]
    assert first.shape == (1, 5, 5, 5) and first.dtype == np.float32
    assert first[0, 2, 2, 2] == pytest.approx(1300 / 1400)  # (300 + 1000) / 1400 at the centre
    # 2 mm slices sampled at 1 mm: the voxel one mm above/below is halfway to air
    assert first[0, 1, 2, 2] == pytest.approx(0.5 * 1300 / 1400)
    assert first[0].sum() == pytest.approx(2 * 1300 / 1400)  # nothing else lights up: x/y/z not swapped
    assert data[1]["image"].min() == 0.0 and data[1]["image"].max() <= 1.0
    assert len(list(cache.glob("*.npy"))) == 2
    # second call reads the cache (prove it by corrupting the scans)
    for raw in root.rglob("*.raw"):
        raw.write_bytes(b"")
    again = luna16_patches(root, patch_size=5, spacing=1.0, cache_dir=cache)
    np.testing.assert_array_equal(again[0]["image"], first)


def test_luna16_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="subset"):
        luna16_patches(tmp_path / "nowhere")
    root, rows = _luna_root(tmp_path)
    with pytest.raises(FileNotFoundError, match="other.csv"):
        luna16_patches(root, candidates_file=root / "other.csv")
    csv_text = (root / "candidates.csv").read_text()
    (root / "candidates.csv").write_text(csv_text + "1.2.3.missing,0,0,0,1\n")
    with pytest.raises(FileNotFoundError, match="1.2.3.missing.mhd"):
        luna16_patches(root, patch_size=3)
    assert len(luna16_patches(root, patch_size=3, missing_scans="skip")) == 3
    (root / "candidates.csv").write_text(csv_text + f"{rows[0][0]},100.0,5.0,60.0,0\n")
    with pytest.raises(ValueError, match=r"100\.0, 5\.0, 60\.0.*outside its scan"):
        luna16_patches(root, patch_size=3)
    (root / "candidates.csv").write_text("uid,x,y,z\n")
    with pytest.raises(ValueError, match="coordX"):
        luna16_patches(root)


# ---------------------------------------------------------------- synthetic nodules


def test_synthetic_nodules_seeded_balanced_and_shaped():
    data = synthetic_nodules(8, size=16, seed=3)
    again = synthetic_nodules(8, size=16, seed=3)
    assert sum(d["label"] for d in data) == 4
    assert all(d["image"].shape == (1, 16, 16, 16) and d["image"].dtype == np.float32 for d in data)
    np.testing.assert_array_equal(data[5]["image"], again[5]["image"])
    assert not np.array_equal(data[0]["image"], synthetic_nodules(8, size=16, seed=4)[0]["image"])


def test_synthetic_structures_and_orientations():
    rng = np.random.default_rng(0)
    rotations = np.stack([random_rotation(rng) for _ in range(50)])
    identity = np.broadcast_to(np.eye(3), (50, 3, 3))
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), identity, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    # arbitrary orientations: entries are not just 0/±1 (cube symmetries)
    assert np.abs(np.abs(rotations) - np.round(np.abs(rotations))).max() > 0.3
    clean = dict(noise=0.0, distractor_probability=0.0)
    blob = synthetic_nodule_patch(rng, 1, 24, **clean)[0]
    tube = synthetic_nodule_patch(rng, 0, 24, kind="tube", **clean)[0]
    plate = synthetic_nodule_patch(rng, 0, 24, kind="plate", **clean)[0]
    assert blob[12, 12, 12] > 0.7 and blob[0].max() < 0.05  # compact: nothing at the faces
    assert (tube > 0.5).sum() < (plate > 0.5).sum()
    for kind in ("tube", "bifurcation", "plate"):  # elongated: reach the border
        edges = synthetic_nodule_patch(rng, 0, 24, kind=kind, **clean)[0]
        faces = max(edges[[0, -1]].max(), edges[:, [0, -1]].max(), edges[:, :, [0, -1]].max())
        assert faces > 0.5, kind
    with pytest.raises(ValueError, match="label"):
        synthetic_nodule_patch(rng, 2)
    with pytest.raises(ValueError, match="does not have label"):
        synthetic_nodule_patch(rng, 1, kind="tube")


# ---------------------------------------------------------------- FROC / AUC


def test_luna16_froc_hand_computed():
    # 2 scans, 4 nodules (one never proposed). TP scores 0.9, 0.6, 0.05; FP scores 0.8, 0.7, 0.5, 0.2, 0.1.
    # thresholds -> (FPs/scan, sensitivity): 0.9 (0, 1/4), 0.8 (1/2, 1/4), 0.7 (1, 1/4), 0.6 (1, 2/4),
    # 0.5 (3/2, 2/4), 0.2 (2, 2/4), 0.1 (5/2, 2/4), 0.05 (5/2, 3/4).
    # read off (largest sensitivity at each rate): 1/8, 1/4, 1/2 -> 1/4; 1 -> 2/4; 2 -> 2/4; 4, 8 (past 5/2) -> 3/4;
    # FROC = 3.25 / 7. MONAI alone would drop the lowest threshold (0.05) and report 2/4 at 4 and 8.
    probs = [0.9, 0.6, 0.05, 0.8, 0.7, 0.5, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0, 0, 0]
    result = luna16_froc(probs, labels, num_scans=2, num_targets=4)
    expected = [0.25, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75]
    np.testing.assert_allclose(result["sensitivities"], expected)
    assert result["score"] == pytest.approx(sum(expected) / 7)
    # a nodule hit by two candidates counts once, with its best score
    ids = [0, 1, 2, -1, -1, -1, -1, -1, 0]
    dup = luna16_froc(probs + [0.95], labels + [1], num_scans=2, num_targets=4, nodule_ids=ids)
    assert dup["sensitivities"][0] == pytest.approx(0.25)
    np.testing.assert_allclose(dup["sensitivities"], expected)
    fps, sens = froc_curve(probs, labels, num_scans=2, num_targets=4)
    assert fps.max() == 2.5 and sens.max() == 0.75
    with pytest.raises(ValueError, match="num_targets"):
        luna16_froc(probs, labels, num_scans=2, num_targets=2)
    with pytest.raises(ValueError, match="same length"):
        luna16_froc(probs, labels[:-1], num_scans=2)


def test_classification_scores():
    scores = classification_scores(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 1]))
    assert scores["auc"] == pytest.approx(0.75) and scores["accuracy"] == pytest.approx(0.5)


def test_lists_feed_monai_datasets_and_loaders(tmp_path):
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandFlipd, ToTensord

    transform = Compose([RandFlipd("image", prob=0.5, spatial_axis=0), ToTensord("image")])
    batch = next(iter(DataLoader(Dataset(synthetic_nodules(4, size=8), transform), batch_size=4)))
    assert tuple(batch["image"].shape) == (4, 1, 8, 8, 8) and batch["label"].tolist().count(1) == 2
    root, _ = _luna_root(tmp_path)
    batch = next(iter(DataLoader(Dataset(luna16_patches(root, patch_size=4)), batch_size=3)))
    assert tuple(batch["image"].shape) == (3, 1, 4, 4, 4) and len(batch["seriesuid"]) == 3
