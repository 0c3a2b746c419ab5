"""PatchCamelyon (PCam) HDF5 patches, read lazily, and the synthetic oriented-tissue default in the same format.

On disk (the published files, gunzipped): ``camelyonpatch_level_2_split_{train,valid,test}_x.h5`` with key
``x`` (N, 96, 96, 3) uint8 and ``..._y.h5`` with key ``y`` (N, 1, 1, 1) (1 = metastatic tissue in the
centre 32×32). Items are ``{"image": (3, H, W) float32 in [0, 1], "label": (2,) one-hot float32, "id": str}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from monai_equivariant.data.folders import existing_folder, is_unset_folder
from monai_equivariant.data.synthetic import synthetic_tissue_patch

__all__ = ["PCAM_SPLITS", "PCamPatches", "histopathology_dataset", "pcam_files"]

PCAM_SPLITS = {"training": "train", "validation": "valid", "test": "test"}
_LAYOUT = "camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5 (x: (N,96,96,3) uint8, y: (N,1,1,1))"


def pcam_files(dataset_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """The (x, y) HDF5 paths of ``split`` (``training``/``validation``/``test`` or ``train``/``valid``/``test``).

    Raises:
        ValueError naming the path and the expected layout when the folder or a file is missing.
    """
    part = PCAM_SPLITS.get(split, split)
    if part not in PCAM_SPLITS.values():
        raise ValueError(f"split must be one of {sorted(PCAM_SPLITS)}, got {split!r}")
    root = existing_folder(dataset_dir, "dataset_dir", _LAYOUT)
    paths = tuple(root / f"camelyonpatch_level_2_split_{part}_{xy}.h5" for xy in ("x", "y"))
    for path in paths:
        if not path.is_file():
            hint = " (found a .gz: gunzip it first)" if path.with_name(path.name + ".gz").is_file() else ""
            raise ValueError(f"missing PCam file {str(path)!r}{hint}; expected {_LAYOUT}")
    return paths  # type: ignore[return-value]


class PCamPatches(TorchDataset):
    """One PCam split, read lazily from its HDF5 files (each worker opens its own handles).

    Args:
        dataset_dir: folder holding the PCam ``.h5`` files.
        split: ``training``, ``validation`` or ``test``.
        transform: applied to each item dict.
        max_samples: use only the first ``max_samples`` patches (quick runs).
    """

    def __init__(
        self, dataset_dir: str | os.PathLike, split: str, transform: Callable | None = None, max_samples: int | None = None
    ) -> None:
        import h5py

        self.x_path, self.y_path = pcam_files(dataset_dir, split)
        self.split, self.transform = split, transform
        try:
            with h5py.File(self.x_path, "r") as fx, h5py.File(self.y_path, "r") as fy:
                x_shape, x_dtype, y_shape = fx["x"].shape, fx["x"].dtype, fy["y"].shape
        except (OSError, KeyError) as error:
            raise ValueError(f"cannot read PCam files {str(self.x_path)!r} / {str(self.y_path)!r} ({error}); expected {_LAYOUT}") from error
        if len(x_shape) != 4 or x_shape[3] != 3 or x_dtype != np.uint8 or y_shape[0] != x_shape[0]:
            raise ValueError(
                f"{str(self.x_path)!r}: x {x_shape} {x_dtype}, y {y_shape} do not match; expected {_LAYOUT}"
            )
        self.length = x_shape[0] if max_samples is None else min(int(max_samples), x_shape[0])
        self._files: tuple | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        import h5py

        if self._files is None:
            self._files = (h5py.File(self.x_path, "r"), h5py.File(self.y_path, "r"))
        fx, fy = self._files
        image = np.ascontiguousarray(fx["x"][index].transpose(2, 0, 1), dtype=np.float32) / 255.0
        label = np.eye(2, dtype=np.float32)[int(np.asarray(fy["y"][index]).reshape(-1)[0])]
        item = {"image": image, "label": label, "id": f"pcam_{PCAM_SPLITS.get(self.split, self.split)}_{index:06d}"}
        return self.transform(item) if self.transform is not None else item

    def __getstate__(self) -> dict:  # h5py handles do not pickle: reopen in each worker
        return {**self.__dict__, "_files": None}


def histopathology_dataset(
    dataset_dir: str | os.PathLike | None,
    split: str,
    transform: Callable | None = None,
    max_samples: int | None = None,
    synthetic_samples: int = 200,
    synthetic_size: int = 32,
    seed: int = 0,
) -> TorchDataset:
    """PCam ``split`` from ``dataset_dir``, or (``dataset_dir`` empty/None) balanced synthetic tissue patches.

    The synthetic split is generated in memory, seeded per split (``training``, ``validation``, ``test`` differ).
    """
    if not is_unset_folder(dataset_dir):
        return PCamPatches(dataset_dir, split, transform, max_samples)
    from monai.data import Dataset

    if split not in PCAM_SPLITS:
        raise ValueError(f"split must be one of {sorted(PCAM_SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, list(PCAM_SPLITS).index(split)])
    count = synthetic_samples if max_samples is None else min(synthetic_samples, int(max_samples))
    items = [
        {
            "image": synthetic_tissue_patch(rng, index % 2, synthetic_size),
            "label": np.eye(2, dtype=np.float32)[index % 2],
            "id": f"synthetic_{split}_{index:05d}",
        }
        for index in range(count)
    ]
    return Dataset(items, transform=transform)
