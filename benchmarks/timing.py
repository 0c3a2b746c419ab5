"""Interleaved timing: candidates timed round by round, so load on a shared machine hits them all alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_times(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call of each candidate over ``repeats`` rounds (every candidate once per round).

    Each candidate first runs ``warmup`` times untimed. Rounds alternate the order (forwards, then backwards), so
    no candidate always runs right after the same other one (what one leaves in caches and the allocator changes
    the next one's time). Take medians of the lists, or medians of per-round ratios
    (``samples["ours"][i] / samples["plain"][i]``), which cancel load that changes between rounds."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            fn = fns[name]
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples
