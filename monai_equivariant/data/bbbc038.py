"""The BBBC038 nuclei sample shipped with the package: one real labelled fluorescence image for benchmarks.

``bbbc038_sample/`` holds ``img2d.tif`` (512×512 uint16 nuclei) and ``mask2d.tif`` (instance labels, 0 =
background) from the 2018 Data Science Bowl / BBBC038v1 (CC0), with their provenance in its ``README.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["BBBC038_SAMPLE_DIR", "load_bbbc038_sample"]

BBBC038_SAMPLE_DIR = Path(__file__).resolve().parent / "bbbc038_sample"
"""The folder of the shipped sample (``img2d.tif``, ``mask2d.tif``, ``README.md``)."""

IMAGE_FILE, MASK_FILE = "img2d.tif", "mask2d.tif"
PERCENTILES = (1.0, 99.8)
"""The image is scaled so that these intensity percentiles map to 0 and 1 (stardist's normalisation)."""


def _read(path: Path, what: str) -> torch.Tensor:
    """(1, H, W) float32 tensor of a single-channel image file, read by MONAI's ``LoadImage`` with PIL.

    Rows and columns as in the file (``reverse_indexing=False``: index [0, y, x]).

    Raises:
        FileNotFoundError naming the file when it is missing; ValueError naming it when it does not decode or
        is not one 2D channel.
    """
    from monai.data import PILReader
    from monai.transforms import LoadImage

    if not path.is_file():
        raise FileNotFoundError(f"BBBC038 {what} file {str(path)!r} does not exist; expected {IMAGE_FILE} and "
                                f"{MASK_FILE} in the folder (see {BBBC038_SAMPLE_DIR / 'README.md'})")
    loader = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True, ensure_channel_first=True)
    try:
        data = torch.as_tensor(loader(str(path))).float()
    except Exception as error:  # PIL raises OSError/SyntaxError/ValueError; LoadImage wraps some in RuntimeError
        raise ValueError(f"cannot read BBBC038 {what} file {str(path)!r} ({error}); expected a 2D TIFF") from error
    if data.dim() != 3 or data.shape[0] != 1:
        raise ValueError(
            f"BBBC038 {what} file {str(path)!r} has shape {tuple(data.shape)} after channel-first loading; "
            "expected one 2D channel (1, H, W)"
        )
    return data


def load_bbbc038_sample(directory: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The nuclei image and its foreground mask.

    Args:
        directory: a folder holding ``img2d.tif`` and ``mask2d.tif`` (default: the sample shipped with the
            package, :data:`BBBC038_SAMPLE_DIR`).

    Returns:
        ``(image, foreground)``, both (1, H, W) float32 (512×512 for the sample): the image scaled so that its
        1st and 99.8th intensity percentiles map to 0 and 1 (not clipped), and the instance labels as a binary
        mask (1 inside any nucleus, 0 on the background).

    Raises:
        FileNotFoundError naming a missing file; ValueError naming a file that does not decode, and naming both
        files when the mask's size differs from the image's.
    """
    from monai.transforms import ScaleIntensityRangePercentiles

    folder = BBBC038_SAMPLE_DIR if directory is None else Path(directory)
    image_path, mask_path = folder / IMAGE_FILE, folder / MASK_FILE
    image, labels = _read(image_path, "image"), _read(mask_path, "mask")
    if image.shape != labels.shape:
        raise ValueError(
            f"mask {str(mask_path)!r} is {labels.shape[1]}x{labels.shape[2]} but image {str(image_path)!r} is "
            f"{image.shape[1]}x{image.shape[2]} (height x width); the mask must have the image's size"
        )
    low, high = PERCENTILES
    scale = ScaleIntensityRangePercentiles(lower=low, upper=high, b_min=0.0, b_max=1.0, clip=False)
    image = torch.as_tensor(scale(image)).float()
    return image, (labels > 0).float()
