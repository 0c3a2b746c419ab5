"""Atomic checkpoints that remember the best model: MONAI's CheckpointSaver writes files in place
(``DiskSaver(atomic=False)``), so a run killed while saving leaves a truncated file, and its best-metric state
is not part of any checkpoint, so a resumed run replaces the best model with its first, possibly worse, one.
This saver writes to a temporary file in the same folder and ``os.replace``-s it (atomic on POSIX), keeping
the usual ``rw-r--r--`` permissions (umask), and has a ``state_dict`` to put in the training checkpoint.
:class:`CheckedCheckpointLoader` names a checkpoint file that cannot be read and says what to do."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "CheckedCheckpointLoader",
    "checkpoint_read_error",
    "latest_checkpoint",
]


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver(atomic=True)`` with an optional fixed file name (never removed, only replaced) and
    umask permissions."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        if Path(dirname).expanduser().exists() and not Path(dirname).expanduser().is_dir():
            raise ValueError(f"checkpoint folder {str(dirname)!r} is a file, not a folder: give a folder path "
                             "(--ckpt_dir in the bundles; created if missing)")
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename
        self._pending_removals: list[str] = []

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        """Write ``checkpoint`` with ``func`` (``torch.save``) to ``.<name>.*.tmp`` beside ``path``, flush and
        fsync it, give it umask permissions and ``os.replace`` it onto ``path``. Any failure (a full disk fails in
        the write, the flush or the close) removes the temporary file and re-raises: ignite's own atomic save
        left its ``tmp*`` file behind when closing it failed."""
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.dirname)
        try:
            with os.fdopen(handle, "wb") as file:
                func(checkpoint, file, **self.kwargs)
                file.flush()
                os.fsync(file.fileno())
            umask = os.umask(0)  # mkstemp creates 0600 files; give the file the permissions of a normal write
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
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
    knows the best score so far and replaces ``model.pt`` only when a validation beats it, and the evaluator it is
    attached to gets back its ``state.best_metric`` / ``best_metric_epoch`` (what MONAI's "Got new best metric"
    comparison and ``StatsHandler`` use), so the log does not announce a worse score as a new best.

    An interval saver (``save_interval``) of a resumed run counts the epoch checkpoint it resumed from as its
    own: with ``n_saved=1`` that file is removed once the next one is written, like any older checkpoint.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = AtomicDiskSaver(self.save_dir, filename=fixed)
        self._engine: Engine | None = None
        self._pending_best: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        """MONAI's attach, plus: restore a loaded best metric on ``engine`` and, for an interval saver, adopt the
        checkpoint a resumed run starts from (at its first epoch / iteration, after ``CheckpointLoader`` ran)."""
        super().attach(engine)
        self._engine = engine
        self._restore_best_metric()
        if self._interval_checkpoint is not None:
            event = Events.EPOCH_STARTED if self.epoch_level else Events.ITERATION_STARTED
            engine.add_event_handler(event, self._adopt_start_checkpoint)

    def _interval_filename(self, step: int) -> str:
        """The name ignite's interval ``Checkpoint`` gives the file of ``step`` (``checkpoint_epoch=N.pt``)."""
        checkpoint = self._interval_checkpoint
        keys = list(checkpoint.to_save)
        return checkpoint._get_filename_pattern(None).format(
            filename_prefix=checkpoint.filename_prefix, ext=checkpoint.ext,
            name=keys[0] if len(keys) == 1 else "checkpoint", score_name=checkpoint.score_name,
            score=str(step), global_step=None,
        )

    def _adopt_start_checkpoint(self, engine: Engine) -> None:
        """Count the start checkpoint of a resumed run (``state`` restored at epoch/iteration N > 0) as saved."""
        engine.remove_event_handler(self._adopt_start_checkpoint, engine.last_event_name)
        step = (engine.state.epoch if self.epoch_level else engine.state.iteration) - 1
        checkpoint = self._interval_checkpoint
        filename = self._interval_filename(step)
        if step > 0 and (Path(self.save_dir) / filename).is_file() and all(i.filename != filename for i in checkpoint._saved):
            checkpoint._saved.append(Checkpoint.Item(step, filename))
            checkpoint._saved.sort(key=lambda item: item.priority)

    def state_dict(self) -> dict[str, Any]:
        """The key-metric state: ``{"_saved": [(score, file name), ...]}`` of the best checkpoints so far (empty
        list before the first validation, and without ``save_key_metric``), and ``best_metric`` /
        ``best_metric_epoch`` of the attached engine when it has them (MONAI workflows do). Plain numbers and
        strings, so it loads with ``torch.load(weights_only=True)``; :meth:`load_state_dict` restores it."""
        saved = [] if self._key_metric_checkpoint is None else self._key_metric_checkpoint._saved
        state: dict[str, Any] = {"_saved": [(float(item.priority), str(item.filename)) for item in saved]}
        engine_state = getattr(self._engine, "state", None)
        if hasattr(engine_state, "best_metric") and hasattr(engine_state, "best_metric_epoch"):
            state["best_metric"] = float(engine_state.best_metric)
            state["best_metric_epoch"] = int(engine_state.best_metric_epoch)
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the state written by :meth:`state_dict`: the key-metric list (with ``save_key_metric``) and the
        attached engine's best metric (now, or when it is attached). A checkpoint written before the best metric was
        saved restores the list only."""
        if self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.load_state_dict({"_saved": [tuple(item) for item in state_dict["_saved"]]})
        self._pending_best = {k: state_dict[k] for k in ("best_metric", "best_metric_epoch") if k in state_dict}
        self._restore_best_metric()

    def _restore_best_metric(self) -> None:
        engine_state = getattr(self._engine, "state", None)
        if self._pending_best and hasattr(engine_state, "best_metric"):
            engine_state.best_metric = self._pending_best["best_metric"]
            engine_state.best_metric_epoch = self._pending_best["best_metric_epoch"]
            self._pending_best = {}

    @property
    def best_score(self) -> float | None:
        """The best key-metric score saved so far (None before the first save)."""
        saved = self._key_metric_checkpoint._saved if self._key_metric_checkpoint is not None else []
        return max((float(item.priority) for item in saved), default=None)


def _epoch_checkpoints(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> list[str]:
    """Paths of the ``{prefix}_epoch=N.pt`` files in ``ckpt_dir``, newest first (last written, then highest N)."""
    folder = Path(ckpt_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"ckpt_dir {str(folder)!r} is a file, not a folder: set --ckpt_dir to the checkpoint folder")
    found = []
    for path in folder.glob(f"{prefix}_epoch=*.pt"):
        step = path.stem.rsplit("=", 1)[-1]
        if step.isdigit():
            found.append((path.stat().st_mtime_ns, int(step), str(path)))
    return [path for *_, path in sorted(found, reverse=True)]


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> str:
    """Path of the newest ``{prefix}_epoch=N.pt`` in ``ckpt_dir`` (what the train configs save every epoch).

    Newest = last written (then highest N), so files left over from an older, longer run are not picked.

    Raises:
        ValueError naming the folder when it holds no such checkpoint (nothing to resume from) or is a file.
    """
    found = _epoch_checkpoints(ckpt_dir, prefix)
    if not found:
        raise ValueError(f"no '{prefix}_epoch=N.pt' checkpoint in {str(ckpt_dir)!r} to resume from; train without resume first")
    return found[0]


_READ_ERRORS = (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError)
"""What ``torch.load`` raises on a truncated or corrupt file (a zip without its central directory, a torn pickle)."""


def checkpoint_read_error(path: str | os.PathLike) -> str | None:
    """Why ``torch.load(path, weights_only=True)`` fails (``"RuntimeError: ..."``), or None when the file loads."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'end of file'}"
    return None


def _unreadable_message(path: str, problem: str) -> str:
    """What a user reads when ``path`` cannot be loaded: the file, its size, why, and what to do."""
    file = Path(path)
    size = file.stat().st_size if file.is_file() else 0
    head = f"cannot read checkpoint {path!r} ({size} bytes; {problem}): the file is truncated or corrupt. "
    step = file.stem.rsplit("=", 1)[-1]
    if "_epoch=" not in file.name or not step.isdigit():
        return head + (
            "Train again to write it (train.json; --resume True continues from the newest epoch checkpoint in its "
            "folder), or restore the file from a copy"
        )
    prefix = file.stem.rsplit("_epoch=", 1)[0]
    others = [p for p in _epoch_checkpoints(file.parent, prefix) if Path(p).name != file.name]
    previous = next((p for p in others if checkpoint_read_error(p) is None), None)
    if previous is None:
        return head + "No other epoch checkpoint in its folder loads: train again without --resume (or restore the file)"
    return head + (
        f"The previous checkpoint {previous!r} loads: move the bad file away (e.g. `mv '{path}' '{path}.bad'`) and "
        "run with --resume True again to continue from it, or train again without --resume"
    )


class CheckedCheckpointLoader(CheckpointLoader):
    """:class:`monai.handlers.CheckpointLoader` (same arguments) that names a file it cannot read and says what to
    do. MONAI's loader lets ``torch.load``'s error through, which names no file (``PytorchStreamReader failed ...``,
    ``OSError: [Errno 22]``).

    Decided: a resume from an unreadable ``checkpoint_epoch=N.pt`` is refused (not continued from an older
    checkpoint automatically, which may come from another run and would lose epochs silently); the message names
    the newest older checkpoint that loads, if there is one, and how to resume from it.

    Raises:
        ValueError naming the file, its size and the read error (other errors, e.g. a size mismatch when the file
        loads, pass through unchanged).
    """

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except _READ_ERRORS as error:
            problem = checkpoint_read_error(self.load_path) if Path(self.load_path).is_file() else None
            if problem is None:
                raise
            raise ValueError(_unreadable_message(str(self.load_path), problem)) from error
