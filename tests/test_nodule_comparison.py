"""benchmarks/nodule_comparison.py runs end to end at a toy size and reports every model at equal parameters."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_nodule_comparison_toy_run(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("nodule_comparison", ROOT / "benchmarks" / "nodule_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--sizes", "4", "--seeds", "0", "--steps", "2", "--batch", "4", "--patch", "8",
                 "--test-size", "6", "--out-dir", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "nodule_comparison.csv")))
    assert [r["model"] for r in rows] == list(module.MODELS)
    params = {r["model"]: int(r["parameters"]) for r in rows}
    assert abs(params["O-CNN"] - params["plain CNN"]) / params["O-CNN"] < 0.15  # equal parameters (matched)
    by_model = {r["model"]: r for r in rows}
    assert by_model["plain CNN + O ensemble"]["train_seconds"] == by_model["plain CNN"]["train_seconds"]
    assert (tmp_path / "nodule_comparison.png").stat().st_size > 1000
    assert "| O-CNN |" in capsys.readouterr().out
