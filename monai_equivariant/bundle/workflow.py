"""Small pieces of bundle wiring: command-line booleans, attaching handlers, the trained model, resume."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from monai_equivariant.handlers.checkpoint import latest_checkpoint

__all__ = ["as_bool", "attach_handlers", "checked_group", "first_samples", "resume_checkpoint", "trained_model"]

T = TypeVar("T")
# not monai.utils.str2bool: it refuses 1/0 as ints, None and "" (empty overrides), and accepts t/f/y/n
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "none", "")


def as_bool(value: Any) -> bool:
    """A boolean override as given in a config or on the command line (``True``, ``"true"``, ``1``, ``"no"``...).

    Raises:
        ValueError naming the value when it is not one of those words.
    """
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a boolean (True/False, 1/0, yes/no), got {value!r}")


def attach_handlers(handlers: Iterable[Any], engine: Any) -> None:
    """``handler.attach(engine)`` for each handler (the configs' ``initialize`` step for checkpoint handlers)."""
    for handler in handlers:
        handler.attach(engine)


def resume_checkpoint(ckpt_dir: str | os.PathLike, resume: Any) -> str | None:
    """The checkpoint to resume from: the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir`` when ``resume`` is
    true (see :func:`as_bool`), else None (the loader is disabled then).

    The file is read by the configs' :class:`~monai_equivariant.handlers.CheckedCheckpointLoader`: if it is
    truncated or corrupt, the run is refused naming it (and the previous checkpoint that loads, if any), rather than
    continued silently from an older file.

    Raises:
        ValueError naming ``ckpt_dir`` when it holds no epoch checkpoint or is a file.
    """
    return latest_checkpoint(ckpt_dir) if as_bool(resume) else None


def trained_model(ckpt_dir: str | os.PathLike, filename: str = "model.pt") -> str:
    """Path of the trained model ``ckpt_dir/filename``, for evaluation and inference.

    The file is read by the configs' :class:`~monai_equivariant.handlers.CheckedCheckpointLoader`, which names it
    and says what to do when it is truncated or corrupt.

    Raises:
        FileNotFoundError: ``no trained model at …: run train.json first`` when there is none.
        ValueError: ``ckpt_dir`` is a file.
    """
    if Path(ckpt_dir).exists() and not Path(ckpt_dir).is_dir():
        raise ValueError(f"ckpt_dir {str(ckpt_dir)!r} is a file, not a folder: set --ckpt_dir to the folder holding {filename}")
    path = Path(ckpt_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained model at {str(path)!r}: run train.json first (with the same --bundle_root), "
            "or set --ckpt_dir to the folder holding model.pt"
        )
    return str(path)


def checked_group(network_name: str, spatial_dims: int = 2) -> str:
    """The grid group the bundle checks ``network_name`` against (``check_equivariance``, the equivariance
    handler): ``p4m`` for p4m, ``p4`` for the other 2D nets (SE(2,N) and steerable nets are exact at 90°),
    the named group in 3D, ``O`` for the plain 3D net (the ``checked_group`` of the network registry)."""
    from monai_equivariant.networks.registry import network_entries

    entries = {e.name: e.checked_group for e in network_entries(spatial_dims=int(spatial_dims))}
    if str(network_name) not in entries:
        raise ValueError(
            f"network_name must be one of {sorted(entries)} for spatial_dims={spatial_dims}, got {network_name!r}"
        )
    return entries[str(network_name)]


def first_samples(
    items: Sequence[T], count: Any, what: str = "training samples", option: str = "train_samples"
) -> list[T]:
    """The first ``count`` items (all when ``count`` is None or 0): the bundles' ``--train_samples`` limit, taken
    from a split that is already shuffled with the seed, so a smaller set is a subset of a larger one.

    ``count`` is parsed by :func:`monai_equivariant.bundle.overrides.sample_count` (the one parser of every
    bundle): booleans, non-integral numbers and other strings are refused.

    Raises:
        ValueError naming ``--option`` when ``count`` is not a count, negative, or larger than the number of items.
    """
    from monai_equivariant.bundle.overrides import sample_count

    items = list(items)
    count = sample_count(count, option, len(items), what)
    return items if count is None else items[:count]
