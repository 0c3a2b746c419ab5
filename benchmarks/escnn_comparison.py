"""The same group-conv layers in escnn and in monai_equivariant, side by side, in one run.

Usage: python benchmarks/escnn_comparison.py [--quick] [--smoke] [--cases 2d 3d] [--repeats 10]
       [--cold-repeats 3] [--empty-disk-cache] [--device cpu|cuda] [--threads N]

Cases (3×3(×3) kernels, regular fields in and out, padding 1):
  2D: escnn ``R2Conv`` on ``rot2dOnR2(4)`` (C4) vs our ``GroupConv`` on p4 — 32→32 fields, batch 8, 64².
  3D: escnn ``R3Conv`` on ``octaOnR3()`` (O) vs our ``GroupConv`` on O — 8→8 fields, batch 2, 24³.

For each layer: trainable parameters; build time cold (first build in a fresh Python process, run in a
subprocess; escnn's on-disk joblib caches as found, or empty with ``--empty-disk-cache``) and warm (median of
repeated builds in a process that has built one already); the training step (forward + backward, input with
gradient) and the eval forward (no grad; both libraries cache the expanded filter in eval mode) as ratios
to the plain ``nn.ConvNd`` holding the same expanded filter bank (C·|G| → C·|G| channels). Timings are
interleaved round by round (plain, ours, escnn) and the median of the per-round ratios is reported.
escnn builds are timed with its default ``initialize=True`` (``generalized_he_init``) and with
``initialize=False``.

escnn and scikit-learn: when scikit-learn is importable, escnn's dense null-space solver calls
``sklearn.utils.extmath.randomized_svd`` with an ``np.matrix``, which current scikit-learn rejects
(``TypeError: np.matrix is not supported``); the octahedral basis hits it. This script then builds escnn's
bases with that call disabled (escnn falls back to ``scipy.linalg.svd``, its own code path without
scikit-learn) and says so in its output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Case:
    """One layer configuration: ``fields`` → ``fields`` regular fields of ``group``."""

    name: str
    group: str  # our group name
    dims: int
    fields: int
    size: int
    batch: int

    @property
    def label(self) -> str:
        escnn_group = "C4" if self.group == "p4" else self.group
        return (
            f"{escnn_group} / {self.group}, {self.fields}→{self.fields} fields, 3^{self.dims}, "
            f"batch {self.batch}, {self.size}^{self.dims}"
        )


FULL = (Case("2d", "p4", 2, 32, 64, 8), Case("3d", "O", 3, 8, 24, 2))
SMOKE = (Case("2d", "p4", 2, 4, 16, 2), Case("3d", "O", 3, 2, 8, 1))
IMPLS = ("ours", "escnn", "escnn_noinit")


def sklearn_blocks_escnn() -> bool:
    """Disable escnn's scikit-learn SVD if scikit-learn is importable; True if it was (so, disabled).

    escnn (1.0.11) passes an ``np.matrix`` to ``sklearn.utils.extmath.randomized_svd``, which scikit-learn
    rejects; without it escnn uses ``scipy.linalg.svd``.
    """
    import escnn.group._numerical as numerical

    if numerical.randomized_svd is None:
        return False
    numerical.randomized_svd = None
    return True


def build(case: Case, impl: str) -> nn.Module:
    """Build the layer of ``case`` with implementation ``impl`` (``ours``, ``escnn``, ``escnn_noinit``)."""
    if impl == "ours":
        from monai_equivariant.layers import GroupConv

        return GroupConv(case.fields, case.fields, case.group, kernel_size=3, spatial_dims=case.dims)
    from escnn import gspaces
    from escnn import nn as enn

    space = gspaces.rot2dOnR2(4) if case.dims == 2 else gspaces.octaOnR3()
    ftype = enn.FieldType(space, case.fields * [space.regular_repr])
    conv_cls = enn.R2Conv if case.dims == 2 else enn.R3Conv
    return conv_cls(ftype, ftype, 3, padding=1, initialize=impl == "escnn")


class EscnnOnTensors(nn.Module):
    """Wrap an escnn conv so it maps plain tensors (B, C·|G|, *s) -> (B, C·|G|, *s) like ours."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from escnn.nn import GeometricTensor

        return self.conv(GeometricTensor(x, self.conv.in_type)).tensor


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------- cold builds
def cold_child(case_name: str, impl: str, smoke: bool, empty_disk_cache: bool, threads: int) -> dict:
    """Runs in a fresh process: import time of the library and the first build of the layer (seconds)."""
    torch.set_num_threads(threads)
    case = {c.name: c for c in (SMOKE if smoke else FULL)}[case_name]
    start = time.perf_counter()
    if impl == "ours":
        import monai_equivariant.layers  # noqa: F401
    else:
        import escnn.nn  # noqa: F401
    import_s = time.perf_counter() - start
    sklearn_disabled = False
    if impl != "ours":
        sklearn_disabled = sklearn_blocks_escnn()
        if empty_disk_cache:
            _redirect_escnn_disk_caches(tempfile.mkdtemp(prefix="escnn_cache_"))
    start = time.perf_counter()
    build(case, impl)
    return dict(import_s=import_s, cold_s=time.perf_counter() - start, sklearn_disabled=sklearn_disabled)


def _redirect_escnn_disk_caches(location: str) -> None:
    """Point escnn's joblib caches (Clebsch-Gordan, irreps, octahedral irreps...) at an empty directory."""
    import importlib

    for name in (
        "escnn.group._clebsh_gordan",
        "escnn.group.irrep",
        "escnn.group.groups._numerical_thomson",
        "escnn.group.groups.octa",
        "escnn.group.groups.ico",
    ):
        importlib.import_module(name).cache.store_backend.location = location


def cold_build(case: Case, impl: str, smoke: bool, empty_disk_cache: bool, threads: int) -> dict:
    """Run :func:`cold_child` in a fresh interpreter (same environment) and return its dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--cold-child", case.name, impl, "--threads", str(threads)]
    if smoke:
        cmd.append("--smoke")
    if empty_disk_cache:
        cmd.append("--empty-disk-cache")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cold build of {impl} ({case.label}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- timings
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_layers(case: Case, modules: dict[str, nn.Module], device: str, repeats: int) -> dict[str, float]:
    """Median per-round ratio to ``modules['plain']`` of the train step and eval forward, plus plain ms."""
    n = 4 if case.group == "p4" else 24
    x = torch.randn((case.batch, case.fields * n) + (case.size,) * case.dims, device=device, requires_grad=True)

    def train_step(module: nn.Module):
        def run() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()
            _sync(device)

        return run

    def eval_forward(module: nn.Module):
        def run() -> None:
            with torch.no_grad():
                module(x)
            _sync(device)

        return run

    result: dict[str, float] = {}
    for mode in ("train", "eval"):
        fns = {}
        for name, module in modules.items():
            module.train(mode == "train")
            fns[name] = train_step(module) if mode == "train" else eval_forward(module)
            fns[name]()  # warm-up (fills the eval filter caches)
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():  # interleaved: noise on the shared machine hits all alike
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        result[f"plain_{mode}_ms"] = statistics.median(samples["plain"]) * 1e3
        for name, times in samples.items():
            if name != "plain":
                result[f"{name}_{mode}"] = statistics.median(t / p for t, p in zip(times, samples["plain"]))
    return result


def warm_build_ms(case: Case, impl: str, repeats: int) -> float:
    """Median ms of building the layer again in this process (after one build)."""
    build(case, impl)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build(case, impl)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run_case(case: Case, args: argparse.Namespace, log) -> list[dict]:
    """All figures of one case: one row per implementation."""
    torch.manual_seed(0)
    cold = {impl: [] for impl in IMPLS}
    for _ in range(args.cold_repeats):  # interleave the fresh processes too
        for impl in IMPLS:
            cold[impl].append(cold_build(case, impl, args.smoke, args.empty_disk_cache, args.threads))
    if args.cold_repeats:
        log(f"  cold builds done ({case.name})")
    warm = {impl: warm_build_ms(case, impl, args.warm_repeats) for impl in IMPLS}
    ours = build(case, "ours").to(args.device)
    escnn_conv = build(case, "escnn_noinit")  # same module as the default; skip the slow init
    with torch.no_grad():
        escnn_conv.weights.normal_()
    modules = {
        "plain": ours.to_plain().to(args.device),
        "ours": ours,
        "escnn": EscnnOnTensors(escnn_conv).to(args.device),
    }
    times = time_layers(case, modules, args.device, args.repeats)
    log(f"  timings done ({case.name})")
    rows = []
    for impl in IMPLS:
        timed = "escnn" if impl == "escnn_noinit" else impl
        rows.append(
            dict(
                case=case.label,
                impl=impl,
                params=count_parameters(ours if impl == "ours" else escnn_conv),
                import_s=statistics.median(c["import_s"] for c in cold[impl]) if cold[impl] else None,
                cold_ms=statistics.median(c["cold_s"] for c in cold[impl]) * 1e3 if cold[impl] else None,
                warm_ms=warm[impl],
                train=times[f"{timed}_train"] if impl != "escnn_noinit" else None,
                eval=times[f"{timed}_eval"] if impl != "escnn_noinit" else None,
                plain_train_ms=times["plain_train_ms"],
                plain_eval_ms=times["plain_eval_ms"],
                sklearn_disabled=any(c["sklearn_disabled"] for c in cold[impl]),
            )
        )
    return rows


IMPL_LABEL = {
    "ours": "monai_equivariant `GroupConv`",
    "escnn": "escnn (default `initialize=True`)",
    "escnn_noinit": "escnn (`initialize=False`)",
}


def markdown(rows: list[dict]) -> str:
    """The result table in Markdown."""
    lines = [
        "| layer | implementation | params | import s | cold build ms | warm build ms | train / plain | "
        "eval / plain | plain train ms | plain eval ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cold = "– | –" if r["cold_ms"] is None else f"{r['import_s']:.2f} | {r['cold_ms']:.1f}"
        if r["train"] is None:
            train = evaluation = "(same layer)"
        else:
            train, evaluation = f"{r['train']:.3f}", f"{r['eval']:.3f}"
        lines.append(
            f"| {r['case']} | {IMPL_LABEL[r['impl']]} | {r['params']:,} | {cold} | "
            f"{r['warm_ms']:.2f} | {train} | {evaluation} | {r['plain_train_ms']:.1f} | "
            f"{r['plain_eval_ms']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds (default 10)")
    parser.add_argument(
        "--cold-repeats", type=int, default=None, help="fresh processes per layer (default 3; 0: no cold builds)"
    )
    parser.add_argument("--warm-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="5 rounds, 1 cold build per layer")
    parser.add_argument("--smoke", action="store_true", help="tiny layers, 2 rounds (tests)")
    parser.add_argument("--cases", nargs="+", choices=("2d", "3d"), default=["2d", "3d"])
    parser.add_argument("--empty-disk-cache", action="store_true", help="escnn cold builds with empty joblib caches")
    parser.add_argument("--cold-child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick or args.smoke
    if args.repeats is None:
        args.repeats = 2 if args.smoke else 5 if quick else 10
    if args.cold_repeats is None:
        args.cold_repeats = 1 if quick else 3
    if args.smoke:
        args.warm_repeats = min(args.warm_repeats, 2)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.cold_child:
        result = cold_child(*args.cold_child, args.smoke, args.empty_disk_cache, args.threads)
        print(json.dumps(result))
        return []
    torch.set_num_threads(args.threads)
    import escnn

    sklearn_disabled = sklearn_blocks_escnn()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    rows = []
    for case in SMOKE if args.smoke else FULL:
        if case.name not in args.cases:
            continue
        rows.extend(run_case(case, args, log))
    print(
        f"device={args.device} torch={torch.__version__} escnn={escnn.__version__} threads={args.threads} "
        f"repeats={args.repeats} cold_repeats={args.cold_repeats}"
        f"{' escnn disk cache: empty' if args.empty_disk_cache else ''}\n"
    )
    print(markdown(rows))
    if sklearn_disabled or any(r["sklearn_disabled"] for r in rows):
        print(
            "\nscikit-learn is installed: escnn's randomized_svd path (np.matrix input, rejected by scikit-learn) "
            "was disabled for escnn's builds; escnn used scipy.linalg.svd instead."
        )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
