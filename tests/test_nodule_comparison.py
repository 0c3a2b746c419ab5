"""benchmarks/nodule_comparison.py runs end to end at a toy size and reports every model at equal parameters (one
plain row at equal conv FLOPs); its trained nets carry batch-norm statistics of their final weights (eval mode =
train mode on the training set)."""

from __future__ import annotations

import copy
import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("nodule_comparison", ROOT / "benchmarks" / "nodule_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_nodule_comparison_toy_run(tmp_path: Path, capsys) -> None:
    module = _load()
    module.main(["--sizes", "4", "--seeds", "0", "--steps", "2", "--batch", "4", "--patch", "8",
                 "--test-size", "6", "--out-dir", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "nodule_comparison.csv")))
    assert [r["model"] for r in rows] == list(module.MODELS)
    params = {r["model"]: int(r["parameters"]) for r in rows}
    assert abs(params["O-CNN"] - params["plain CNN"]) / params["O-CNN"] < 0.15  # equal parameters (matched)
    macs = {r["model"]: int(r["conv_macs_per_voxel"]) for r in rows}
    assert macs["plain CNN, equal FLOPs"] == macs["O-CNN"]  # fields·|G| channels: the same planar convs
    assert params["plain CNN, equal FLOPs"] > 10 * params["O-CNN"]  # about |G| = 24 times the parameters
    by_model = {r["model"]: r for r in rows}
    assert by_model["plain CNN + O ensemble"]["train_seconds"] == by_model["plain CNN"]["train_seconds"]
    assert (tmp_path / "nodule_comparison.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| O-CNN |" in out and "| plain CNN, equal FLOPs |" in out and "train s/run" in out


def test_table_from_merges_csvs_of_separate_runs(tmp_path: Path, capsys) -> None:
    """Two runs (different sizes) merged by ``--table-from``: one table with both sizes, the runs' own numbers."""
    module = _load()
    for n in (4, 6):
        module.main(["--sizes", str(n), "--seeds", "0", "--steps", "1", "--batch", "4", "--patch", "8",
                     "--test-size", "4", "--models", "O-CNN", "plain CNN, equal FLOPs",
                     "--out-dir", str(tmp_path / f"n{n}")])
    capsys.readouterr()
    csvs = [str(tmp_path / f"n{n}" / "nodule_comparison.csv") for n in (4, 6)]
    module.main(["--table-from", *csvs, "--out-dir", str(tmp_path / "merged")])
    out = capsys.readouterr().out
    rows = module.load_rows(csvs)
    assert out == module.table(rows, [4, 6]) + "\n"
    assert "AUC / acc. n=4" in out and "AUC / acc. n=6" in out
    assert isinstance(rows[0]["parameters"], int) and isinstance(rows[0]["auc"], float)
    assert (tmp_path / "merged" / "nodule_comparison.png").stat().st_size > 1000


@pytest.mark.parametrize("group", ["trivial", "O"])
def test_trained_net_has_batch_norm_statistics_of_its_final_weights(group: str) -> None:
    """Regression: with running averages left from a short run (momentum 0.1 over a few fast Adam steps) the
    eval-mode logits were shifted so far that nets with test AUC 0.97 put every patch in one class. After
    training, eval mode must reproduce train mode (batch statistics) on the training batch."""
    module = _load()
    samples = module.synthetic_nodules(8, size=8, seed=3)
    net, _ = module.train(group, (2, 2), samples, None, steps=4, batch=8, lr=3e-2, seed=0)
    images, _ = module._stack(samples)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == 0.1 for m in norms)  # momentum restored
    with torch.no_grad():
        eval_logits = net.eval()(images)
        train_logits = copy.deepcopy(net).train()(images)  # batch statistics of the same (whole) set
    torch.testing.assert_close(eval_logits, train_logits, atol=2e-3, rtol=1e-3)


def test_models_option_runs_only_the_named_rows(tmp_path: Path, capsys) -> None:
    module = _load()
    module.main(["--sizes", "4", "--seeds", "0", "--steps", "1", "--batch", "4", "--patch", "8", "--test-size", "4",
                 "--models", "O-CNN", "plain CNN", "--out-dir", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "nodule_comparison.csv")))
    assert [r["model"] for r in rows] == ["O-CNN", "plain CNN"]
    assert "augmentation" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--models", "O-CNN++", "--out-dir", str(tmp_path)])
