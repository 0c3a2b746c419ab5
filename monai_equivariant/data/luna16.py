"""LUNA16 false-positive-reduction patches: MetaImage (``.mhd`` + ``.raw``) CT scans and ``candidates.csv``
(``seriesuid,coordX,coordY,coordZ,class``) -> isotropic, HU-clipped cube patches centred on each candidate.

No SimpleITK/ITK needed: a small MetaImage reader (header parser + numpy raw reader) is included.
Layout: ``<root_dir>/subset0 … subset9/<seriesuid>.mhd`` (+ ``.raw``) and ``<root_dir>/candidates.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from monai_equivariant.data.folders import output_folder, refuse_file

__all__ = [
    "MetaImageHeader",
    "extract_patch",
    "luna16_patches",
    "read_candidates",
    "read_metaimage",
    "read_metaimage_header",
    "world_to_voxel",
]

LAYOUT = (
    "expected LUNA16 layout: <root_dir>/subset*/<seriesuid>.mhd with its .raw next to it, and "
    "<root_dir>/candidates.csv with columns seriesuid,coordX,coordY,coordZ,class"
)

_ELEMENT_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
    "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_ALIASES = {"Origin": "Offset", "Position": "Offset", "Rotation": "TransformMatrix",
            "Orientation": "TransformMatrix", "ElementByteOrderMSB": "BinaryDataByteOrderMSB"}


@dataclass(frozen=True)
class MetaImageHeader:
    """The fields of a 3D MetaImage header that locate its voxels in the world (all in x, y, z order).

    ``dim_size`` (nx, ny, nz); ``spacing`` mm; ``origin`` world position of voxel (0, 0, 0);
    ``direction`` 3×3 (columns = world directions of the x, y, z index axes); ``dtype`` numpy dtype with
    byte order; ``data_file`` path of the raw data (or the .mhd itself with ``data_offset`` for LOCAL).
    """

    dim_size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    dtype: np.dtype
    data_file: Path
    data_offset: int = 0
    compressed: bool = False

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Array shape (nz, ny, nx): x varies fastest in the file."""
        return tuple(reversed(self.dim_size))  # type: ignore[return-value]


def _numbers(value: str, count: int, key: str, path: Path, kind=float) -> tuple:
    parts = value.split()
    if len(parts) != count:
        raise ValueError(f"{path}: {key} needs {count} numbers, got {value!r}")
    return tuple(kind(p) for p in parts)


def read_metaimage_header(path: str | os.PathLike) -> MetaImageHeader:
    """Parse a 3D ``.mhd`` header (``key = value`` lines up to ``ElementDataFile``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MetaImage header not found: {path}")
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as handle:
        for raw_line in handle:
            offset += len(raw_line)
            line = raw_line.decode("latin-1").strip()
            if not line or "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            fields[_ALIASES.get(key, key)] = value
            if key == "ElementDataFile":
                break
    for key in ("NDims", "DimSize", "ElementType", "ElementDataFile"):
        if key not in fields:
            raise ValueError(f"{path}: not a MetaImage header (no {key})")
    if int(fields["NDims"]) != 3:
        raise ValueError(f"{path}: expected a 3D image (NDims = 3), got NDims = {fields['NDims']}")
    if int(fields.get("ElementNumberOfChannels", "1")) != 1:
        raise ValueError(f"{path}: only single-channel images are supported")
    element = fields["ElementType"]
    if element not in _ELEMENT_TYPES:
        raise ValueError(f"{path}: unsupported ElementType {element}; expected one of {sorted(_ELEMENT_TYPES)}")
    msb = fields.get("BinaryDataByteOrderMSB", "False").lower() == "true"
    dtype = np.dtype(_ELEMENT_TYPES[element]).newbyteorder(">" if msb else "<")
    direction = np.array(_numbers(fields.get("TransformMatrix", "1 0 0 0 1 0 0 0 1"), 9, "TransformMatrix", path))
    data_name = fields["ElementDataFile"]
    if data_name.upper() == "LIST" or "%" in data_name:
        raise ValueError(f"{path}: multi-file ElementDataFile {data_name!r} is not supported")
    local = data_name.upper() == "LOCAL"
    return MetaImageHeader(
        dim_size=_numbers(fields["DimSize"], 3, "DimSize", path, int),
        spacing=_numbers(fields.get("ElementSpacing", fields.get("ElementSize", "1 1 1")), 3, "ElementSpacing", path),
        origin=_numbers(fields.get("Offset", "0 0 0"), 3, "Offset", path),
        # MetaImage stores the matrix row by row with the index axes' directions as columns (ITK convention)
        direction=direction.reshape(3, 3).T,
        dtype=dtype,
        data_file=path if local else path.parent / data_name,
        data_offset=offset if local else 0,
        compressed=fields.get("CompressedData", "False").lower() == "true",
    )


def read_metaimage(path: str | os.PathLike, mmap: bool = True) -> tuple[np.ndarray, MetaImageHeader]:
    """Voxels (nz, ny, nx) in native byte order (memory-mapped when possible) and the header."""
    header = read_metaimage_header(path)
    if not header.data_file.is_file():
        raise FileNotFoundError(f"raw data {header.data_file} named by {path} not found; {LAYOUT}")
    count = int(np.prod(header.dim_size))
    if header.compressed:
        with open(header.data_file, "rb") as handle:
            handle.seek(header.data_offset)
            data = np.frombuffer(zlib.decompress(handle.read()), dtype=header.dtype)
    else:
        expected = header.data_offset + count * header.dtype.itemsize
        if header.data_file.stat().st_size < expected:
            raise ValueError(
                f"{header.data_file} holds {header.data_file.stat().st_size} bytes, fewer than the {expected} "
                f"that DimSize {header.dim_size} of {header.dtype} needs"
            )
        if mmap and header.dtype.isnative:
            data = np.memmap(header.data_file, dtype=header.dtype, mode="r", offset=header.data_offset, shape=(count,))
        else:
            data = np.fromfile(header.data_file, dtype=header.dtype, count=count, offset=header.data_offset)
    if data.size != count:
        raise ValueError(f"{header.data_file}: {data.size} voxels, but DimSize {header.dim_size} needs {count}")
    if not header.dtype.isnative:
        data = data.astype(header.dtype.newbyteorder("="))
    return data.reshape(header.shape_zyx), header


def world_to_voxel(world_xyz, header: MetaImageHeader) -> np.ndarray:
    """World (x, y, z) mm -> continuous array index (z, y, x): ``D⁻¹(world − origin) / spacing``, reversed."""
    world = np.asarray(world_xyz, dtype=np.float64)
    index_xyz = np.linalg.solve(header.direction, world - np.asarray(header.origin)) / np.asarray(header.spacing)
    return index_xyz[::-1].copy()


def read_candidates(path: str | os.PathLike) -> list[dict]:
    """Rows of a LUNA16 ``candidates.csv`` as ``{"seriesuid", "coord_xyz": (x, y, z), "label"}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"candidates file not found: {path}; {LAYOUT}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        needed = {"seriesuid", "coordX", "coordY", "coordZ", "class"}
        if not needed.issubset(reader.fieldnames or []):
            raise ValueError(f"{path}: expected columns {sorted(needed)}, got {reader.fieldnames}")
        return [
            {
                "seriesuid": row["seriesuid"],
                "coord_xyz": (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])),
                "label": int(float(row["class"])),
            }
            for row in reader
        ]


def extract_patch(
    volume: np.ndarray,
    centre_zyx,
    spacing_zyx,
    size: int = 32,
    new_spacing: float = 1.0,
    pad_value: float = -1000.0,
) -> np.ndarray:
    """Resample a (size, size, size) cube with isotropic ``new_spacing`` mm centred on ``centre_zyx`` (voxels).

    Trilinear interpolation on the sample grid ``centre + (i − (size−1)/2)·new_spacing / spacing``; samples
    beyond the volume get ``pad_value`` (air). Only the bounding box of the samples is read from ``volume``
    (cheap on memory maps). Returns float32.
    """
    centre = np.asarray(centre_zyx, dtype=np.float64)
    steps = new_spacing / np.asarray(spacing_zyx, dtype=np.float64)
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    axes = [centre[d] + offsets * steps[d] for d in range(3)]
    lo = [max(0, int(np.floor(a.min()))) for a in axes]
    hi = [min(n, int(np.ceil(a.max())) + 1) for a, n in zip(axes, volume.shape)]
    if any(h <= l for l, h in zip(lo, hi)):
        return np.full((size,) * 3, pad_value, dtype=np.float32)
    crop = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    grid = np.meshgrid(*[a - l for a, l in zip(axes, lo)], indexing="ij")
    return map_coordinates(crop, grid, order=1, mode="constant", cval=pad_value).astype(np.float32)


def _find_scans(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(root.rglob("*.mhd"))}


def _cache_key(rows: list[dict], size: int, spacing: float, hu_window: tuple[float, float]) -> str:
    digest = hashlib.sha1(repr((int(size), float(spacing), *(float(v) for v in hu_window))).encode())
    digest.update(np.asarray([r["coord_xyz"] for r in rows], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def luna16_patches(
    root_dir: str | os.PathLike,
    candidates_file: str | os.PathLike | None = None,
    patch_size: int = 32,
    spacing: float = 1.0,
    hu_window: tuple[float, float] = (-1000.0, 400.0),
    cache_dir: str | os.PathLike | None = None,
    seriesuids: list[str] | None = None,
    missing_scans: str = "error",
) -> list[dict]:
    """Candidate patches as ``[{"image": (1, s, s, s) float32 in [0, 1], "label", "seriesuid", "coord_xyz"}]``.

    Each scan is read once; every candidate's cube is resampled to ``spacing`` mm, clipped to ``hu_window``
    (HU) and scaled to [0, 1]. With ``cache_dir``, the patches of each scan are stored as one ``.npy`` keyed
    by the candidates and settings, and read from there next time.

    Args:
        root_dir: LUNA16 root (``subset*/`` folders of ``.mhd``/``.raw``, ``candidates.csv``).
        candidates_file: defaults to ``<root_dir>/candidates.csv``.
        patch_size: cube edge in voxels of ``spacing`` mm (32 by default).
        spacing: isotropic output spacing (mm).
        hu_window: (low, high) HU clip range.
        cache_dir: optional folder for cached patches.
        seriesuids: restrict to these scans.
        missing_scans: ``"error"`` (default) when a candidate's scan is not under root_dir, or ``"skip"``.

    Raises:
        FileNotFoundError: no candidates file, no scans, or (``missing_scans="error"``) a missing scan.
        ValueError: a candidate whose centre lies outside its scan (names the scan and coordinates).
    """
    if missing_scans not in ("error", "skip"):
        raise ValueError(f"missing_scans must be 'error' or 'skip', got {missing_scans!r}")
    if hu_window[0] >= hu_window[1]:
        raise ValueError(f"hu_window must be (low, high) with low < high, got {hu_window}")
    root = refuse_file(root_dir, "LUNA16 root_dir", f"; {LAYOUT}")
    if not root.is_dir():
        raise FileNotFoundError(f"LUNA16 root folder not found: {root}; {LAYOUT}")
    candidates = read_candidates(candidates_file or root / "candidates.csv")
    scans = _find_scans(root)
    if not scans:
        raise FileNotFoundError(f"no .mhd scans under {root}; {LAYOUT}")
    by_series: dict[str, list[dict]] = {}
    for row in candidates:
        if seriesuids is None or row["seriesuid"] in seriesuids:
            by_series.setdefault(row["seriesuid"], []).append(row)
    absent = [uid for uid in by_series if uid not in scans]
    if absent and missing_scans == "error":
        raise FileNotFoundError(
            f"{len(absent)} scan(s) named in the candidates are not under {root}, e.g. {absent[0]}.mhd; {LAYOUT} "
            "(or pass missing_scans='skip')"
        )
    cache = output_folder(cache_dir, "cache_dir") if cache_dir is not None else None
    low, high = hu_window
    samples: list[dict] = []
    for uid, rows in by_series.items():
        if uid not in scans:
            continue
        cached = None if cache is None else cache / f"{uid}_{_cache_key(rows, patch_size, spacing, hu_window)}.npy"
        patches = _cached_patches(cached, (len(rows),) + (patch_size,) * 3) if cached is not None else None
        if patches is None:
            patches = _scan_patches(scans[uid], rows, patch_size, spacing, pad_value=low)
            patches = ((np.clip(patches, low, high) - low) / (high - low)).astype(np.float32)
            if cached is not None:
                _save_atomically(cached, patches)
        for row, patch in zip(rows, patches):
            samples.append(
                {"image": patch[None], "label": row["label"], "seriesuid": uid, "coord_xyz": row["coord_xyz"]}
            )
    return samples


def _cached_patches(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached (N, s, s, s) float32 patches at ``path``, or None when missing or not readable as that shape
    (a damaged cache file is warned about and computed again)."""
    if not path.is_file():
        return None
    try:
        patches = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(f"LUNA16 patch cache {str(path)!r} is unreadable ({error}): computing its patches again")
        return None
    if patches.shape != shape or patches.dtype != np.float32:
        warnings.warn(f"LUNA16 patch cache {str(path)!r} holds {patches.shape} {patches.dtype}, not {shape} "
                      "float32: computing its patches again")
        return None
    return patches


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename: a run killed while saving leaves no torn file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _scan_patches(path: Path, rows: list[dict], size: int, spacing: float, pad_value: float) -> np.ndarray:
    volume, header = read_metaimage(path)
    spacing_zyx = header.spacing[::-1]
    patches = np.empty((len(rows), size, size, size), dtype=np.float32)
    for i, row in enumerate(rows):
        centre = world_to_voxel(row["coord_xyz"], header)
        if np.any(centre < -0.5) or np.any(centre > np.asarray(volume.shape) - 0.5):
            raise ValueError(
                f"candidate of {row['seriesuid']} at world (x, y, z) = {row['coord_xyz']} mm lies outside its "
                f"scan: voxel (z, y, x) = {tuple(np.round(centre, 1))} vs shape {volume.shape} ({path})"
            )
        patches[i] = extract_patch(volume, centre, spacing_zyx, size, spacing, pad_value)
    return patches
