"""Atomic checkpoints that remember the best model: MONAI's CheckpointSaver writes files in place
(``DiskSaver(atomic=False)``), so a run killed while saving leaves a truncated file, and its best-metric state
is not part of any checkpoint, so a resumed run replaces the best model with its first, possibly worse, one.
This saver writes to a temporary file in the same folder and ``os.replace``-s it (atomic on POSIX), keeping
the usual ``rw-r--r--`` permissions (umask), and has a ``state_dict`` to put in the training checkpoint."""

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
        self._pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        path = self.dirname / filename
        if path.exists():  # tempfile creates 0600 files; give the file the permissions of a normal write
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(path, 0o666 & ~umask)
        pending, self._pending_removals = self._pending_removals, []
        for old in pending:  # the new file is complete on disk: now the old one may go
            if old != filename and (self.dirname / old).exists():
                super().remove(old)

    def remove(self, filename: str) -> None:
        # ignite's Checkpoint removes the previous file *before* it writes the next one (n_saved reached): a run
        # killed in between left no checkpoint at all. The removal is deferred until the next file is written
        # (a failed write keeps the old file); with a fixed name the next write replaces the file atomically.
        if self.filename is None:
            self._pending_removals.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` (same arguments) whose every file is written atomically, and whose
    best-metric state can be checkpointed.

    Put the key-metric saver (the one writing ``model.pt``) in the training checkpoint's ``save_dict`` and in the
    resume ``CheckpointLoader``'s ``load_dict`` (the bundles call it ``best_model_saver``): a resumed run then
    knows the best score so far and replaces ``model.pt`` only when a validation beats it.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = AtomicDiskSaver(self.save_dir, filename=fixed)

    def state_dict(self) -> dict[str, list[tuple[float, str]]]:
        """The key-metric state: ``{"_saved": [(score, file name), ...]}`` of the best checkpoints so far (empty
        list before the first validation, and without ``save_key_metric``). Plain floats and strings, so it
        loads with ``torch.load(weights_only=True)``; :meth:`load_state_dict` restores it."""
        if self._key_metric_checkpoint is None:
            return {"_saved": []}
        return {"_saved": [(float(item.priority), str(item.filename)) for item in self._key_metric_checkpoint._saved]}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the key-metric state written by :meth:`state_dict` (nothing to do without ``save_key_metric``)."""
        if self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.load_state_dict({"_saved": [tuple(item) for item in state_dict["_saved"]]})

    @property
    def best_score(self) -> float | None:
        """The best key-metric score saved so far (None before the first save)."""
        saved = self._key_metric_checkpoint._saved if self._key_metric_checkpoint is not None else []
        return max((float(item.priority) for item in saved), default=None)


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
