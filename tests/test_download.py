"""download=True helpers: small archives in the real layouts served by file:// URLs; on-disk data never re-fetched."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_equivariant.data import find_polyp_pairs, nodule_mnist3d
from monai_equivariant.data.download import download_kvasir_seg, download_nodule_mnist3d, main


def _kvasir_zip(folder: Path, pairs: int = 3) -> Path:
    """A tiny kvasir-seg.zip in the real layout: Kvasir-SEG/images/*.jpg, Kvasir-SEG/masks/*.jpg, bbox json."""
    archive = folder / "served" / "kvasir-seg.zip"
    archive.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as zf:
        for index in range(pairs):
            name = f"cju{index:04d}"
            for sub, array in (
                ("images", (rng.random((12, 12, 3)) * 255).astype(np.uint8)),
                ("masks", np.repeat(((rng.random((12, 12, 1)) > 0.5) * 255).astype(np.uint8), 3, axis=2)),
            ):
                path = folder / f"{name}.jpg"
                Image.fromarray(array).save(path)
                zf.write(path, f"Kvasir-SEG/{sub}/{name}.jpg")
        zf.writestr("Kvasir-SEG/kavsir_bboxes.json", "{}")
    return archive


def test_kvasir_seg_is_fetched_extracted_and_never_refetched(tmp_path: Path) -> None:
    archive = _kvasir_zip(tmp_path)
    url = archive.as_uri()
    root = tmp_path / "data"
    folder = download_kvasir_seg(root, url=url, expected_bytes=archive.stat().st_size, expected_pairs=3, progress=False)
    assert folder == root / "Kvasir-SEG"
    layout, pairs = find_polyp_pairs(root)  # the polyp loader reads what was extracted
    assert layout == "Kvasir-SEG" and len(pairs) == 3
    archive.unlink()  # the URL is gone: a second call must not touch the network
    assert download_kvasir_seg(root, url=url, progress=False) == folder


def test_kvasir_seg_with_the_wrong_size_is_deleted_with_a_clear_error(tmp_path: Path) -> None:
    archive = _kvasir_zip(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="Kvasir-SEG's kvasir-seg.zip has about"):
        download_kvasir_seg(root, url=archive.as_uri(), expected_bytes=10 * archive.stat().st_size, progress=False)
    assert not (root / "kvasir-seg.zip").exists() and not (root / "Kvasir-SEG").exists()
    with pytest.raises(ValueError, match="holds 3 image/mask pairs; Kvasir-SEG has 1000"):
        download_kvasir_seg(root, url=archive.as_uri(), expected_bytes=None, progress=False)


def _nodule_npz(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = (rng.random((n, 28, 28, 28)) * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 1)).astype(np.uint8)
    path = folder / "served" / "nodulemnist3d.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def test_nodule_mnist3d_is_fetched_hash_checked_and_never_refetched(tmp_path: Path) -> None:
    source = _nodule_npz(tmp_path)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="does not have the MD5"):
        download_nodule_mnist3d(root, url=source.as_uri(), md5="0" * 32, progress=False)
    assert not (root / "nodulemnist3d.npz").exists()
    path = download_nodule_mnist3d(root, url=source.as_uri(), md5=md5, progress=False)
    assert path == root / "nodulemnist3d.npz"
    train = nodule_mnist3d(root, "train")
    assert len(train) == 4 and train[0]["image"].shape == (1, 28, 28, 28)
    source.unlink()
    assert download_nodule_mnist3d(root, url=source.as_uri(), progress=False) == path  # on disk: no fetch
    with pytest.raises(ValueError, match="sizes"):
        download_nodule_mnist3d(root, size=32)


def test_command_line_uses_data_on_disk(tmp_path: Path, capsys) -> None:
    (tmp_path / "Kvasir-SEG" / "images").mkdir(parents=True)
    (tmp_path / "Kvasir-SEG" / "masks").mkdir()
    (tmp_path / "Kvasir-SEG" / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "Kvasir-SEG" / "masks" / "a.jpg").write_bytes(b"x")
    main(["kvasir-seg", str(tmp_path)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "Kvasir-SEG")
