"""Group conv vs a plain conv holding the same expanded filter bank (and vs escnn's R2Conv), in one run.

Usage: python benchmarks/layer_overhead.py [--device cpu|cuda] [--repeats 20]

Prints a Markdown table of ratios (median over rounds that time each candidate back to back) (ours / plain; escnn / plain) for forward+backward in training and for
forward in eval, and the construction time of a 3×3 layer for every group (cold: tables built from
scratch; warm: tables cached).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from monai_equivariant.groups import catalogue
from monai_equivariant.layers import GroupConv


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def compare(group: str, fields: int, size: int, batch: int, device: str, repeats: int) -> dict[str, float]:
    """Times of our layer, the plain conv with its bank, and (2D) escnn's R2Conv, train and eval."""
    ours = GroupConv(fields, fields, group).to(device)
    plain = ours.to_plain().to(device)
    n = ours.group.order
    x = torch.randn((batch, fields * n) + (size,) * ours.spatial_dims, device=device, requires_grad=True)

    def step(module):
        def run():
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()
            _sync(device)
        return run

    def infer(module):
        def run():
            with torch.no_grad():
                module(x)
            _sync(device)
        return run

    modules = {"ours": ours, "plain": plain}
    if ours.spatial_dims == 2 and group == "p4":
        from escnn import gspaces, nn as enn

        space = gspaces.rot2dOnR2(4)
        ftype = enn.FieldType(space, fields * [space.regular_repr])
        e_conv = enn.R2Conv(ftype, ftype, 3, padding=1).to(device)
        e_in = enn.GeometricTensor(x, ftype)

        class _Escnn(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = e_conv

            def forward(self, t):
                return self.conv(e_in).tensor

        modules["escnn"] = _Escnn()
    result = {}
    for mode in ("train", "eval"):
        fns = {}
        for name, module in modules.items():
            module.train(mode == "train")
            fns[name] = step(module) if mode == "train" else infer(module)
            fns[name]()  # warm-up (fills our eval cache, escnn's eval filter)
        # Interleave the candidates round by round so machine noise hits all of them alike.
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                samples[name].append(Timer(stmt="fn()", globals={"fn": fn}).timeit(1).median)
        for name, times in samples.items():
            result[f"{name}_{mode}"] = statistics.median(times)
            if name != "plain":
                ratios = [t / p for t, p in zip(times, samples["plain"])]
                result[f"{name}_{mode}_ratio"] = statistics.median(ratios)
    return result


def construction_ms(name: str) -> tuple[float, float]:
    """(cold, warm) milliseconds to build a 3×3 GroupConv(8, 8) of the named group (cold: a new Group, whose
    kernel actions are built with it)."""
    catalogue.get_group.cache_clear()
    start = time.perf_counter()
    GroupConv(8, 8, name)
    cold = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    GroupConv(8, 8, name)
    warm = (time.perf_counter() - start) * 1e3
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}\n")
    cases = [("p4", 32, 64, 8), ("O", 8, 24, 2)]
    print("| layer | train: ours/plain | eval: ours/plain | train: escnn/plain | eval: escnn/plain | plain train ms |")
    print("|---|---|---|---|---|---|")
    for group, fields, size, batch in cases:
        t = compare(group, fields, size, batch, args.device, args.repeats)
        dims = 2 if group == "p4" else 3
        label = f"{group} {fields}→{fields} fields, 3^{dims}, batch {batch}, {size}^{dims}"
        esc_train = f"{t['escnn_train_ratio']:.2f}" if "escnn_train" in t else "–"
        esc_eval = f"{t['escnn_eval_ratio']:.2f}" if "escnn_eval" in t else "–"
        print(
            f"| {label} | {t['ours_train_ratio']:.3f} | {t['ours_eval_ratio']:.3f} | "
            f"{esc_train} | {esc_eval} | {t['plain_train'] * 1e3:.1f} |"
        )
    print("\n| group | |G| | construction cold ms | warm ms |")
    print("|---|---|---|---|")
    for name in ("trivial", "p4", "p4m", "D4", "D4h", "O", "Oh", "se2_12"):
        cold, warm = construction_ms(name)
        order = catalogue.get_group(name).order
        print(f"| {name} | {order} | {cold:.1f} | {warm:.2f} |")


if __name__ == "__main__":
    main()
