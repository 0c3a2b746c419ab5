"""Every command-line override of a bundle, checked before the bundle writes anything.

Each bundle's configs declare their overrides in one dict (``bundle_overrides``: name -> ``@name``) and evaluate
:func:`check_overrides` first in ``initialize``, then :func:`check_network_input` (the input size against the
built network's multiple). Both only read: a bad override stops the run with a message naming it (``--name``),
what was given and what is allowed, and leaves the bundle root as it was (no ``data/``, ``models/``,
``datalist.json``, lock file or TensorBoard events).

Integers are parsed strictly by :func:`integer` and :func:`sample_count` (the one parser of ``--train_samples``
and ``--max_samples`` in every bundle): booleans, non-integral numbers and other strings are refused.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_equivariant.bundle.baselines import AUGMENTATIONS, INFERERS
from monai_equivariant.bundle.workflow import as_bool

__all__ = [
    "BUNDLE_SPECS",
    "BundleSpec",
    "check_network_input",
    "check_overrides",
    "check_roi_size",
    "grid_group",
    "integer",
    "network_input_size",
    "positive_number",
    "rotation_subgroup",
    "sample_count",
    "training_samples",
    "training_split_size",
    "verify_net_in_out",
]

_ALL = ("", "none", "null", "all")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _ALL)


def integer(value: Any, option: str, minimum: int | None = None) -> int:
    """``value`` as an int: an int, an integral float (``3.0``) or a string of one (``"3"``).

    Raises:
        ValueError naming ``--option`` for a boolean, a non-integral number, another string or type, or a value
        below ``minimum``.
    """
    bound = "" if minimum is None else f" ≥ {minimum}"
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"--{option} must be an integer{bound}, got the boolean {value!r}")
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"--{option} must be an integer{bound}, got {value!r}") from None
    if isinstance(number, numbers.Integral):
        result = int(number)
    elif isinstance(number, numbers.Real) and math.isfinite(float(number)) and float(number).is_integer():
        result = int(number)
    else:
        raise ValueError(f"--{option} must be an integer{bound}, got {value!r}")
    if minimum is not None and result < minimum:
        raise ValueError(f"--{option} must be an integer{bound}, got {value!r}")
    return result


def positive_number(value: Any, option: str) -> float:
    """``value`` as a finite float > 0 (a learning rate); ValueError naming ``--option`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"--{option} must be a positive number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--{option} must be a positive number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"--{option} must be a positive finite number, got {value!r}")
    return number


def sample_count(
    value: Any, option: str = "train_samples", available: int | None = None, what: str = "training samples"
) -> int | None:
    """A sample-count override (``--train_samples``, ``--max_samples``): None for all (None, ``0``, ``""``,
    ``"none"``, ``"null"``, ``"all"``), else a positive int (:func:`integer`).

    Args:
        available: the size of the split the count is taken from; a larger count is refused (None: unknown).
        what: what is counted, for the message.

    Raises:
        ValueError naming ``--option``, the value and the allowed range.
    """
    if _is_empty(value):
        return None
    try:
        count = integer(value, option, minimum=0)
    except ValueError:
        what = f"1 to {available}" if available is not None else "a positive integer"
        raise ValueError(f"--{option} must be {what} (or 0 / null for all), got {value!r}") from None
    if count == 0:
        return None
    if available is not None and count > available:
        raise ValueError(
            f"--{option}: asked for {count} {what}, but there are {available}: use a number from 1 to "
            f"{available} (or 0 / null for all)"
        )
    return count


def training_samples(train_samples: Any, max_samples: Any = None) -> int | None:
    """How many training samples a bundle takes: ``--train_samples`` when given, else ``--max_samples`` (the
    cap on every split), None for all; both parsed by :func:`sample_count`."""
    return sample_count(train_samples, "train_samples") or sample_count(max_samples, "max_samples")


def grid_group(value: Any, option: str, spatial_dims: int) -> str:
    """The name of a grid group acting on ``spatial_dims``-D images (``--augmentation_group``,
    ``--ensemble_group``): exact transforms need a grid group of the data's dimension.

    Raises:
        ValueError naming ``--option``: not a string, unknown name, a group of the other dimension, or an
        interpolated group (se2_N with N not dividing 4).
    """
    from monai_equivariant.groups import GROUP_NAMES, get_group

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"--{option} must be a group name ({', '.join(GROUP_NAMES)}), got {value!r}")
    name = value.strip()
    try:
        group = get_group(name, None if name == "trivial" else spatial_dims)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"--{option} {value!r} is not a group of {spatial_dims}D images ({error}); this bundle's data is "
            f"{spatial_dims}D: use e.g. {_GROUP_EXAMPLES[int(spatial_dims)]}"
        ) from None
    if not group.is_grid:
        raise ValueError(
            f"--{option} {value!r} is not a grid group: its rotations are interpolated, so the augmentation or "
            f"ensemble would not be exact; use e.g. {_GROUP_EXAMPLES[int(spatial_dims)]}"
        )
    return name


_GROUP_EXAMPLES = {2: "p4 or p4m", 3: "O, Oh or D4h"}


def rotation_subgroup(name: str) -> str:
    """The built-in group made of the rotations (det +1) of the grid group ``name``: ``D4h`` -> ``D4``, ``Oh`` ->
    ``O``, ``p4m`` -> ``p4``; a group of rotations is its own. Its elements keep left and right labels: a patient
    turned is still the same patient, a mirrored one has swapped sides."""
    from monai_equivariant.groups import GROUP_NAMES, get_group

    group = get_group(name)
    proper = {m.tobytes() for m in np.round(group.matrices).astype(np.int64) if np.linalg.det(m) > 0}
    for candidate in (name, *GROUP_NAMES):
        try:
            other = get_group(candidate, group.spatial_dims)
        except (ValueError, TypeError):
            continue
        if other.is_grid and {m.tobytes() for m in np.round(other.matrices).astype(np.int64)} == proper:
            return candidate
    raise ValueError(f"group {name!r}: no built-in group is made of its {len(proper)} rotations")


def _label_permutation(value: Any, option: str) -> list[int] | None:
    """None (no lateral classes) or the class permutation of a left-right reflection: every class index 0..C-1 once,
    pairs swapped (applied twice it is the identity), e.g. [0, 2, 1, 3] (the checks of
    :func:`~monai_equivariant.layers.lateral_head.check_class_permutation`, named as the override)."""
    from monai_equivariant.layers.lateral_head import check_class_permutation

    if value is None:
        return None
    try:
        return list(check_class_permutation(value, f"--{option}"))
    except TypeError as error:
        raise ValueError(f"--{option} must be null or a list of class indices (e.g. [0, 2, 1, 3]: left <-> right), "
                         f"got {value!r}") from error
    except ValueError as error:
        raise ValueError(f"--{option} must hold every class index 0..C-1 once and swap pairs (a reflection applied "
                         f"twice changes nothing), got {list(value)}") from error


def _choice(value: Any, option: str, allowed: Sequence[str]) -> str:
    name = str(value).strip().lower() if isinstance(value, str) else None
    if name not in allowed:
        raise ValueError(f"--{option} must be one of {sorted(allowed)}, got {value!r}")
    return name


def _inferer(value: Any, option: str) -> Any:
    from monai.inferers import Inferer

    return value if isinstance(value, Inferer) else _choice(value, option, list(INFERERS))


def _boolean(value: Any, option: str) -> bool:
    try:
        return as_bool(value)
    except ValueError as error:
        raise ValueError(f"--{option}: {error}") from None


def _output_path(value: Any, option: str) -> str:
    """A folder the bundle writes into: a path that is not an existing file (nor below one)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"--{option} must be a folder path, got {value!r}")
    path = Path(value).absolute()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ValueError(f"--{option} {str(value)!r}: {str(part)!r} is a file, not a folder")
            break
    return str(value)


def _device(value: Any, option: str) -> torch.device:
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--{option} must be a torch device ('cpu', 'cuda', 'cuda:0'), got {value!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--{option} {value!r}: CUDA is not available on this machine; use 'cpu'")
    return device


def _is_list(value: Any) -> bool:
    """A list-like override value (a list or tuple; not a string or a dict)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, Mapping))


def _spatial_size(value: Any, option: str, spatial_dims: int, minimum: int = 1) -> list[int]:
    """``spatial_dims`` integers ≥ ``minimum`` (``--roi_size [17, 49, 49]``: z, y, x)."""
    if not _is_list(value) or len(value) != spatial_dims:
        raise ValueError(f"--{option} must be a list of {spatial_dims} integers ≥ {minimum} (z, y, x), got {value!r}")
    return [integer(item, option, minimum) for item in value]


def _spacing(value: Any, option: str, spatial_dims: int) -> list[float] | None:
    """None (keep the data's spacing) or ``spatial_dims`` positive numbers (mm per voxel, z, y, x)."""
    if _is_empty(value):
        return None
    if not _is_list(value) or len(value) != spatial_dims:
        raise ValueError(f"--{option} must be null (keep the spacing) or {spatial_dims} positive numbers in mm "
                         f"(z, y, x), got {value!r}")
    return [positive_number(item, option) for item in value]


def _intensity_range(value: Any, option: str) -> list[float] | None:
    """None (scale each volume's own min-max to [0, 1]) or [low, high], low < high (a fixed window, e.g. CT HU)."""
    if _is_empty(value):
        return None
    numbers = []
    if _is_list(value) and len(value) == 2:
        try:
            numbers = [float(v) for v in value if not isinstance(v, (bool, np.bool_))]
        except (TypeError, ValueError):
            numbers = []
    if len(numbers) != 2 or not all(math.isfinite(v) for v in numbers) or numbers[0] >= numbers[1]:
        raise ValueError(f"--{option} must be null (each volume's min-max) or [low, high] with low < high "
                         f"(e.g. [-175, 250] HU for abdominal CT), got {value!r}")
    return numbers


def _plan(value: Any, option: str, spatial_dims: int) -> list[list[int]]:
    """A DynUNet plan argument (``--kernel_size``, ``--strides``, ``--upsample_kernel_size``): one entry per level,
    each an integer ≥ 1 or a list of ``spatial_dims`` of them (anisotropic, z first)."""
    if not _is_list(value) or not value:
        raise ValueError(f"--{option} must be a list with one entry per level (an integer or {spatial_dims} "
                         f"integers, z first), got {value!r}")
    levels = []
    for item in value:
        if _is_list(item):
            if len(item) != spatial_dims:
                raise ValueError(f"--{option}: each level needs 1 or {spatial_dims} sizes, got {item!r} in {value!r}")
            levels.append([integer(size, option, 1) for size in item])
        else:
            levels.append([integer(item, option, 1)] * spatial_dims)
    return levels


def _check_plan(parsed: Mapping[str, Any]) -> None:
    """The DynUNet plan's lengths: ``kernel_size`` and ``strides`` one per level (``network_channels``),
    ``upsample_kernel_size`` one per level below the first."""
    if "strides" not in parsed or "network_channels" not in parsed:
        return
    levels = len(parsed["network_channels"])
    wanted = {"kernel_size": levels, "strides": levels, "upsample_kernel_size": levels - 1}
    for name, count in wanted.items():
        if name in parsed and len(parsed[name]) != count:
            raise ValueError(
                f"--{name} has {len(parsed[name])} entries, but --network_channels {parsed['network_channels']} has "
                f"{levels} levels: give {count} (kernel_size and strides: one per level; upsample_kernel_size: one "
                "per level below the first, usually strides[1:])"
            )


def _channels(value: Any, option: str, min_levels: int) -> list[int]:
    if not _is_list(value):
        raise ValueError(f"--{option} must be a list of positive integers (fields per level), got {value!r}")
    levels = [integer(item, option, minimum=1) for item in value]
    if len(levels) < min_levels:
        raise ValueError(f"--{option} needs at least {min_levels} levels, got {value!r}")
    return levels


_NORMS = ("batch", "instance", "groupbatch", "groupinstance")  # for the message; parsed by group_norm_spec


def _norm_spec(value: Any) -> Any:
    """The group norm ``value`` stands for (the nets' own parser,
    :func:`~monai_equivariant.networks.blocks.factories.group_norm_spec`), None for none; ValueError otherwise."""
    from monai_equivariant.networks.blocks.factories import group_norm_spec

    return group_norm_spec(value, 1)


def _norm(value: Any, option: str) -> Any:
    """A norm the equivariant nets take: None, or batch/instance (also group-, also as [name, kwargs dict])."""
    try:
        _norm_spec(value)
    except ValueError:
        raise ValueError(
            f"--{option} must be one of {list(_NORMS)} (or [name, kwargs dict], or null for none): norms that "
            f"share statistics over the group keep the nets equivariant; got {value!r}"
        ) from None
    return value


def _dataset_dir(value: Any, option: str, bundle: str) -> str:
    """Empty (the synthetic default) or a folder holding the bundle's data layout (read, never written)."""
    if _is_empty(value):
        return ""
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"--{option} must be a folder path (or empty for the synthetic data), got {value!r}")
    if bundle == "histopathology_classification":
        from monai_equivariant.data import pcam_files

        pcam_files(value, "training")  # ValueError naming the path and the PCam layout
    elif bundle == "nodule_classification":
        from monai_equivariant.data.nodule_datalist import nodule_data_kind

        nodule_data_kind(value)  # ValueError naming the path and the layouts
    elif bundle == "organ_segmentation":
        from monai_equivariant.data.decathlon import decathlon_datalist, decathlon_labels

        decathlon_datalist(value, decode=False)  # ValueError naming the path, the file and the MSD layout
        decathlon_labels(value)
    elif not Path(value).is_dir():
        raise ValueError(f"--{option} {str(value)!r} does not exist or is not a directory")
    return str(value)


@dataclass(frozen=True)
class BundleSpec:
    """What a bundle's overrides are checked against."""

    task: str  # "segmentation" or "classification": the networks offered are the registry's of task and dims
    spatial_dims: int
    min_levels: int  # network_channels entries the nets need
    min_synthetic: int  # synthetic_samples the split needs (polyp: one per split; classes: both labels)
    size_option: str  # the override giving the input's spatial size

    @property
    def network_names(self) -> tuple[str, ...]:
        """The ``--network_name`` values: the networks registered for the task and dimension
        (:mod:`monai_equivariant.networks.registry`), in registration order."""
        from monai_equivariant.networks.registry import network_names

        return network_names(self.task, self.spatial_dims)


BUNDLE_SPECS: dict[str, BundleSpec] = {
    "polyp_segmentation": BundleSpec("segmentation", 2, 2, 3, "image_size"),
    "histopathology_classification": BundleSpec("classification", 2, 1, 2, "image_size"),
    "nodule_classification": BundleSpec("classification", 3, 1, 2, "patch_size"),
    "organ_segmentation": BundleSpec("segmentation", 3, 2, 3, "roi_size"),
}


def _spec(bundle: str) -> BundleSpec:
    if bundle not in BUNDLE_SPECS:
        raise ValueError(f"bundle must be one of {sorted(BUNDLE_SPECS)}, got {bundle!r}")
    return BUNDLE_SPECS[bundle]


def _checks(bundle: str) -> dict[str, Callable[[Any, str], Any]]:
    """Override name -> checker(value, option) returning the parsed value (ValueError naming --option)."""
    spec = _spec(bundle)
    dims = spec.spatial_dims

    def at_least(minimum: int) -> Callable[[Any, str], int]:
        return lambda value, option: integer(value, option, minimum)

    def group(value: Any, option: str) -> str:
        return grid_group(value, option, dims)

    def plan(value: Any, option: str) -> list[list[int]]:
        return _plan(value, option, dims)

    return {
        "bundle_root": _output_path, "ckpt_dir": _output_path, "output_dir": _output_path,
        "datalist_dir": _output_path, "cache_dir": _output_path,
        "dataset_dir": lambda value, option: _dataset_dir(value, option, bundle),
        "seed": at_least(0), "synthetic_samples": at_least(spec.min_synthetic),
        "image_size": at_least(1), "patch_size": at_least(1), "num_rotations": at_least(1),
        "network_name": lambda value, option: _choice_exact(value, option, spec.network_names),
        "network_channels": lambda value, option: _channels(value, option, spec.min_levels),
        "network_norm": _norm,
        "epochs": at_least(1), "batch_size": at_least(1), "num_workers": at_least(0), "val_interval": at_least(1),
        "learning_rate": positive_number,
        "train_samples": sample_count, "max_samples": sample_count,
        "augmentation": lambda value, option: _choice(value, option, list(AUGMENTATIONS)),
        "augmentation_group": group, "ensemble_group": group, "label_permutation": _label_permutation,
        "roi_size": lambda value, option: _spatial_size(value, option, dims),
        "volume_size": lambda value, option: _spatial_size(value, option, dims, 8),
        "pixdim": lambda value, option: _spacing(value, option, dims), "intensity_range": _intensity_range,
        "kernel_size": plan, "strides": plan, "upsample_kernel_size": plan, "sw_batch_size": at_least(1),
        "inferer": _inferer,
        "resume": _boolean, "progress": _boolean, "amp": _boolean, "use_tensorboard": _boolean,
        "device": _device,
    }


def _choice_exact(value: Any, option: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"--{option} must be one of {list(allowed)} for this bundle, got {value!r}")
    return value


def check_overrides(overrides: Mapping[str, Any], bundle: str) -> dict[str, Any]:
    """Check every override of ``bundle`` (a key of :data:`BUNDLE_SPECS`) before anything is written.

    Args:
        overrides: the bundle's ``bundle_overrides`` (override name -> resolved value); every name must have a
            check here, so a new override cannot be added unchecked.

    Returns:
        The parsed values (``--train_samples`` as an int or None, booleans as bool...).

    Raises:
        ValueError naming the first bad override (``--name``), the value and what is allowed;
        KeyError for an override name without a check.
    """
    checks = _checks(bundle)
    unknown = sorted(set(overrides) - set(checks))
    if unknown:
        raise KeyError(f"bundle_overrides of {bundle} has no check for {unknown}: add one in {__name__}")
    parsed = {name: checks[name](value, name) for name, value in overrides.items()}
    _check_plan(parsed)
    if parsed.get("train_samples") is not None:
        size = training_split_size(bundle, parsed)
        sample_count(parsed["train_samples"], "train_samples", size)
    return parsed


def training_split_size(bundle: str, overrides: Mapping[str, Any]) -> int | None:
    """The number of samples in the bundle's training split, found without writing anything (None where it is
    known only after the data are prepared: LUNA16 candidate patches).

    Args:
        overrides: parsed ``dataset_dir``, ``synthetic_samples``, ``seed`` and ``max_samples`` (the cap).
    """
    dataset_dir = overrides.get("dataset_dir") or ""
    cap = overrides.get("max_samples")
    if bundle == "polyp_segmentation":
        from monai_equivariant.data import find_polyp_pairs, split_datalist

        if dataset_dir:
            items = find_polyp_pairs(dataset_dir)[1]  # reads (decodes) the files, writes nothing
        else:
            items = [{}] * int(overrides.get("synthetic_samples", 60))
        size = len(split_datalist(items, seed=int(overrides.get("seed", 0)))["training"])
    elif bundle == "organ_segmentation":
        from monai_equivariant.data import decathlon_datalist, split_datalist

        items = decathlon_datalist(dataset_dir, decode=False) if dataset_dir else \
            [{}] * int(overrides.get("synthetic_samples", 16))
        size = len(split_datalist(items, seed=int(overrides.get("seed", 0)))["training"])
    elif bundle == "histopathology_classification":
        if dataset_dir:
            from monai_equivariant.data.pcam import PCamPatches

            size = len(PCamPatches(dataset_dir, "training"))  # reads the HDF5 header only
        else:
            size = int(overrides.get("synthetic_samples", 200))
    else:
        from monai_equivariant.data.nodule_datalist import nodule_data_kind

        kind = nodule_data_kind(dataset_dir)
        if kind == "luna16":
            return None  # counted by first_samples once the candidate patches are extracted
        if kind == "nodulemnist3d":
            from monai_equivariant.data.nodule_datalist import nodule_datalist

            size = len(nodule_datalist(dataset_dir, "training", patch_size=int(overrides.get("patch_size", 32))))
        else:
            size = int(overrides.get("synthetic_samples", 64))
    return size if cap is None else min(size, int(cap))


def network_input_size(bundle: str, size: Any, dataset_dir: Any = "") -> tuple[int, bool]:
    """The spatial size the network is fed, and whether the data fix it: the ``image_size`` / ``patch_size``
    override, except where the data fix the size (PCam patches are 96×96; NoduleMNIST3D cubes are 28³, or 64³
    for ``patch_size`` ≥ 64 when ``nodulemnist3d_64.npz`` is there: see
    :func:`monai_equivariant.data.nodule_datalist.nodule_datalist`). Polyp frames are resized to ``image_size``."""
    spec = _spec(bundle)
    size = integer(size, spec.size_option, minimum=1)
    if _is_empty(dataset_dir) or bundle == "polyp_segmentation":
        return size, False
    if bundle == "histopathology_classification":
        return 96, True
    from monai_equivariant.data.nodule_datalist import nodule_data_kind

    if nodule_data_kind(dataset_dir) == "nodulemnist3d":
        return (64 if size >= 64 and (Path(dataset_dir) / "nodulemnist3d_64.npz").is_file() else 28), True
    return size, False


def _group_order(network: torch.nn.Module, spatial_dims: int) -> int | None:
    from monai_equivariant.bundle.weights import weights_group_order

    order = weights_group_order(network.state_dict(), spatial_dims)
    return order if isinstance(order, int) else None


def check_network_input(network: torch.nn.Module, bundle: str, size: Any, dataset_dir: Any = "",
                        norm: Any = None) -> int:
    """Check that the built ``network`` takes the bundle's input size, before any data are prepared.

    The size must be a multiple of ``network.size_multiple`` (the product of its down-sampling strides: only
    then does pooling map the grid onto itself), and with batch or instance norm the deepest level must keep
    more than one value per channel (spatial positions × |G|; a plain net at size = multiple has one).

    Returns:
        The input size (see :func:`network_input_size`).

    Raises:
        ValueError naming ``--image_size`` / ``--patch_size``, the size, the multiple and the sizes allowed.
    """
    spec = _spec(bundle)
    option = spec.size_option
    size, by_data = network_input_size(bundle, size, dataset_dir)
    multiple = int(getattr(network, "size_multiple", 1))
    fixed = " (the size of the data in --dataset_dir)" if by_data else ""
    if size % multiple != 0:
        raise ValueError(
            f"--{option} {size}{fixed} is not a multiple of {multiple}, the product of the network's down-sampling "
            f"strides (exact equivariance needs it): use {_sizes(multiple, 1)}"
        )
    name = norm[0] if isinstance(norm, (list, tuple)) and norm else norm
    try:
        normalised = _norm_spec(norm) is not None
    except ValueError:
        normalised = False
    if normalised:
        order = _group_order(network, spec.spatial_dims) or 1
        values = (size // multiple) ** spec.spatial_dims * order
        if values < 2:
            raise ValueError(
                f"--{option} {size}{fixed}: this network (|G|={order}) with {name} norm keeps {values} value per "
                f"channel at its deepest level, and the norm needs more than one: use {_sizes(multiple, 2)}"
            )
    return size


def check_roi_size(network: torch.nn.Module, roi_size: Any, option: str = "roi_size") -> list[int]:
    """Check that the built ``network`` takes inputs of ``roi_size`` (the crops and sliding windows, z, y, x), before
    any data are prepared; the network itself says which sizes it takes:

    - a net of this package (``check_input``, e.g. the D4h DynUNet: the sizes its down- and up-sampling keep
      exact) is asked on an empty meta tensor, which costs nothing;
    - MONAI's ``DynUNet``: each side a multiple of the product of the strides along its axis (a factor-2
      up-sampling must give back the skip's size), with more than one voxel at the deepest level (its norms);
    - any other net: one forward pass of zeros at that size (eval mode, restored afterwards).

    Returns:
        The size as a list of ints.

    Raises:
        ValueError naming ``--option``, the size and what the network takes.
    """
    size = _spatial_size(roi_size, option, 3)
    parameter = next(network.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    in_channels = int(getattr(network, "in_channels", 1))
    if hasattr(network, "check_input"):
        try:
            network.check_input(torch.empty((1, in_channels, *size), dtype=dtype, device="meta"))
        except ValueError as error:
            raise ValueError(f"--{option} {size}: {error}") from None
        return size
    from monai.networks.nets import DynUNet

    if isinstance(network, DynUNet):
        strides = np.array([[int(s)] * 3 if np.ndim(s) == 0 else [int(v) for v in s] for s in network.strides])
        product = strides.prod(axis=0)
        deepest = [n // p for n, p in zip(size, product)]
        if any(n % p for n, p in zip(size, product)) or math.prod(deepest) < 2:
            fit = [max(int(p) * math.ceil(n / p), int(p)) for n, p in zip(size, product)]
            if math.prod(n // p for n, p in zip(fit, product)) < 2:
                fit[-1] += int(product[-1])
            raise ValueError(
                f"--{option} {size} does not fit MONAI's DynUNet with strides {strides.tolist()}: each side must be a "
                f"multiple of the product of the strides along its axis, {product.tolist()} (z, y, x), with more "
                f"than one voxel at the deepest level; use e.g. {fit}"
            )
        return size
    from monai_equivariant.metrics.equivariance_helper import eval_mode_restored

    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with eval_mode_restored(network), torch.no_grad():
            network(torch.zeros((1, in_channels, *size), dtype=dtype, device=device))
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"--{option} {size}: the network does not take this size ({error})") from None
    return size


def _sizes(multiple: int, start: int) -> str:
    examples = ", ".join(str(multiple * k) for k in range(start, start + 3))
    return f"a multiple of {multiple} from {start * multiple} ({examples}, …)"


def verify_net_in_out(net_id: str | None = None, *, n: Any = None, p: Any = None, any: Any = None,
                      **kwargs: Any) -> None:
    """``monai.bundle.verify_net_in_out`` with its shape factors checked first: ``--n``, ``--p`` and ``--any``
    (the ``32*n``, ``x**p`` and ``*`` of ``metadata.json``'s spatial shapes) must be integers ≥ 1, else a
    ValueError names the argument (MONAI would build a size-0 or negative input and fail inside torch).
    Run as ``python -m monai_equivariant.bundle verify_net_in_out network_def --meta_file ... --config_file ...``.
    """
    from monai.bundle import verify_net_in_out as monai_verify_net_in_out

    factors = {name: value for name, value in (("n", n), ("p", p), ("any", any)) if value is not None}
    for name, value in factors.items():
        factors[name] = integer(value, name, minimum=1)
    monai_verify_net_in_out(net_id, **factors, **kwargs)
