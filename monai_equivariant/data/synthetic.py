"""Built-in synthetic data with the real tasks' structure, so every workflow runs without downloads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from monai_equivariant.data.folders import output_folder, refuse_file

__all__ = [
    "SYNTHETIC_STAMP",
    "check_replaceable",
    "field_of_view",
    "intact_stamped_set",
    "intact_synthetic_set",
    "synthetic_polyp",
    "stamped_set_problem",
    "synthetic_set_problem",
    "synthetic_tissue_patch",
    "write_folder_atomically",
    "write_stamp",
    "write_stamped_set",
    "write_synthetic_polyp_dataset",
]


SYNTHETIC_POLYP_VERSION = 2
"""Bumped whenever :func:`synthetic_polyp` changes, so stamped sets on disk are regenerated."""


def field_of_view(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) bool: the lit field of view of an endoscope, a centred disk or regular-ish octagon.

    Like Kvasir-SEG / CVC-ClinicDB frames, everything outside it is the dark border (so the black corners a
    rotation brings in look like the data). The disk's radius is 0.44-0.5 of the frame; the octagon is the
    square of half-side 0.44-0.5 with its corners cut at 45°.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = (size - 1) / 2
    dy, dx = np.abs(yy - centre) / size, np.abs(xx - centre) / size
    half = rng.uniform(0.44, 0.5)
    if rng.random() < 0.5:
        return dy**2 + dx**2 <= half**2
    return (dy <= half) & (dx <= half) & (dy + dx <= half * rng.uniform(1.3, 1.45))


def synthetic_polyp(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One endoscopy-like polyp frame: 1-2 rounded, oriented, lobed blobs on textured mucosa, seen through a
    circular or octagonal field of view with a dark border, under varied lighting (random brightness, colour
    gain, light direction and off-centre vignette), with specular highlights (small saturated spots).

    Returns:
        image (3, size, size) float32 in [0, 1]; mask (1, size, size) float32 in {0, 1} (0 outside the view).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = (size - 1) / 2
    view = field_of_view(size, rng)
    background = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 16)
    background = (background - background.mean()) / (background.std() + 1e-8)
    tissue = np.stack([0.55 + 0.08 * background, 0.30 + 0.05 * background, 0.25 + 0.04 * background])
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 3)):
        radius, phi = rng.uniform(0, 0.25 * size), rng.uniform(0, 2 * np.pi)
        cy, cx = centre + radius * np.sin(phi), centre + radius * np.cos(phi)
        a, b = rng.uniform(0.08 * size, 0.2 * size), rng.uniform(0.06 * size, 0.14 * size)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(theta) + dx * np.sin(theta)
        v = -dy * np.sin(theta) + dx * np.cos(theta)
        angle = np.arctan2(v, u)
        lobes = 1 + 0.15 * np.sin(rng.integers(2, 5) * angle + rng.uniform(0, 2 * np.pi))
        mask |= (u / a) ** 2 + (v / b) ** 2 <= lobes**2
    mask &= view
    texture = gaussian_filter(rng.standard_normal((size, size)), sigma=1.0)
    shading = gaussian_filter(mask.astype(np.float64), sigma=2.0)
    polyp = np.stack([0.80 + 0.05 * texture, 0.45 + 0.05 * texture, 0.35 + 0.04 * texture])
    image = tissue * (1 - shading) + polyp * shading
    # lighting: brightness, colour gain, a linear fall-off along a random direction, an off-centre vignette
    light = rng.uniform(0, 2 * np.pi)
    ramp = ((yy - centre) * np.sin(light) + (xx - centre) * np.cos(light)) / size
    oy, ox = rng.uniform(-0.15, 0.15, size=2) * size
    vignette = 1 - rng.uniform(0.3, 0.7) * ((yy - centre - oy) ** 2 + (xx - centre - ox) ** 2) / (2 * centre**2)
    gain = rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, size=(3, 1, 1))
    image = image * gain * vignette * (1 + rng.uniform(0.0, 0.5) * ramp)
    # specular highlights: small saturated, slightly elongated spots, more of them on the (wet, bulging) polyp
    spots = np.zeros((size, size))
    inside = np.flatnonzero(view.ravel())
    on_polyp = np.flatnonzero(mask.ravel())
    for pool, count in ((inside, rng.integers(1, 5)), (on_polyp, rng.integers(1, 4) if on_polyp.size else 0)):
        for index in rng.choice(pool, size=count):
            sy, sx = divmod(int(index), size)
            ry, rx = rng.uniform(0.006, 0.02, size=2) * size
            spots = np.maximum(spots, np.exp(-(((yy - sy) / ry) ** 2 + ((xx - sx) / rx) ** 2)))
    image = image * (1 - spots) + spots
    image = image + 0.03 * rng.standard_normal((3, size, size))
    # the dark border around the field of view (slightly noisy black, as in JPEG endoscopy frames)
    edge = gaussian_filter(view.astype(np.float64), sigma=0.7)
    image = image * edge + (1 - edge) * np.abs(0.015 * rng.standard_normal((3, size, size)))
    return np.clip(image, 0, 1).astype(np.float32), mask[None].astype(np.float32)


SYNTHETIC_STAMP = "synthetic.json"
"""The stamp of a synthetic polyp set: its parameters and the byte size of every file it holds, written last."""

_PARTS = ("images", "masks")


def _set_parameters(num_samples: int, size: int, seed: int) -> dict:
    return {"num_samples": int(num_samples), "size": int(size), "seed": int(seed), "version": SYNTHETIC_POLYP_VERSION}


def _files_in(root: Path, parts: tuple[str, ...] = _PARTS) -> dict[str, int]:
    """``{"<part>/<name>": bytes}`` of every file in the set's folders ``parts`` (polyp: images/, masks/)."""
    return {
        f"{part}/{path.name}": path.stat().st_size
        for part in parts
        if (root / part).is_dir()
        for path in sorted((root / part).iterdir())
        if path.is_file()
    }


def _read_stamp(stamp: Path) -> dict | None:
    """The stamp's content (parameters and ``"files"``), or None when it is unreadable or has no file list."""
    try:
        content = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and "files" in content else None


def stamped_set_problem(root: str | Path, wanted: dict, parts: tuple[str, ...], count: int) -> str | None:
    """What is wrong with ``root`` as the stamped synthetic set of parameters ``wanted``, or None when it is that set.

    ``root`` must hold a :data:`SYNTHETIC_STAMP` with exactly ``wanted`` and the list of ``count`` files in the
    folders ``parts``, and exactly those files, each of the byte size it promises (a file missing, added, truncated
    or rewritten by another run is reported). Shared by every synthetic set written as files (polyp frames, organ
    volumes).
    """
    root = Path(root)
    stamp = root / SYNTHETIC_STAMP
    if not stamp.is_file():
        return f"no {SYNTHETIC_STAMP} stamp in {str(root)!r}"
    promised = _read_stamp(stamp)
    if promised is None:
        return f"the stamp {str(stamp)!r} is unreadable or from an older version (no file list)"
    files = promised.pop("files")
    if promised != wanted:
        return f"the set was made with {promised}, not {wanted}"
    if not isinstance(files, dict) or len(files) != int(count):
        return f"the stamp {str(stamp)!r} does not list {int(count)} files"
    found = _files_in(root, parts)
    missing = sorted(set(files) - set(found))
    extra = sorted(set(found) - set(files))
    resized = sorted(name for name in set(files) & set(found) if files[name] != found[name])
    if missing or extra or resized:
        return (
            f"{str(root)!r} does not hold the files its stamp promises ({len(missing)} missing, {len(extra)} not "
            f"listed, {len(resized)} of another size; e.g. {(missing + extra + resized)[:3]})"
        )
    return None


def synthetic_set_problem(root: str | Path, num_samples: int, size: int, seed: int = 0) -> str | None:
    """What is wrong with ``root`` as the synthetic polyp set of these parameters, or None when it is that set.

    ``root`` must hold a stamp with these parameters, and exactly the files the stamp lists, each of the byte size
    it promises (:func:`stamped_set_problem`).
    """
    return stamped_set_problem(root, _set_parameters(num_samples, size, seed), _PARTS, 2 * int(num_samples))


def intact_stamped_set(root: str | Path, parts: tuple[str, ...] = _PARTS, files_per_sample: int = 2) -> bool:
    """Whether ``root`` holds a stamped synthetic set (``num_samples`` × ``files_per_sample`` files in the folders
    ``parts``) exactly as its own stamp describes it, whatever its parameters (:func:`stamped_set_problem`)."""
    stamp = _read_stamp(Path(root) / SYNTHETIC_STAMP)
    if stamp is None:
        return False
    wanted = {key: value for key, value in stamp.items() if key != "files"}
    count = wanted.get("num_samples")
    return isinstance(count, int) and stamped_set_problem(root, wanted, parts, files_per_sample * count) is None


def intact_synthetic_set(root: str | Path) -> bool:
    """Whether ``root`` holds a synthetic polyp set exactly as its own stamp describes it (whatever its parameters)."""
    stamp = _read_stamp(Path(root) / SYNTHETIC_STAMP)
    if stamp is None:
        return False
    parameters = [stamp.get(key) for key in ("num_samples", "size", "seed")]
    return all(isinstance(v, int) for v in parameters) and synthetic_set_problem(root, *parameters) is None


def check_replaceable(root: Path, parts: tuple[str, ...], own: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace an existing ``root`` that is not a synthetic set: no stamp, and files other than the
    folders ``parts`` holding files ``own(path)`` calls the set's own (a killed writer's leftovers).

    Args:
        what: the kind of set, for messages (``"synthetic polyp"``: "... is not a synthetic polyp set").

    Raises:
        ValueError naming ``root``, what it should be and a few of the foreign files.
    """
    if not refuse_file(root, what + " folder", ": give a folder path").exists():
        return
    if (root / SYNTHETIC_STAMP).is_file():
        return
    foreign = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*"))
        if not (path.is_dir() and path.parent == root and path.name in parts)
        and not (path.is_file() and path.parent.name in parts and path.parent.parent == root and own(path))
    ]
    if foreign:
        raise ValueError(
            f"{str(root)!r} exists and is not a {what} set (no {SYNTHETIC_STAMP}; it holds {foreign[:5]}): "
            "refusing to replace it; remove it or choose another folder"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_dead_temporaries(root: Path) -> None:
    """Remove the temporary folders (``.<name>.tmp-<pid>-*``, ``.<name>.old-<pid>-*``) that killed writers left."""
    for path in root.parent.glob(f".{root.name}.*-*-*"):
        kind, _, rest = path.name[len(root.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and path.is_dir() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _write_set(folder: Path, num_samples: int, size: int, seed: int) -> None:
    """Write the images, the masks and, last, the stamp listing them into the empty ``folder``."""
    from PIL import Image

    for part in _PARTS:
        (folder / part).mkdir()
    rng = np.random.default_rng(seed)
    for index in range(num_samples):
        image, mask = synthetic_polyp(rng, size)
        name = f"synthetic_{index:04d}.png"
        Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(folder / "images" / name)
        Image.fromarray((mask[0] * 255).astype(np.uint8)).save(folder / "masks" / name)
    write_stamp(folder, _set_parameters(num_samples, size, seed), _PARTS)


def _replace_folder(target: Path, new: Path) -> None:
    """Put the complete folder ``new`` at ``target``: rename the old one aside, rename ``new`` in, delete the old.

    A run killed in between leaves no ``target`` (the next run writes the set again), never a mixed one.
    """
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_synthetic_polyp_dataset(root: str | Path, num_samples: int = 60, size: int = 64, seed: int = 0) -> Path:
    """Write ``num_samples`` synthetic polyps to ``root`` in the Kvasir-SEG layout (``images/``, ``masks/``, PNG).

    Images are RGB uint8, masks grayscale 0/255. A ``synthetic.json`` stamp records the parameters and the byte
    size of every file. An existing set is reused only when it holds exactly what its stamp promises
    (:func:`synthetic_set_problem`), so repeated runs do not regenerate it; a set whose files do not match its
    stamp is written again, with a warning. Writing is atomic: the set is written to a temporary folder beside
    ``root`` (stamp last) and renamed into place, so a run killed at any moment leaves either the old complete
    set or none, never new files under an old stamp. An existing ``root`` that is not a synthetic set (no stamp,
    other files) is refused, not replaced.

    Returns:
        ``root`` as a Path.
    """
    if num_samples < 1 or size < 8:
        raise ValueError(f"need num_samples >= 1 and size >= 8, got num_samples={num_samples}, size={size}")
    return write_stamped_set(
        root, _set_parameters(num_samples, size, seed), _PARTS, 2 * int(num_samples),
        lambda folder: _write_set(folder, int(num_samples), int(size), int(seed)),
        own=lambda path: path.name.startswith("synthetic_") and path.suffix == ".png", what="synthetic polyp",
    )


def write_stamped_set(
    root: str | Path, wanted: dict, parts: tuple[str, ...], count: int, write: Callable[[Path], None],
    own: Callable[[Path], bool], what: str,
) -> Path:
    """The stamped synthetic set of parameters ``wanted`` at ``root``: reused when intact
    (:func:`stamped_set_problem`), else written by ``write(folder)`` (its files in the folders ``parts``, then
    :func:`write_stamp` last) through :func:`write_folder_atomically`; a set of these parameters that does not
    match its stamp is written again with a warning. An existing ``root`` that is not such a set is refused
    (:func:`check_replaceable`). ``what`` names the set in messages (``"synthetic polyp"``)."""
    root = Path(root)
    check_replaceable(root, parts, own, what)
    problem = stamped_set_problem(root, wanted, parts, count) if root.is_dir() else "no set"
    if problem is None:
        return root
    stamped = _read_stamp(root / SYNTHETIC_STAMP) if root.is_dir() else None
    if stamped is not None and {k: v for k, v in stamped.items() if k != "files"} == wanted:
        warnings.warn(f"{what} set: {problem}; writing it again")  # damaged, not merely other parameters
    write_folder_atomically(root, write, f"{what} folder")
    return root


def write_stamp(folder: Path, wanted: dict, parts: tuple[str, ...]) -> None:
    """Write the :data:`SYNTHETIC_STAMP` of ``folder``: the parameters ``wanted`` and the byte size of every file in
    its folders ``parts`` (call it after every other file is written)."""
    (folder / SYNTHETIC_STAMP).write_text(json.dumps({**wanted, "files": _files_in(folder, parts)}))


def write_folder_atomically(root: Path, write: Callable[[Path], None], what: str) -> None:
    """Make the folder ``root`` by ``write(folder)`` into a new temporary folder beside it, then rename that into
    place (:func:`_replace_folder`), so a run killed at any moment leaves the old complete folder or none, never a
    mixed one. ``write`` should write its stamp last. Temporaries that killed writers left are removed first.

    Raises:
        ValueError naming ``what`` when ``root``'s parent cannot be created.
    """
    root = Path(root)
    output_folder(root.parent, f"{what}'s parent")
    _remove_dead_temporaries(root)
    new = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-{os.getpid()}-", dir=root.parent))
    try:
        write(new)
        _replace_folder(root, new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def synthetic_tissue_patch(rng: np.random.Generator, label: int, size: int = 32) -> np.ndarray:
    """One H&E-like patch of oriented tissue; ``label`` 1 adds a cluster of large, dark, irregular nuclei.

    Both classes share a pink stroma of fibres at a random orientation and scattered small nuclei, so only
    the nuclei (not the orientation) tell the classes apart: the label is invariant to rotations.

    Returns:
        (3, size, size) float32 RGB in [0, 1].
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    fibres = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * rng.uniform(0.6, 1.2) + rng.uniform(0, 2 * np.pi))
    fibres = fibres + 0.8 * gaussian_filter(rng.standard_normal((size, size)), sigma=1.0)
    nuclei = np.zeros((size, size))
    small = rng.integers(size // 8, size // 4 + 1)
    for _ in range(small):
        cy, cx = rng.uniform(0, size, size=2)
        nuclei = np.maximum(nuclei, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.04 * size) ** 2)))
    if label:
        cy, cx = rng.uniform(0.3 * size, 0.7 * size, size=2)
        for _ in range(rng.integers(4, 8)):
            ny, nx = cy + rng.normal(0, 0.12 * size), cx + rng.normal(0, 0.12 * size)
            a, b, phi = rng.uniform(0.06, 0.1) * size, rng.uniform(0.04, 0.07) * size, rng.uniform(0, np.pi)
            u = (yy - ny) * np.cos(phi) + (xx - nx) * np.sin(phi)
            v = -(yy - ny) * np.sin(phi) + (xx - nx) * np.cos(phi)
            nuclei = np.maximum(nuclei, np.exp(-((u / a) ** 2 + (v / b) ** 2)))
    stroma = np.stack([0.90 + 0.04 * fibres, 0.65 + 0.06 * fibres, 0.80 + 0.03 * fibres])
    haematoxylin = np.array([0.35, 0.20, 0.55])[:, None, None]
    image = stroma * (1 - nuclei) + haematoxylin * nuclei + 0.03 * rng.standard_normal((3, size, size))
    return np.clip(image, 0, 1).astype(np.float32)
