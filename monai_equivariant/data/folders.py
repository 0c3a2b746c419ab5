"""Folder arguments of the data functions (``dataset_dir``, ``root_dir``, output and cache folders): whether one is
left empty (the synthetic default), and an error that names the argument and the path when a folder is given a
file, does not exist, or cannot be created."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["UNSET_FOLDER", "existing_folder", "is_unset_folder", "output_folder", "refuse_file"]

UNSET_FOLDER = ("", "None", "null")
"""What a bundle config or command line passes for "no folder" (besides ``None``), surrounding spaces ignored."""


def is_unset_folder(path: str | os.PathLike | None) -> bool:
    """Whether a folder argument is left empty: ``None``, ``""``, ``"None"`` or ``"null"`` (a ``dataset_dir`` that
    selects the built-in synthetic data)."""
    return path is None or str(path).strip() in UNSET_FOLDER


def refuse_file(path: str | os.PathLike, what: str, hint: str) -> Path:
    """``path`` as a Path, unless a file (not a folder) is there.

    Raises:
        ValueError ``"{what} '{path}' is a file, not a folder{hint}"`` (``hint``: what to give instead).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} is a file, not a folder{hint}")
    return folder


def existing_folder(path: str | os.PathLike, what: str, expected: str) -> Path:
    """``path`` as a Path when it is an existing folder.

    Args:
        path: the folder given.
        what: the argument's name, for the message (``"dataset_dir"``, ``"root_dir"``).
        expected: what the folder should hold, for the message.

    Raises:
        ValueError naming ``what`` and the path when it is a file or does not exist.
    """
    folder = refuse_file(path, what, f"; expected a folder holding {expected}")
    if not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} does not exist; expected a folder holding {expected}")
    return folder


def output_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, created (with its parents) if missing, for a function to write into.

    Raises:
        ValueError naming ``what`` and the path when it, or one of its parents, is a file, or it cannot be created.
    """
    folder = refuse_file(path, what, ": give a folder path (created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent is a file (NotADirectoryError / FileExistsError), no permission, ...
        raise ValueError(f"{what} {str(folder)!r} cannot be created ({error}): give a folder path you can write to") from error
    return folder
