"""NoduleMNIST3D (MedMNIST v2, from LIDC-IDRI): 28³ or 64³ nodule patches, benign 0 / malignant 1, read from
the published ``.npz`` (keys ``train_images``, ``train_labels``, ``val_*``, ``test_*``)."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from monai_equivariant.data.fetch import DOWNLOAD_TIMEOUT_S, fetch_url
from monai_equivariant.data.folders import refuse_file

__all__ = [
    "NODULE_MNIST3D_FILES",
    "NODULE_MNIST3D_KEYS",
    "download_nodule_mnist3d",
    "nodule_mnist3d",
    "nodule_mnist3d_file",
    "nodule_mnist3d_path",
]

NODULE_MNIST3D_FILES: dict[int, tuple[str, str, str]] = {
    28: (
        "nodulemnist3d.npz",
        "https://zenodo.org/records/10519652/files/nodulemnist3d.npz?download=1",
        "8755a7e9e05a4d9ce80a24c3e7a256f3",
    ),
    64: (
        "nodulemnist3d_64.npz",
        "https://zenodo.org/records/10519652/files/nodulemnist3d_64.npz?download=1",
        "c47c5b7d457bf6332200d2ea6d64ecd8",
    ),
}
"""size -> (file name, URL, published MD5), as in MedMNIST's ``info.py``."""

SPLITS = ("train", "val", "test")
NODULE_MNIST3D_KEYS = tuple(f"{split}_{part}" for split in SPLITS for part in ("images", "labels"))
"""The arrays of a NoduleMNIST3D npz: ``train_images``, ``train_labels``, ``val_*``, ``test_*``."""


def nodule_mnist3d_file(size: int) -> tuple[str, str, str]:
    """(file name, URL, published MD5) of the NoduleMNIST3D archive of ``size`` (28 or 64); ValueError otherwise."""
    if size not in NODULE_MNIST3D_FILES:
        raise ValueError(f"NoduleMNIST3D comes in sizes {sorted(NODULE_MNIST3D_FILES)}, got {size}")
    return NODULE_MNIST3D_FILES[size]


def nodule_mnist3d_path(root_dir: str | os.PathLike, size: int = 28, download: bool = False) -> Path:
    """Path of the NoduleMNIST3D archive of ``size`` (28 or 64) in ``root_dir``; downloaded only if missing.

    An existing file is used as is (no network). ``download=True`` fetches a missing file with
    :func:`download_nodule_mnist3d` (timeout, retries, the published MD5 checked:
    a mismatch raises ValueError naming the hash).
    """
    name, url, _ = nodule_mnist3d_file(size)
    path = refuse_file(root_dir, "NoduleMNIST3D root_dir", f"; expected a folder holding {name}") / name
    if path.is_file():
        return path
    if not download:
        raise FileNotFoundError(
            f"NoduleMNIST3D file not found: {path}. Expected layout: <root_dir>/{name} (an npz with keys "
            f"{', '.join(NODULE_MNIST3D_KEYS)}); get it from {url} or pass download=True"
        )
    return download_nodule_mnist3d(root_dir, size)


def download_nodule_mnist3d(
    root_dir: str | os.PathLike,
    size: int = 28,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Fetch NoduleMNIST3D's ``.npz`` of ``size`` (28 or 64) from zenodo into ``root_dir`` unless it is there.

    The published MD5 (MedMNIST's ``info.py``) is checked; ``url``/``md5`` override the published ones (tests,
    mirrors); ``timeout`` as in :func:`fetch_url`. The file must hold the keys ``{train,val,test}_{images,labels}`` that
    :func:`monai_equivariant.data.nodule_mnist3d` reads.

    Returns:
        The path of the ``.npz``.
    """
    from monai.apps.utils import HashCheckError

    name, published_url, published_md5 = nodule_mnist3d_file(size)
    path = Path(root_dir) / name
    if path.is_file():
        return path  # on disk: no network
    url, md5 = url or published_url, md5 or published_md5
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fetch_url(url, path, hash_val=md5, hash_type="md5", progress=progress, timeout=timeout)
    except HashCheckError as error:
        which = "published MD5" if md5 == published_md5 else "MD5"
        raise ValueError(
            f"the download of {url} does not have the {which} {md5}; nothing was saved to {path}: {error}"
        ) from error
    with np.load(path) as archive:
        missing = [key for key in NODULE_MNIST3D_KEYS if key not in archive.files]
    if missing:
        path.unlink()
        raise ValueError(f"{url} is not NoduleMNIST3D: keys {missing} are missing; the download was deleted")
    return path


def _check_md5(path: Path, md5: str) -> None:
    from monai.apps.utils import check_hash

    if not check_hash(path, md5, hash_type="md5"):
        raise ValueError(
            f"{path} does not have the published MD5 {md5}: the file is corrupt or not NoduleMNIST3D; delete it "
            "and download again (or pass check_md5=False for a file you made yourself)"
        )


def _read_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``split`` from the npz at ``path``.

    Raises:
        ValueError naming the file when it is not a readable npz (truncated, corrupt: zip, CRC or zlib errors) or
        lacks the split's keys.
    """
    keys = (f"{split}_images", f"{split}_labels")
    try:
        with np.load(path) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise KeyError(missing)
            return archive[keys[0]], archive[keys[1]].reshape(-1)
    except KeyError as error:
        raise ValueError(f"{path} lacks keys {error.args[0]}; a NoduleMNIST3D npz has {split}_images/{split}_labels") from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(
            f"cannot read NoduleMNIST3D file {str(path)!r} ({type(error).__name__}: {error}): it is truncated or corrupt; "
            "delete it and download it again (nodule_mnist3d(..., download=True), or check_md5=True to verify a copy)"
        ) from error


def nodule_mnist3d(
    root_dir: str | os.PathLike,
    split: str = "train",
    size: int = 28,
    download: bool = False,
    check_md5: bool = False,
) -> list[dict]:
    """One split of NoduleMNIST3D as ``[{"image": (1, size, size, size) float32 in [0, 1], "label": int}]``.

    Args:
        root_dir: folder holding ``nodulemnist3d.npz`` (28³) or ``nodulemnist3d_64.npz`` (64³).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: 28 or 64.
        download: fetch the archive if (and only if) it is missing.
        check_md5: verify an existing file against the published MD5 (reads the whole file).

    The list can be wrapped in ``monai.data.Dataset`` / ``CacheDataset`` with any MONAI transforms.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = nodule_mnist3d_path(root_dir, size, download)
    if check_md5:
        _check_md5(path, nodule_mnist3d_file(size)[2])
    images, labels = _read_split(path, split)
    if images.ndim != 4 or images.shape[1:] != (size, size, size) or len(images) != len(labels):
        raise ValueError(
            f"{path}: expected {split}_images of shape (N, {size}, {size}, {size}) and N labels, got "
            f"{images.shape} and {labels.shape}"
        )
    if labels.size and not set(np.unique(labels)).issubset({0, 1}):
        raise ValueError(f"{path}: labels must be 0 (benign) or 1 (malignant), got {np.unique(labels)}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return [
        {"image": (image[None].astype(np.float32) / scale), "label": int(label)}
        for image, label in zip(images, labels)
    ]
