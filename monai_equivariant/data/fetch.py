"""Downloads that never hang: MONAI's ``download_url`` with a socket timeout and retries (shared by the loaders
that fetch their data: Kvasir-SEG, NoduleMNIST3D)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DOWNLOAD_TIMEOUT_S", "fetch_url"]

DOWNLOAD_TIMEOUT_S = 60.0
"""Seconds a download may wait for the server at any one step (connect, each read) before it is retried."""


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Every new socket waits at most ``seconds`` per operation (MONAI's ``download_url`` sets no timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_url(
    url: str,
    filepath: str | os.PathLike,
    hash_val: str | None = None,
    hash_type: str = "md5",
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    retries: int = 3,
) -> None:
    """``monai.apps.download_url`` with a timeout and retries: a server that accepts and never answers (or a
    network that drops) costs at most ``retries`` waits of ``timeout`` seconds per step, then a ``ConnectionError``
    naming the URL and what to do offline. A hash mismatch (``HashCheckError``) is not retried.
    """
    from monai.apps.utils import HashCheckError, download_url

    if timeout <= 0 or retries < 1:
        raise ValueError(f"timeout must be > 0 s and retries >= 1, got timeout={timeout}, retries={retries}")
    error: Exception | None = None
    for attempt in range(retries):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0))
        try:
            with _socket_timeout(timeout):
                download_url(url, filepath=filepath, hash_val=hash_val, hash_type=hash_type, progress=progress)
            return
        except HashCheckError:
            raise
        except (OSError, RuntimeError) as caught:  # URLError, socket.timeout, ConnectionError are OSErrors
            error = caught
    raise ConnectionError(
        f"could not download {url} ({retries} attempts, {timeout:g} s timeout each): {error}. Offline or behind a "
        f"proxy? Download it by hand on a machine with access and put it at {Path(filepath)} (data on disk is "
        "used without any network)"
    ) from error
