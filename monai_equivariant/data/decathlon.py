"""The Medical Segmentation Decathlon layout: ``dataset.json`` + ``imagesTr/*.nii.gz`` + ``labelsTr/*.nii.gz``.

:func:`decathlon_datalist` reads a task folder (``Task09_Spleen/`` or any MSD task, or a set written in that
layout) through MONAI's ``load_decathlon_datalist`` and checks it up front, so a broken dataset fails here with the
file named, not later inside a ``Dataset``: a missing or unreadable ``dataset.json``, listed files that are missing
or are not NIfTI, an image and its label whose spatial shapes differ. :func:`write_nifti` and
:func:`write_decathlon_json` write the layout (the synthetic organ set and the tests use them).

NIfTI arrays are (x, y, z[, channel]) with the voxel-to-world affine in RAS+ (+x towards the patient's right);
:func:`write_nifti` takes (z, y, x) arrays, the order the networks see after ``Orientationd(axcodes="SAR")``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_equivariant.data.folders import existing_folder, is_unset_folder

__all__ = [
    "DECATHLON_LAYOUT",
    "decathlon_datalist",
    "decathlon_labels",
    "decathlon_modalities",
    "nifti_spatial_shape",
    "write_decathlon_json",
    "write_nifti",
]

DECATHLON_LAYOUT = ("dataset.json listing 'training' pairs, imagesTr/*.nii.gz and labelsTr/*.nii.gz "
                    "(a Medical Segmentation Decathlon task)")
"""The expected layout, for messages."""


def _dataset_json(dataset_dir: str | os.PathLike) -> tuple[Path, dict]:
    """(path of dataset.json, its content) of an MSD task folder; ValueError naming the path otherwise."""
    folder = existing_folder(dataset_dir, "dataset_dir", DECATHLON_LAYOUT)
    path = folder / "dataset.json"
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(
            f"dataset_dir {str(folder)!r} has no dataset.json (found {found}); expected {DECATHLON_LAYOUT}"
        )
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"cannot read {str(path)!r} as JSON ({error}); expected the MSD dataset.json") from error
    if not isinstance(content, dict) or not isinstance(content.get("training"), list) or not content["training"]:
        raise ValueError(
            f"{str(path)!r} has no non-empty 'training' list of image/label pairs; expected {DECATHLON_LAYOUT}"
        )
    return path, content


def decathlon_labels(dataset_dir: str | os.PathLike) -> dict[int, str]:
    """The classes of an MSD task: ``dataset.json``'s ``labels`` as {index: name} (``{0: "background", 1:
    "spleen"}``). ValueError naming the file when they are missing or are not 0..K-1."""
    return _index_table(dataset_dir, "labels", 2, "0, 1, ..., K-1 (K >= 2) to class names")


def decathlon_modalities(dataset_dir: str | os.PathLike) -> dict[int, str]:
    """The image channels of an MSD task: ``dataset.json``'s ``modality`` as {index: name} (``{0: "CT"}``; BraTS
    has four). ValueError naming the file when it is missing or is not 0..C-1."""
    return _index_table(dataset_dir, "modality", 1, "0, 1, ..., C-1 to channel names")


def _index_table(dataset_dir: str | os.PathLike, key: str, minimum: int, expected: str) -> dict[int, str]:
    """``dataset.json``'s ``key`` as {index: name} with indices 0..n-1, n >= ``minimum``; ValueError naming the file
    and ``expected`` otherwise."""
    path, content = _dataset_json(dataset_dir)
    value = content.get(key)
    try:
        table = {int(index): str(name) for index, name in value.items()}
    except (AttributeError, TypeError, ValueError):
        table = {}
    if sorted(table) != list(range(len(table))) or len(table) < minimum:
        raise ValueError(f"{str(path)!r}: {key!r} must map {expected}, got {value!r}")
    return table


def nifti_spatial_shape(path: str | os.PathLike, what: str, decode: bool = True) -> tuple[int, int, int]:
    """The (x, y, z) shape of a NIfTI file; with ``decode`` the whole volume is read (a truncated ``.nii.gz`` passes
    the header but fails here).

    Raises:
        ValueError naming the file and ``what`` it is (``"image"``, ``"label"``) when it is missing, is not NIfTI,
        does not decompress, or has fewer than 3 axes.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{what} file {str(path)!r} listed in dataset.json does not exist; expected {DECATHLON_LAYOUT}"
        )
    try:
        volume = nib.load(str(path))
        shape = tuple(int(s) for s in volume.shape)
        if decode:
            np.asanyarray(volume.dataobj)
    except Exception as error:  # nibabel raises ImageFileError, EOFError, zlib.error, OSError... for broken files
        raise ValueError(f"cannot read {what} file {str(path)!r} as NIfTI ({type(error).__name__}: {error})") from error
    if len(shape) < 3:
        raise ValueError(f"{what} file {str(path)!r} has shape {shape}; expected a 3D volume (x, y, z[, channels])")
    return shape[0], shape[1], shape[2]


def decathlon_datalist(dataset_dir: str | os.PathLike, decode: bool = True) -> list[dict[str, str]]:
    """The ``training`` pairs of an MSD task folder as ``[{"image": path, "label": path}, ...]`` (absolute paths, in
    ``dataset.json``'s order), read with ``monai.data.load_decathlon_datalist`` and checked.

    Args:
        dataset_dir: the task folder (holding ``dataset.json``).
        decode: read every volume whole (finds truncated files; Task09_Spleen's 41 pairs take about a minute), or
            only the headers (shapes; for the bundles' override checks).

    Raises:
        ValueError naming the folder or file: no folder, no or unreadable ``dataset.json``, no training pairs, a
        listed file missing or not NIfTI, an image and label of other spatial shapes (both named).
    """
    from monai.data import load_decathlon_datalist

    if is_unset_folder(dataset_dir):
        raise ValueError(f"dataset_dir is empty; expected {DECATHLON_LAYOUT}")
    path, _ = _dataset_json(dataset_dir)
    try:
        items = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="training",
                                        base_dir=str(path.parent))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"cannot read the training list of {str(path)!r} ({error}); expected {DECATHLON_LAYOUT}"
        ) from error
    pairs = []
    for item in items:
        if not isinstance(item.get("image"), str) or not isinstance(item.get("label"), str):
            raise ValueError(f"{str(path)!r}: training entry {item!r} must have one 'image' and one 'label' path")
        image = nifti_spatial_shape(item["image"], "image", decode)
        label = nifti_spatial_shape(item["label"], "label", decode)
        if image != label:
            raise ValueError(
                f"label {item['label']!r} is {label} but its image {item['image']!r} is {image} (x, y, z): a label "
                "must have its image's spatial shape"
            )
        pairs.append({"image": str(Path(item["image"]).resolve()), "label": str(Path(item["label"]).resolve())})
    return pairs


def write_nifti(path: str | os.PathLike, volume_zyx: np.ndarray, spacing_zyx: Sequence[float]) -> Path:
    """Write a (z, y, x) array as a NIfTI file (``.nii.gz``: compressed) with a RAS+ affine of voxel sizes
    ``spacing_zyx`` (mm): array index x grows towards the patient's right, y anterior, z superior.

    Returns:
        ``path`` as a Path.
    """
    volume_zyx = np.asarray(volume_zyx)
    if volume_zyx.ndim != 3 or len(spacing_zyx) != 3 or min(float(s) for s in spacing_zyx) <= 0:
        raise ValueError(f"need a (z, y, x) array and 3 positive spacings, got {volume_zyx.shape}, {spacing_zyx}")
    affine = np.diag([*(float(s) for s in reversed(spacing_zyx)), 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(volume_zyx.transpose(2, 1, 0)), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return Path(path)


def write_decathlon_json(root: str | os.PathLike, name: str, labels: Mapping[int, str], modality: str,
                         pairs: Sequence[tuple[str, str]]) -> Path:
    """Write ``root/dataset.json`` in the MSD format: ``labels`` {index: name}, one ``modality``, and ``training``
    pairs of (image, label) paths relative to ``root`` (``"./imagesTr/x.nii.gz"``)."""
    content = {
        "name": name, "tensorImageSize": "3D", "modality": {"0": modality},
        "labels": {str(k): v for k, v in labels.items()},
        "numTraining": len(pairs), "numTest": 0,
        "training": [{"image": image, "label": label} for image, label in pairs], "test": [],
    }
    path = Path(root) / "dataset.json"
    path.write_text(json.dumps(content, indent=1))
    return path
