"""Real data in one step: fetch Kvasir-SEG and NoduleMNIST3D into the layouts the loaders read.

Downloads go through MONAI (``monai.apps.download_url`` + ``extractall``, the two steps of
``download_and_extract``) with a progress bar. A published hash is checked (NoduleMNIST3D: MedMNIST's MD5);
Kvasir-SEG publishes none, so its archive's size is checked against the home page's 46.2 MB and the extracted
folder must hold the published 1,000 image/mask pairs. Data already on disk is used as is: no network at all.

Command line: ``python -m monai_equivariant.data.download kvasir-seg data/`` (or ``nodule-mnist3d data/``).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from monai_equivariant.data.nodule_mnist3d import NODULE_MNIST3D_KEYS, nodule_mnist3d_file
from monai_equivariant.data.polyp import POLYP_LAYOUTS, find_polyp_pairs

__all__ = [
    "KVASIR_SEG_BYTES",
    "KVASIR_SEG_PAIRS",
    "KVASIR_SEG_URL",
    "DOWNLOAD_TIMEOUT_S",
    "download_kvasir_seg",
    "download_nodule_mnist3d",
    "fetch_url",
]

DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds a download may wait for the server at any one step (connect, each read) before it is retried."""

KVASIR_SEG_URL = "https://datasets.simula.no/downloads/kvasir-seg.zip"
"""The archive linked from the dataset's home page (https://datasets.simula.no/kvasir-seg/)."""
KVASIR_SEG_BYTES = 46_200_000
"""The archive's size as the home page gives it ("46.2 MB"); checked to within ``size_tolerance``."""
KVASIR_SEG_PAIRS = 1000
"""Image/mask pairs in Kvasir-SEG v2."""
KVASIR_SEG_FOLDER = "Kvasir-SEG"
"""The archive's top folder, holding ``images/`` and ``masks/``."""


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Every new socket waits at most ``seconds`` per operation (MONAI's ``download_url`` sets no timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_url(
    url: str,
    filepath: str | os.PathLike,
    hash_val: str | None = None,
    hash_type: str = "md5",
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    retries: int = 3,
) -> None:
    """``monai.apps.download_url`` with a timeout and retries: a server that accepts and never answers (or a
    network that drops) costs at most ``retries`` waits of ``timeout`` seconds per step, then a ``ConnectionError``
    naming the URL and what to do offline. A hash mismatch (``HashCheckError``) is not retried.
    """
    from monai.apps.utils import HashCheckError, download_url

    if timeout <= 0 or retries < 1:
        raise ValueError(f"timeout must be > 0 s and retries >= 1, got timeout={timeout}, retries={retries}")
    error: Exception | None = None
    for attempt in range(retries):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0))
        try:
            with _socket_timeout(timeout):
                download_url(url, filepath=filepath, hash_val=hash_val, hash_type=hash_type, progress=progress)
            return
        except HashCheckError:
            raise
        except (OSError, RuntimeError) as caught:  # URLError, socket.timeout, ConnectionError are OSErrors
            error = caught
    raise ConnectionError(
        f"could not download {url} ({retries} attempts, {timeout:g} s timeout each): {error}. Offline or behind a "
        f"proxy? Download it by hand on a machine with access and put it at {Path(filepath)} (data on disk is "
        "used without any network)"
    ) from error


def _has_pairs(folder: Path, image_dir: str, mask_dir: str) -> bool:
    images, masks = folder / image_dir, folder / mask_dir
    return images.is_dir() and masks.is_dir() and any(images.iterdir()) and any(masks.iterdir())


def download_kvasir_seg(
    root_dir: str | os.PathLike,
    url: str = KVASIR_SEG_URL,
    expected_bytes: int | None = KVASIR_SEG_BYTES,
    size_tolerance: float = 0.05,
    expected_pairs: int | None = KVASIR_SEG_PAIRS,
    hash_val: str | None = None,
    hash_type: str = "md5",
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Fetch and extract Kvasir-SEG into ``root_dir/Kvasir-SEG`` (``images/``, ``masks/``) unless it is there.

    Args:
        root_dir: where ``kvasir-seg.zip`` is saved and extracted; pass it (or the returned folder) as the
            polyp bundle's ``dataset_dir``.
        url: the archive's address (a ``file://`` URL works too).
        expected_bytes: the archive's size; a download off by more than ``size_tolerance`` (relative) is deleted
            and raises ValueError. None skips the check.
        expected_pairs: image/mask pairs the extracted folder must hold (None: any number ≥ 1).
        hash_val, hash_type: a hash to check instead of / besides the size (none is published).
        progress: show a progress bar while downloading.
        timeout: seconds to wait for the server at each step before retrying (:func:`fetch_url`).

    Returns:
        The folder holding ``images/`` and ``masks/``.
    """
    from monai.apps.utils import extractall

    root = Path(root_dir)
    folder = root / KVASIR_SEG_FOLDER
    image_dir, mask_dir = POLYP_LAYOUTS["Kvasir-SEG"]
    if _has_pairs(folder, image_dir, mask_dir):
        return folder  # on disk: no network
    archive = root / "kvasir-seg.zip"
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # MONAI warns that no hash is checked: the size is, below
        warnings.filterwarnings("ignore", message="No hash value provided")
        fetch_url(url, archive, hash_val=hash_val, hash_type=hash_type, progress=progress, timeout=timeout)
    size = archive.stat().st_size
    if expected_bytes is not None and abs(size - expected_bytes) > size_tolerance * expected_bytes:
        archive.unlink()
        raise ValueError(
            f"{url} gave {size:,} bytes, but Kvasir-SEG's kvasir-seg.zip has about {expected_bytes:,} "
            f"(±{size_tolerance:.0%}); the download was deleted. Retry, or download it by hand from "
            "https://datasets.simula.no/kvasir-seg/ and extract it into "
            f"{root} (expected layout: {folder}/{image_dir}/*.jpg, {folder}/{mask_dir}/*.jpg)"
        )
    extractall(archive, root, file_type="zip", has_base=True)
    if not _has_pairs(folder, image_dir, mask_dir):
        raise ValueError(
            f"{archive} did not extract to the Kvasir-SEG layout {folder}/{image_dir}, {folder}/{mask_dir}; "
            f"found {sorted(p.name for p in root.iterdir())}"
        )
    _, pairs = find_polyp_pairs(folder)
    if expected_pairs is not None and len(pairs) != expected_pairs:
        raise ValueError(f"{folder} holds {len(pairs)} image/mask pairs; Kvasir-SEG has {expected_pairs}")
    return folder


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["kvasir-seg", "nodule-mnist3d"])
    parser.add_argument("root_dir", help="folder to download and extract into")
    parser.add_argument("--size", type=int, default=28, help="NoduleMNIST3D patch size (28 or 64)")
    args = parser.parse_args(argv)
    if args.dataset == "kvasir-seg":
        print(download_kvasir_seg(args.root_dir))
    else:
        print(download_nodule_mnist3d(args.root_dir, args.size))


if __name__ == "__main__":
    main()
