"""benchmarks/pareto.py (issue 22 item 2): the nets of each family, the frontier and its reading, and the whole
command at tiny settings (CSV, figure and table per task, the reading computed from the CSV)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_equivariant.layers import SeparableGroupConv
from monai_equivariant.networks.nets import count_parameters
from test_benchmarks_smoke import load


@pytest.fixture(scope="module")
def pareto():
    return load("pareto")


def test_families_build_the_plain_the_full_and_the_separable_net(pareto):
    task = pareto.QUICK["polyp"]
    plain, full, separable = (pareto.build(task, f, 2) for f in ("plain_aug", "group", "separable"))
    assert plain.group.order == 1 and full.group.order == separable.group.order == 4
    assert full.channels == separable.channels == task.channels(2) == (2, 4)
    assert not any(isinstance(m, SeparableGroupConv) for m in full.modules())
    assert any(isinstance(m, SeparableGroupConv) for m in separable.modules())
    assert count_parameters(separable) < count_parameters(full)
    nodule = pareto.build(pareto.QUICK["nodule"], "separable", 1)
    assert nodule.group.order == 24 and any(isinstance(m, SeparableGroupConv) for m in nodule.modules())
    with pytest.raises(ValueError, match="family must be one of"):
        pareto.build(task, "steerable", 2)


def test_frontier_keeps_the_points_no_cheaper_point_beats(pareto):
    front = pareto.frontier([4.0, 1.0, 2.0, 3.0], [0.7, 0.5, 0.4, 0.8])
    assert front == [(1.0, 0.5), (3.0, 0.8)]  # 2 s scores below 1 s; 4 s below 3 s
    at = pareto.frontier_at(front, np.array([1.0, np.sqrt(3.0), 3.0, 4.0]))
    assert at == pytest.approx([0.5, 0.65, 0.8, 0.8])  # linear in log-time, flat after the best point


def _points(pareto, seconds, scores):
    return pareto.Points(list(range(len(seconds))), list(seconds), list(scores))


def test_reading_follows_the_data(pareto):
    plain = _points(pareto, [1, 2, 4, 8], [0.5, 0.6, 0.7, 0.8])
    above = {"plain_aug": plain, "group": _points(pareto, [2, 4, 8], [0.7, 0.8, 0.9]),
             "separable": _points(pareto, [1, 2, 4], [0.6, 0.65, 0.7])}
    text = pareto.reading(above, "Dice")
    assert "score at least the augmented plain net's Dice? yes over 1–8 s" in text  # full and separable pooled
    assert "full: yes over 2–8 s" in text and "separable: yes over 1–4 s" in text
    below = {**above, "group": _points(pareto, [2, 4, 8], [0.3, 0.4, 0.5]),
             "separable": _points(pareto, [1, 2, 4], [0.1, 0.2, 0.3])}
    assert "Dice? no over 1–8 s" in pareto.reading(below, "Dice")
    crossing = {"plain_aug": plain, "group": _points(pareto, [1, 8], [0.4, 0.9])}
    result = pareto.compare(plain, [crossing["group"]])
    assert 0 < result["share"] < 1 and result["min"] < 0 < result["max"]
    assert f"partly ({100 * result['share']:.0f} % of the range)" in pareto.reading(crossing, "AUC")
    apart = {"plain_aug": plain, "group": _points(pareto, [20, 40], [0.9, 0.95])}
    assert pareto.compare(plain, [apart["group"]]) is None
    assert "no train time in common with the plain family" in pareto.reading(apart, "AUC")


def test_quick_run_writes_csv_figure_and_table_per_task(pareto, tmp_path):
    torch.set_num_threads(1)
    written = pareto.main(["--quick", "--out-dir", str(tmp_path)])
    assert set(written) == {"polyp", "nuclei", "nodule"}
    for name, paths in written.items():
        assert paths["csv"].name == f"pareto_{name}.csv" and paths["figure"].stat().st_size > 10_000
        rows = pareto.read_csv(paths["csv"])
        task = pareto.QUICK[name]
        expected = {(f, w) for f, widths in task.widths.items() for w in widths}
        assert {(r["family"], int(r["width"])) for r in rows} == expected and len(rows) == len(expected)
        assert all(float(r["train_s"]) >= 0 and float(r["train_wall_s"]) > 0 and int(r["params"]) > 0 for r in rows)
        assert all(0 <= float(r["score_worst"]) <= float(r["score"]) <= 1 for r in rows)
        table = paths["table"].read_text()
        for label in pareto.FAMILIES.values():
            assert f"| {label} |" in table
        # the reading in the table is the one computed from the CSV's points
        assert pareto.reading(pareto.family_points(rows), task.score) in table
