"""Build time of SteerableUNet: cold (fresh process) and warm (second build in the same process).

Usage: python benchmarks/steerable_build.py [--threads 2] [--empty-disk-cache] [--escnn-init]

Each configuration runs in a fresh Python process (so escnn's in-memory caches are empty) and reports
  import_s   time to import escnn (paid once per process, by any escnn user),
  cold_s     first SteerableUNet(...) in the process,
  warm_s     a second identical SteerableUNet(...) in the same process,
  params     trainable parameters (in=3, out=1).
escnn also memoises Clebsch-Gordan / irrep solutions on disk (joblib, under escnn/group/_cache).
``--empty-disk-cache`` points those caches at a fresh temporary directory: the very first build on a new
machine. ``--escnn-init`` also times escnn's default ``generalized_he_init`` on every conv of the built net (what
``R2Conv(initialize=True)`` would add; SteerableUNet builds with ``initialize=False`` and its own He init).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    "C8 (default)": dict(num_rotations=8),
    "C4": dict(num_rotations=4),
    "C12": dict(num_rotations=12),
    "D8": dict(num_rotations=8, reflections=True),
    "SO(2), L=3": dict(num_rotations=-1),
    "O(2), L=3": dict(num_rotations=-1, reflections=True),
}


def child(kwargs: dict, threads: int, empty_disk_cache: bool, escnn_init: bool) -> dict:
    """Runs in a fresh process; returns the timings as a dict."""
    import torch

    torch.set_num_threads(threads)
    import monai_equivariant  # noqa: F401  (not timed: escnn is not imported by it)

    start = time.perf_counter()
    import escnn.nn  # noqa: F401

    import_s = time.perf_counter() - start
    if empty_disk_cache:
        _redirect_escnn_disk_caches(tempfile.mkdtemp(prefix="escnn_cache_"))
    from monai_equivariant.networks.nets import SteerableUNet

    start = time.perf_counter()
    net = SteerableUNet(2, 3, 1, **kwargs)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    SteerableUNet(2, 3, 1, **kwargs)
    warm_s = time.perf_counter() - start
    result = dict(import_s=import_s, cold_s=cold_s, warm_s=warm_s, params=sum(p.numel() for p in net.parameters()))
    if escnn_init:
        from escnn.nn.init import generalized_he_init

        from monai_equivariant.layers.steerable import SteerableConv

        start = time.perf_counter()
        for conv in net.modules():
            if isinstance(conv, SteerableConv):
                generalized_he_init(conv.weights.data, conv.basisexpansion)
        result["escnn_he_init_s"] = time.perf_counter() - start
    return result


def _redirect_escnn_disk_caches(location: str) -> None:
    """Point every joblib cache escnn created at import to ``location`` (an empty directory)."""
    import importlib

    for name in ("escnn.group._clebsh_gordan", "escnn.group.irrep", "escnn.group.groups._numerical_thomson",
                 "escnn.group.groups.octa", "escnn.group.groups.ico"):
        module = importlib.import_module(name)
        module.cache.store_backend.location = location


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--empty-disk-cache", action="store_true")
    parser.add_argument("--escnn-init", action="store_true")
    parser.add_argument("--only", default=None, help="run one configuration (a key of CONFIGS)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child), args.threads, args.empty_disk_cache, args.escnn_init)))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(args.threads))
    extra = ["--threads", str(args.threads)] + (["--empty-disk-cache"] if args.empty_disk_cache else []) + (
        ["--escnn-init"] if args.escnn_init else [])
    header = "| net | params | import escnn s | cold build s | warm build s |" + (
        " escnn He init s |" if args.escnn_init else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, kwargs in CONFIGS.items():
        if args.only and name != args.only:
            continue
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(kwargs)] + extra, env=env,
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        row = f"| {name} | {r['params']:,} | {r['import_s']:.2f} | {r['cold_s']:.2f} | {r['warm_s']:.2f} |"
        if args.escnn_init:
            row += f" {r['escnn_he_init_s']:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
