"""One entry point for the nodule bundle's data: NoduleMNIST3D, LUNA16 candidate patches or synthetic nodules.

``dataset_dir`` decides: empty/None -> synthetic nodules vs vessels (seeded per split); a folder with
``nodulemnist3d.npz`` / ``nodulemnist3d_64.npz`` -> NoduleMNIST3D's own splits; a folder with
``candidates.csv`` -> LUNA16 candidate patches, split 70/15/15 by scan (seeded). Items are
``{"image": (1, s, s, s) float32, "label": (2,) one-hot float32, "id": str}`` (+ ``seriesuid`` for LUNA16).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from monai_equivariant.data.folders import existing_folder, is_unset_folder

__all__ = ["NODULE_LAYOUTS", "nodule_data_kind", "nodule_datalist"]

NODULE_LAYOUTS = (
    "NoduleMNIST3D (nodulemnist3d.npz or nodulemnist3d_64.npz) or LUNA16 (candidates.csv + subset*/*.mhd/.raw)"
)
_SPLITS = {"training": ("train", 0), "validation": ("val", 1), "test": ("test", 2)}


def nodule_data_kind(dataset_dir: str | os.PathLike | None) -> str:
    """``"synthetic"``, ``"nodulemnist3d"`` or ``"luna16"``; ValueError naming the path and layouts otherwise."""
    if is_unset_folder(dataset_dir):
        return "synthetic"
    root = existing_folder(dataset_dir, "dataset_dir", NODULE_LAYOUTS)
    if any((root / name).is_file() for name in ("nodulemnist3d.npz", "nodulemnist3d_64.npz")):
        return "nodulemnist3d"
    if (root / "candidates.csv").is_file():
        return "luna16"
    raise ValueError(f"dataset_dir {str(root)!r} has the wrong layout; expected {NODULE_LAYOUTS}")


def _one_hot(items: list[dict], prefix: str) -> list[dict]:
    out = []
    for index, item in enumerate(items):
        label = int(np.asarray(item["label"]).reshape(-1)[0])
        entry = dict(item, label=np.eye(2, dtype=np.float32)[label])
        entry.setdefault("id", f"{prefix}_{index:05d}")
        entry.pop("coord_xyz", None)
        out.append(entry)
    return out


def nodule_datalist(
    dataset_dir: str | os.PathLike | None,
    split: str,
    synthetic_samples: int = 64,
    patch_size: int = 32,
    seed: int = 0,
    max_samples: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """The items of ``split`` (``training``, ``validation``, ``test``) for ``dataset_dir`` (see module doc).

    Args:
        synthetic_samples: items per split of the synthetic default.
        patch_size: synthetic and LUNA16 cube edge; NoduleMNIST3D uses 64 when ``patch_size >= 64`` and
            ``nodulemnist3d_64.npz`` exists, else 28.
        max_samples: keep only the first N items (quick runs).
        cache_dir: LUNA16 patch cache folder.
    """
    from monai_equivariant import data

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    part, offset = _SPLITS[split]
    kind = nodule_data_kind(dataset_dir)
    if kind == "synthetic":
        items = _one_hot(data.synthetic_nodules(int(synthetic_samples), int(patch_size), seed=int(seed) * 3 + offset),
                         f"synthetic_{split}")
    elif kind == "nodulemnist3d":
        size = 64 if patch_size >= 64 and (Path(dataset_dir) / "nodulemnist3d_64.npz").is_file() else 28
        items = _one_hot(data.nodule_mnist3d(dataset_dir, split=part, size=size), f"nodulemnist3d_{part}")
    else:
        patches = data.luna16_patches(dataset_dir, patch_size=int(patch_size), cache_dir=cache_dir)
        scans = [{"seriesuid": uid} for uid in sorted({p["seriesuid"] for p in patches})]
        chosen = {entry["seriesuid"] for entry in data.split_datalist(scans, seed=int(seed))[split]}
        items = _one_hot([p for p in patches if p["seriesuid"] in chosen], f"luna16_{split}")
    return items if max_samples is None else items[: int(max_samples)]
