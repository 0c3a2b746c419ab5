"""Atomic checkpoints: MONAI's CheckpointSaver writes files in place (``DiskSaver(atomic=False)``), so a run
killed while saving leaves a truncated file. This saver writes to a temporary file in the same folder and
``os.replace``-s it (atomic on POSIX), keeping the usual ``rw-r--r--`` permissions (umask)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver", "AtomicDiskSaver", "latest_checkpoint"]


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver(atomic=True)`` with an optional fixed file name (never removed, only replaced) and
    umask permissions."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        path = self.dirname / filename
        if path.exists():  # tempfile creates 0600 files; give the file the permissions of a normal write
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(path, 0o666 & ~umask)

    def remove(self, filename: str) -> None:
        # ignite removes the previous file before writing the next one; with a fixed name the next write
        # replaces it atomically, so removing it first would only open a window with no file at all
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` (same arguments) whose every file is written atomically."""

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = AtomicDiskSaver(self.save_dir, filename=fixed)


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> str:
    """Path of the newest ``{prefix}_epoch=N.pt`` in ``ckpt_dir`` (what the train configs save every epoch).

    Newest = last written (then highest N), so files left over from an older, longer run are not picked.

    Raises:
        ValueError naming the folder when it holds no such checkpoint (nothing to resume from).
    """
    found = []
    for path in Path(ckpt_dir).glob(f"{prefix}_epoch=*.pt"):
        step = path.stem.rsplit("=", 1)[-1]
        if step.isdigit():
            found.append((path.stat().st_mtime_ns, int(step), str(path)))
    if not found:
        raise ValueError(f"no '{prefix}_epoch=N.pt' checkpoint in {str(ckpt_dir)!r} to resume from; train without resume first")
    return max(found)[2]
