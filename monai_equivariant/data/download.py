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
import warnings
from pathlib import Path

from monai_equivariant.data.fetch import DOWNLOAD_TIMEOUT_S, fetch_url
from monai_equivariant.data.nodule_mnist3d import download_nodule_mnist3d
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

KVASIR_SEG_URL = "https://datasets.simula.no/downloads/kvasir-seg.zip"
"""The archive linked from the dataset's home page (https://datasets.simula.no/kvasir-seg/)."""
KVASIR_SEG_BYTES = 46_200_000
"""The archive's size as the home page gives it ("46.2 MB"); checked to within ``size_tolerance``."""
KVASIR_SEG_PAIRS = 1000
"""Image/mask pairs in Kvasir-SEG v2."""
KVASIR_SEG_FOLDER = "Kvasir-SEG"
"""The archive's top folder, holding ``images/`` and ``masks/``."""


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
