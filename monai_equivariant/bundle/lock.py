"""One run at a time per bundle root: a ``filelock`` lock file that names its holder.

Two trainings writing into one ``bundle_root`` corrupt each other (a half-written synthetic image read by the
other run; a checkpoint removed under it). Every bundle workflow takes ``<bundle_root>/.bundle.lock`` first
(``filelock.FileLock``: an exclusive ``flock`` on Unix, ``LockFileEx`` on Windows; the file records pid, host,
start time and command) and gives it back in ``finalize``. The operating system drops the lock when its process
ends, however it ends: a lock file left by a killed run is simply taken over. A second run is refused with a
message naming the holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["BundleRootLock", "lock_bundle_root", "unlock_bundle_root"]

LOCK_NAME = ".bundle.lock"
_HELD: dict[str, FileLock] = {}  # lock path -> the lock this process holds


def _write_holder(fd: int) -> None:
    """``on_acquired`` of the lock: replace the file's content with this process's record (the lock stays held)."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)[:500]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


class BundleRootLock:
    """Exclusive lock on the outputs of ``bundle_root``. Re-entrant within one process (a notebook re-running a
    workflow after an error takes it again)."""

    def __init__(self, bundle_root: str | os.PathLike) -> None:
        self.path = Path(bundle_root).absolute() / LOCK_NAME

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return str(self.path) in _HELD

    def holder(self) -> dict:
        """What the lock file says about its (last) holder: pid, host, started, command ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Take the lock, or raise RuntimeError naming the running holder and how to proceed."""
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # process-wide (not per thread), the file kept on release (its content names the last holder), native only
        lock = FileLock(self.path, thread_local=False, preserve_lock_file=True, on_acquired=_write_holder)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            holder = self.holder()
            raise RuntimeError(
                f"another run is using the bundle root {str(self.path.parent)!r} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}: {holder.get('command', '?')!r}); "
                "two runs in one bundle root overwrite each other's data and checkpoints. Wait for it to finish or "
                "give this run another --bundle_root"
            ) from None
        _HELD[str(self.path)] = lock

    def release(self) -> None:
        """Give the lock back if this process holds it (no-op otherwise). The file stays (removing it would let a
        waiting process lock an unlinked file); its content names the last holder."""
        lock = _HELD.pop(str(self.path), None)
        if lock is not None:
            lock.release(force=True)


def lock_bundle_root(bundle_root: str | os.PathLike) -> str:
    """Take the run lock of ``bundle_root`` (first step of every bundle workflow); returns the lock file's path."""
    lock = BundleRootLock(bundle_root)
    lock.acquire()
    return str(lock.path)


def unlock_bundle_root(bundle_root: str | os.PathLike) -> None:
    """Give back the run lock of ``bundle_root`` taken by this process (the workflows' ``finalize`` step)."""
    BundleRootLock(bundle_root).release()
