"""Polyp segmentation data: Kvasir-SEG / CVC-ClinicDB layouts on disk -> a seeded train/validation/test datalist.

Layouts (``dataset_dir`` itself, or one sub-folder of it, e.g. the extracted ``Kvasir-SEG/``):

- Kvasir-SEG: ``images/*.jpg`` and ``masks/*.jpg`` (masks are RGB JPEGs; threshold them at 127.5);
- CVC-ClinicDB: ``Original/*.tif`` and ``Ground Truth/*.tif`` (the PNG release works too).

Images and masks are paired by file stem. Every file is decoded once up front (a truncated JPEG fails here,
named, not later inside a dataset); a mask must have its image's width and height. Images are read as RGB
(:func:`rgb_image`: a grayscale frame among colour ones gets three equal channels, as PIL's ``convert("RGB")``),
masks as one channel (:func:`mask_image`). With no ``dataset_dir`` the built-in synthetic polyp set is
written in the Kvasir-SEG layout (PNG) and used instead, so the same loading path serves both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_equivariant.data.folders import existing_folder, is_unset_folder, output_folder, refuse_file
from monai_equivariant.data.synthetic import intact_synthetic_set, write_synthetic_polyp_dataset

__all__ = [
    "POLYP_LAYOUTS",
    "find_polyp_pairs",
    "mask_image",
    "polyp_datalist",
    "read_polyp_datalist",
    "rgb_image",
    "split_datalist",
]

POLYP_LAYOUTS: dict[str, tuple[str, str]] = {"Kvasir-SEG": ("images", "masks"), "CVC-ClinicDB": ("Original", "Ground Truth")}
"""Layout name -> (image folder, mask folder)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_LAYOUT_TEXT = "Kvasir-SEG (images/*.jpg + masks/*.jpg) or CVC-ClinicDB (Original/*.tif + 'Ground Truth'/*.tif)"


def _detect_layout(dataset_dir: Path) -> tuple[str, Path]:
    """(layout name, folder holding the image/mask folders) for ``dataset_dir`` or its one matching child."""
    existing_folder(dataset_dir, "dataset_dir", _LAYOUT_TEXT)
    candidates = [dataset_dir] + sorted(p for p in dataset_dir.iterdir() if p.is_dir())
    for folder in candidates:
        for name, (images, masks) in POLYP_LAYOUTS.items():
            if (folder / images).is_dir() and (folder / masks).is_dir():
                return name, folder
    found = sorted(p.name for p in dataset_dir.iterdir())[:10]
    raise ValueError(f"dataset_dir {str(dataset_dir)!r} has the wrong layout (found {found}); expected {_LAYOUT_TEXT}")


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


# PIL modes that convert to RGB / one channel without losing meaning (not 16-bit or float images)
_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


def rgb_image(image):
    """``PILReader(converter=...)`` for frames: the image as 3-channel RGB (grayscale repeated, alpha dropped)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def mask_image(image):
    """``PILReader(converter=...)`` for masks: the mask as one 8-bit channel (RGB JPEG masks by luminance)."""
    return image if image.mode == "L" else image.convert("L")


def _decode(path: Path) -> tuple[int, int]:
    """Decode the whole file (``verify()`` does not: a truncated JPEG passes it); returns (width, height).

    Raises:
        ValueError naming the file when it does not decode or has a mode that is not 8-bit colour/grayscale.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            size, mode = image.size, image.mode
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image file {str(path)!r} ({error}); expected a JPEG/PNG/TIFF image") from error
    if mode not in _MODES:
        raise ValueError(
            f"image file {str(path)!r} has PIL mode {mode!r}; expected 8-bit RGB or grayscale ({', '.join(_MODES)})"
        )
    return size


def find_polyp_pairs(dataset_dir: str | os.PathLike) -> tuple[str, list[dict[str, str]]]:
    """Pair images with masks by stem and decode every file.

    Returns:
        (layout name, sorted list of ``{"image": path, "label": path}``).

    Raises:
        ValueError naming the path and the expected layout: missing folder, wrong layout, no images,
        images without masks, files that do not decode (truncated, not an image, 16-bit/float), a mask whose
        size differs from its image's (both named).
    """
    layout, root = _detect_layout(Path(dataset_dir))
    image_dir, mask_dir = (root / part for part in POLYP_LAYOUTS[layout])
    images, masks = _images_in(image_dir), _images_in(mask_dir)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(image_dir)!r}; expected {_LAYOUT_TEXT}")
    unmatched = sorted(set(images) - set(masks))
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} image(s) in {str(image_dir)!r} have no mask of the same name in {str(mask_dir)!r} "
            f"(e.g. {unmatched[:3]}); expected {_LAYOUT_TEXT}"
        )
    pairs = [{"image": str(images[stem]), "label": str(masks[stem])} for stem in sorted(images)]
    for pair in pairs:
        image_size, mask_size = _decode(Path(pair["image"])), _decode(Path(pair["label"]))
        if image_size != mask_size:
            raise ValueError(
                f"mask {pair['label']!r} is {mask_size[0]}x{mask_size[1]} but its image {pair['image']!r} is "
                f"{image_size[0]}x{image_size[1]} (width x height); a mask must have its image's size"
            )
    return layout, pairs


def split_datalist(
    items: Sequence[dict], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[dict]]:
    """Seeded shuffle into ``{"training", "validation", "test"}`` with the given fractions (each part ≥ 1 item)."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {list(fractions)}")
    if len(items) < 3:
        raise ValueError(f"need at least 3 samples for a train/validation/test split, got {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, int(round(fractions[1] * len(items))))
    n_test = max(1, int(round(fractions[2] * len(items))))
    n_train = len(items) - n_val - n_test
    parts = np.split(order, [n_train, n_train + n_val])
    return {name: [dict(items[i]) for i in part] for name, part in zip(("training", "validation", "test"), parts)}


SYNTHETIC_FOLDER = "synthetic_polyp"
"""The training run's synthetic set: ``<datalist_dir>/synthetic_polyp`` (written by :func:`polyp_datalist` only)."""

HELD_OUT_SYNTHETIC_FOLDER = "synthetic_polyp_held_out"
"""Where evaluation / inference write their own synthetic set when there is no training set to read."""


def polyp_datalist(
    dataset_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    synthetic_samples: int = 60,
    synthetic_size: int = 64,
) -> dict[str, list[dict[str, str]]]:
    """The seeded 70/15/15 split of a polyp dataset, also written to ``output_dir/datalist.json``.

    ``dataset_dir`` empty or None: the synthetic set is written to ``output_dir/synthetic_polyp`` (Kvasir-SEG
    layout) and used. The input is validated before anything is written; the datalist is written atomically.
    """
    output_dir = refuse_file(output_dir, "datalist_dir", ": give a folder path (created if missing)")
    if is_unset_folder(dataset_dir):
        dataset_dir = write_synthetic_polyp_dataset(
            output_dir / SYNTHETIC_FOLDER, synthetic_samples, synthetic_size, seed
        )
    layout, pairs = find_polyp_pairs(dataset_dir)
    datalist = split_datalist(pairs, fractions, seed)
    output_folder(output_dir, "datalist_dir")
    target = output_dir / "datalist.json"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"layout": layout, "dataset_dir": str(dataset_dir), "seed": seed, **datalist}, indent=1))
    os.replace(tmp, target)
    return datalist


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_polyp_datalist(
    dataset_dir: str | os.PathLike | None,
    datalist_dir: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    synthetic_samples: int = 60,
    synthetic_size: int = 64,
) -> dict[str, list[dict[str, str]]]:
    """The train/validation/test split for evaluation and inference, made in memory: they never write the training
    data (``<datalist_dir>/datalist.json`` and ``<datalist_dir>/synthetic_polyp/``).

    - Synthetic default (``dataset_dir`` empty): the training run's set ``<datalist_dir>/synthetic_polyp`` when it
      is intact (it matches its stamp), whatever ``--image_size`` or ``--synthetic_samples`` this run is given (the
      transforms resize); without one, a set of these parameters is written to
      ``<datalist_dir>/synthetic_polyp_held_out`` and used.
    - A real ``dataset_dir``: its images and masks, read and decoded as :func:`find_polyp_pairs` does.

    The split is the seeded one of :func:`polyp_datalist`, with the seed the training run recorded in its
    ``datalist.json`` when that run used the same data (so its test split is the one the model never saw), else
    ``seed``.
    """
    datalist_dir = refuse_file(datalist_dir, "datalist_dir", ": give a folder path")
    recorded = _read_json(datalist_dir / "datalist.json")
    recorded = recorded if isinstance(recorded, dict) else {}
    recorded_dir = Path(str(recorded["dataset_dir"])) if recorded.get("dataset_dir") else None
    if is_unset_folder(dataset_dir):
        training_set = datalist_dir / SYNTHETIC_FOLDER
        if intact_synthetic_set(training_set):
            dataset_dir, same_data = training_set, recorded_dir is not None and recorded_dir.name == SYNTHETIC_FOLDER
        else:
            held_out = datalist_dir / HELD_OUT_SYNTHETIC_FOLDER
            dataset_dir = write_synthetic_polyp_dataset(held_out, synthetic_samples, synthetic_size, seed)
            same_data = False
    else:
        same_data = recorded_dir is not None and recorded_dir.resolve() == Path(dataset_dir).resolve()
    recorded_seed = recorded.get("seed") if same_data else None
    _, pairs = find_polyp_pairs(dataset_dir)
    return split_datalist(pairs, fractions, recorded_seed if isinstance(recorded_seed, int) else seed)
