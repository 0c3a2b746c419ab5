"""The benchmark scripts run end to end on CPU at tiny sizes (their figures are checked for consistency, not
speed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread: on a shared, loaded machine two threads make these tiny runs many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gpu_throughput_runs_tiny_on_cpu(capsys, tmp_path):
    out = tmp_path / "gpu.md"
    rows = load("gpu_throughput").main(["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| P4UNet (p4) | 32^2 |" in printed and "| P4UNet separable (p4) | 32^2 |" in printed
    assert "| GroupCNN separable (O) | 8^3 |" in printed and "peak train MiB" in printed
    written = out.read_text()
    assert written.startswith("Command: `python benchmarks/gpu_throughput.py --tiny") and "device=cpu" in written
    assert "| P4UNet separable (p4) | 32^2 |" in written
    by_net = {r["net"]: r for r in rows}
    assert len(by_net) == 8
    assert all(r["train"] > 0 and r["infer"] > 0 for r in rows)
    assert all(r["peak_mib"] is None and r["activation_mib"] > 0 for r in rows)  # no CUDA peak on CPU
    labels = ("GroupCNN (O)", "plain GroupCNN, equal params", "plain GroupCNN, equal FLOPs")
    group, params, flops = (by_net[k] for k in labels)
    assert params["params"] == pytest.approx(group["params"], rel=0.1)
    assert flops["params"] > 10 * group["params"]  # equal FLOPs = |G|× the channels
    assert group["train_vs_group"] == 1.0
    for full, separable in (("P4UNet (p4)", "P4UNet separable (p4)"), ("GroupCNN (O)", "GroupCNN separable (O)")):
        assert by_net[separable]["params"] < by_net[full]["params"]  # same fields, factorised convs


def test_cost_table_smoke_rows_match_by_params_and_by_flops(capsys):
    rows = load("cost_table").main(["--smoke", "--threads", "1", "--only", "P4UNet", "GroupCNN (O)"])
    out = capsys.readouterr().out
    assert "| ↳ plain, equal FLOPs | trivial |" in out
    assert len(rows) == 6
    for net, by_params, by_flops in (rows[0:3], rows[3:6]):
        assert by_params["params"] == pytest.approx(net["params"], rel=0.15)  # tiny widths round coarsely
        assert by_flops["gflops"] == pytest.approx(net["gflops"], rel=0.03)
        assert by_params["gflops"] < net["gflops"] / 2
        assert by_flops["act_mib"] == pytest.approx(net["act_mib"], rel=0.5)  # same widths
        assert all(r["train_ms"] > 0 and r["act_mib"] > 0 for r in (net, by_params, by_flops))


def test_escnn_comparison_smoke_2d(capsys):
    pytest.importorskip("escnn")
    bench = load("escnn_comparison")
    # cold builds (fresh interpreters importing escnn) are left out: they take most of a minute on a loaded machine
    rows = bench.main(["--smoke", "--threads", "1", "--cases", "2d", "--cold-repeats", "0"])
    out = capsys.readouterr().out
    assert "monai_equivariant `GroupConv`" in out and "escnn (default `initialize=True`)" in out
    ours, escnn, escnn_noinit = rows
    assert ours["params"] == 4 * 4 * 4 * 9 + 4  # C_out·C_in·|G|·k² + bias
    assert escnn["params"] == escnn_noinit["params"] > 0
    assert all(r["warm_ms"] > 0 and r["cold_ms"] is None for r in rows)
    assert ours["train"] > 0 and escnn["train"] > 0 and escnn_noinit["train"] is None
    cold = bench.cold_child("2d", "ours", smoke=True, empty_disk_cache=False, threads=1)  # what a subprocess runs
    assert cold["cold_s"] > 0 and not cold["sklearn_disabled"]


def test_network_overhead_quick(capsys):
    """benchmarks/network_overhead.py --quick: every case runs and prints a positive ratio (compile skipped
    here: it is tested in tests/test_compile.py)."""
    rows = load("network_overhead").main(["--quick", "--no-compile", "--threads", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "| train b2 16² |" in out and "| channels_last_3d train b2 8³ |" in out
    assert [r["case"] for r in rows] == [
        "train b2 16²", "train b2 32²", "eval b2 16²", "eval b2 16², frozen_filters", "channels_last train b2 16²",
        "3D O CNN train b2 8³", "channels_last_3d train b2 8³",
    ]
    assert all(r["ours_ms"] > 0 and r["plain_ms"] > 0 and r["ratio"] > 0 for r in rows)


def test_network_overhead_routes_quick(capsys):
    """--routes --quick: every group conv of the (small) P4UNet is timed on both routes, with auto's choice."""
    rows = load("network_overhead").main(["--routes", "--quick", "--threads", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "| case | layer (fields) | input | filter route ms | input route ms | auto takes |" in out
    assert len(rows) == 10 and {r["auto"] for r in rows} <= {"filter", "input"}  # the 10 convs of 3 levels
    assert all(r["filter_ms"] > 0 and r["input_ms"] > 0 for r in rows)


def test_network_overhead_breakdown_quick(capsys):
    """--breakdown --quick: every candidate (ours, ours with frozen banks, plain, expansion alone; eval and the
    cache check) is timed and printed."""
    result = load("network_overhead").main(["--breakdown", "--quick", "--threads", "1", "--repeats", "1"])[0]
    out = capsys.readouterr().out
    assert "| train ours, banks frozen |" in out and "| cache check alone |" in out
    assert set(result) == {"train ours", "train ours, banks frozen", "train plain", "expansion fwd+bwd alone",
                           "eval ours", "eval plain", "cache check alone"}
    assert all(ms > 0 for ms in result.values())


def test_interleaved_times_runs_every_candidate_once_per_round_in_alternating_order():
    interleaved_times = load("timing").interleaved_times

    calls: list[str] = []
    samples = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3} and all(t >= 0 for v in samples.values() for t in v)
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        interleaved_times({"a": lambda: None}, repeats=0)
