"""Synthetic abdominal-like CT volumes with a left, a right and a central organ, in the Decathlon layout, and the
organ bundle's datalist (that set by default, an MSD task folder otherwise).

Each volume is anisotropic like most CT/MR: its voxels are ``spacing`` (z, y, x) mm, z 2.5× the in-plane spacing,
written into the NIfTI affine. A noisy, textured elliptical body holds smooth organ blobs defined in millimetres
(so they look 2.5× flatter along z in voxels): two mirror-image lateral organs (kidney-like, posterior), a central
organ (midline), and unlabelled structures (a bright spine, and a liver-like organ on the patient's right, which
makes the body chiral as a real abdomen is). Labels: 0 background, 1 left organ, 2 right organ, 3 central organ.

Left and right are the *patient's*: in RAS+ the left organ lies at low x, the right one at high x. The whole body
is turned by a small random in-plane angle (at most ``max_tilt`` degrees) and shifted, as patients lie on a table;
the labels are those of the organs, so they move with the body and left stays left. No turn ever brings the left
organ to the patient's right: a reflection would, and then labels 1 and 2 must be swapped with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from monai_equivariant.data.decathlon import (
    decathlon_datalist,
    decathlon_labels,
    decathlon_modalities,
    write_decathlon_json,
    write_nifti,
)
from monai_equivariant.data.folders import is_unset_folder, output_folder, refuse_file
from monai_equivariant.data.polyp import split_datalist
from monai_equivariant.data.synthetic import SYNTHETIC_STAMP, intact_stamped_set, write_stamp, write_stamped_set

__all__ = [
    "ORGAN_LABELS",
    "ORGAN_SPACING",
    "SYNTHETIC_ORGAN_VERSION",
    "organ_datalist",
    "organ_in_channels",
    "organ_label_permutation",
    "organ_num_classes",
    "synthetic_organ_volume",
    "write_synthetic_organ_dataset",
]

ORGAN_LABELS: dict[int, str] = {0: "background", 1: "left organ", 2: "right organ", 3: "central organ"}
"""Label index -> class of the synthetic set (``dataset.json``'s ``labels``)."""
ORGAN_SPACING = (2.5, 1.0, 1.0)
"""(z, y, x) voxel size in mm of the synthetic volumes: z is 2.5× the in-plane spacing."""
SYNTHETIC_ORGAN_VERSION = 1
"""Bumped whenever :func:`synthetic_organ_volume` changes, so stamped sets on disk are regenerated."""
_PARTS = ("imagesTr", "labelsTr")


def _blob(coords: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float], wobble: np.ndarray,
          edge: float = 0.08) -> np.ndarray:
    """Soft occupancy in [0, 1] of an ellipsoid (mm coordinates and radii) whose surface is moved by ``wobble``."""
    r = np.sqrt(sum(((c - c0) / r0) ** 2 for c, c0, r0 in zip(coords, centre, radii)))
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0 - wobble) / edge, -30, 30)))


def synthetic_organ_volume(
    rng: np.random.Generator,
    shape: Sequence[int] = (24, 64, 64),
    spacing: Sequence[float] = ORGAN_SPACING,
    noise: float = 0.06,
    max_tilt: float = 15.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One volume and its labels (see the module doc).

    Args:
        rng: the random generator (seeded by the caller).
        shape: (z, y, x) voxels, each ≥ 8.
        spacing: (z, y, x) mm per voxel.
        noise: std of the white noise (a smooth texture of the same std is added too).
        max_tilt: largest in-plane turn of the body, degrees (it never swaps left and right).

    Returns:
        image (z, y, x) float32 (about 0-1); label (z, y, x) uint8 in {0, 1, 2, 3}.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes (z, y, x), each >= 8, got {shape}")
    if not 0 <= max_tilt < 90:
        raise ValueError(f"max_tilt must be in [0, 90) degrees (90 would swap the sides), got {max_tilt}")
    z, y, x = (((np.arange(n) - (n - 1) / 2) * float(s)) for n, s in zip(shape, spacing))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    half = [n * float(s) / 2 for n, s in zip(shape, spacing)]  # half extents in mm (z, y, x)
    # the body frame: turned by a small angle in-plane and shifted; u: towards the patient's right, v: anterior
    tilt = np.deg2rad(rng.uniform(-max_tilt, max_tilt))
    shift_y, shift_x = rng.uniform(-0.05, 0.05, size=2) * np.array(half[1:])
    u = np.cos(tilt) * (xx - shift_x) + np.sin(tilt) * (yy - shift_y)
    v = -np.sin(tilt) * (xx - shift_x) + np.cos(tilt) * (yy - shift_y)
    frame = (zz, v, u)
    wobble = gaussian_filter(rng.standard_normal(shape), sigma=3) * 2.0  # smooth surface irregularity
    body = _blob((v, u), (0.0, 0.0), (0.78 * half[1], 0.88 * half[2]), 0.2 * wobble, edge=0.03)
    image = 0.25 * body
    label = np.zeros(shape, dtype=np.uint8)

    def organ(centre, radii, value, index=None):
        nonlocal image
        occupancy = _blob(frame, centre, radii, 0.5 * wobble)
        image = image * (1 - occupancy) + value * occupancy
        if index is not None:
            label[occupancy > 0.5] = index

    scale = rng.uniform(0.9, 1.1)
    # unlabelled context: a liver-like organ on the patient's right (anterior), a bright spine (posterior midline)
    organ((0.0, 0.15 * half[1], 0.42 * half[2]), (1.2 * half[0], 0.42 * half[1] * scale, 0.32 * half[2]), 0.5)
    organ((0.0, -0.55 * half[1], 0.0), (2.0 * half[0], 0.13 * half[1], 0.12 * half[2]), 0.95)
    # the lateral organs: mirror images about the midline (kidney-like, posterior), then the central organ
    kidney_z, kidney = rng.uniform(-0.15, 0.15) * half[0], rng.uniform(0.85, 1.15, size=3) * scale
    for index, side in ((1, -1.0), (2, 1.0)):
        centre = (kidney_z + rng.uniform(-0.05, 0.05) * half[0], -0.3 * half[1] + rng.uniform(-2, 2),
                  side * 0.5 * half[2] + rng.uniform(-2, 2))
        organ(centre, (0.55 * half[0] * kidney[0], 0.17 * half[1] * kidney[1], 0.13 * half[2] * kidney[2]), 0.78,
              index)
    organ((rng.uniform(-0.1, 0.1) * half[0], 0.1 * half[1] + rng.uniform(-2, 2), rng.uniform(-2, 2)),
          (0.5 * half[0], 0.16 * half[1] * scale, 0.16 * half[2] * scale), 0.62, 3)
    texture = gaussian_filter(rng.standard_normal(shape), sigma=1.0)
    image = image + body * noise * texture / (texture.std() + 1e-8) + noise * rng.standard_normal(shape)
    label[body < 0.5] = 0
    return image.astype(np.float32), label


def _set_parameters(num_samples: int, shape: Sequence[int], seed: int) -> dict:
    return {"num_samples": int(num_samples), "shape": [int(s) for s in shape], "seed": int(seed),
            "spacing": list(ORGAN_SPACING), "version": SYNTHETIC_ORGAN_VERSION}


def _write_set(folder: Path, num_samples: int, shape: Sequence[int], seed: int) -> None:
    """The volumes, their labels, ``dataset.json`` and, last, the stamp, into the empty ``folder``."""
    for part in _PARTS:
        (folder / part).mkdir()
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(num_samples):
        image, label = synthetic_organ_volume(rng, shape)
        name = f"organs_{index:03d}.nii.gz"
        write_nifti(folder / "imagesTr" / name, image, ORGAN_SPACING)
        write_nifti(folder / "labelsTr" / name, label, ORGAN_SPACING)
        pairs.append((f"./imagesTr/{name}", f"./labelsTr/{name}"))
    write_decathlon_json(folder, "SyntheticOrgans", ORGAN_LABELS, "CT", pairs)
    write_stamp(folder, _set_parameters(num_samples, shape, seed), _PARTS)


def write_synthetic_organ_dataset(
    root: str | os.PathLike, num_samples: int = 16, shape: Sequence[int] = (24, 64, 64), seed: int = 0
) -> Path:
    """Write ``num_samples`` synthetic volumes to ``root`` in the Decathlon layout (``imagesTr/``, ``labelsTr/``
    ``.nii.gz``, ``dataset.json``), with a :data:`~monai_equivariant.data.synthetic.SYNTHETIC_STAMP` written last.

    Like the synthetic polyp set (:func:`~monai_equivariant.data.synthetic.write_stamped_set`): an intact set of these
    parameters is reused; otherwise the set is written into a temporary folder beside ``root`` and renamed into
    place, so a killed run leaves the old complete set or none; a folder that is not such a set is refused.

    Returns:
        ``root`` as a Path.
    """
    shape = [int(s) for s in shape]
    if int(num_samples) < 1 or len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"need num_samples >= 1 and a (z, y, x) shape of sizes >= 8, got {num_samples}, {shape}")
    return write_stamped_set(
        root, _set_parameters(num_samples, shape, seed), _PARTS, 2 * int(num_samples),
        lambda folder: _write_set(folder, int(num_samples), shape, int(seed)),
        own=lambda path: path.name.startswith("organs_") and path.name.endswith(".nii.gz"), what="synthetic organ",
    )


SYNTHETIC_FOLDER = "synthetic_organs"
"""The training run's synthetic set: ``<datalist_dir>/synthetic_organs``."""
HELD_OUT_SYNTHETIC_FOLDER = "synthetic_organs_held_out"
"""Where evaluation / inference write their own synthetic set when there is no training set to read."""


def organ_num_classes(dataset_dir: str | os.PathLike | None) -> int:
    """The number of classes (network output channels): 4 for the synthetic set, else ``dataset.json``'s labels."""
    return len(ORGAN_LABELS) if is_unset_folder(dataset_dir) else len(decathlon_labels(dataset_dir))


def organ_label_permutation(dataset_dir: str | os.PathLike | None) -> list[int] | None:
    """The class permutation of a left-right reflection (lateral labels), or None when no class has a mirror twin.

    The synthetic set: ``[0, 2, 1, 3]`` (the left and the right organ swap). An MSD task: the classes whose names
    differ only by "left" ↔ "right" (``"left kidney"`` / ``"right kidney"``, any case) swap; the others stay.
    """
    if is_unset_folder(dataset_dir):
        labels = ORGAN_LABELS
    else:
        labels = decathlon_labels(dataset_dir)
    index = {name.lower(): k for k, name in labels.items()}
    swap = {"left": "right", "right": "left"}
    perm = []
    for k in range(len(labels)):
        words = labels[k].lower().split()
        twin = " ".join(swap.get(w, w) for w in words)
        perm.append(index.get(twin, k))
    return perm if perm != list(range(len(labels))) else None


def organ_in_channels(dataset_dir: str | os.PathLike | None) -> int:
    """The number of image channels (network input channels): 1 for the synthetic set (CT-like), else
    ``dataset.json``'s modalities (BraTS: 4)."""
    return 1 if is_unset_folder(dataset_dir) else len(decathlon_modalities(dataset_dir))


def organ_datalist(
    dataset_dir: str | os.PathLike | None,
    datalist_dir: str | os.PathLike,
    seed: int = 0,
    synthetic_samples: int = 16,
    volume_size: Sequence[int] = (24, 64, 64),
    training: bool = True,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
) -> dict[str, list[dict[str, str]]]:
    """The seeded train/validation/test split of the organ bundle's data (MSD ``training`` pairs: the MSD's own test
    images have no labels).

    - ``dataset_dir`` an MSD task folder: its pairs, read and checked by
      :func:`~monai_equivariant.data.decathlon.decathlon_datalist`; nothing is written.
    - ``dataset_dir`` empty: the synthetic set. Training (``training=True``) writes or reuses
      ``<datalist_dir>/synthetic_organs`` of these parameters; evaluation and inference (``training=False``) never
      write it: they read it when it is intact (whatever its parameters) and split it with the seed it was made
      with (the one training split it with), else write ``<datalist_dir>/synthetic_organs_held_out``.
    """
    if is_unset_folder(dataset_dir):
        datalist_dir = refuse_file(datalist_dir, "datalist_dir", ": give a folder path (created if missing)")
        trained_on = datalist_dir / SYNTHETIC_FOLDER
        if training or not intact_stamped_set(trained_on, _PARTS):
            output_folder(datalist_dir, "datalist_dir")
            folder = trained_on if training else datalist_dir / HELD_OUT_SYNTHETIC_FOLDER
            dataset_dir = write_synthetic_organ_dataset(folder, synthetic_samples, volume_size, seed)
        else:
            dataset_dir = trained_on
            seed = json.loads((trained_on / SYNTHETIC_STAMP).read_text())["seed"]
    return split_datalist(decathlon_datalist(dataset_dir), fractions, seed)
