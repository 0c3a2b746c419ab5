"""The seed study command (benchmarks/polyp_study.py) end to end on tiny fake Kvasir-SEG and CVC-ClinicDB folders in
their real layouts: bundle trainings, test Dice, the equivariance similarity over 0°–90°, both plots (issue 23
item 2)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from test_benchmarks_smoke import load
from test_bundles import _write_cvc, _write_kvasir


@pytest.fixture(scope="module")
def study():
    return load("polyp_study")


def test_study_trains_and_evaluates_every_net_on_both_layouts_and_writes_both_plots(study, tmp_path):
    data = tmp_path / "data"
    _write_kvasir(data / "Kvasir-SEG", 12)
    _write_cvc(data / "CVC-ClinicDB", 10)
    out = tmp_path / "study"
    argv = ["--data-dir", str(data), "--nets", "plain", "p4", "--channels", "2", "4", "--image-size", "32",
            "--epochs", "1", "--val-interval", "1", "--set", '{"batch_size": 4}', "--out-dir", str(out)]
    paths = study.main(argv)
    for name in ("similarity", "dice"):
        assert paths[name].stat().st_size > 10_000, name
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["net"]) for r in rows] == [
        ("Kvasir-SEG", "plain"), ("Kvasir-SEG", "p4"), ("CVC-ClinicDB", "plain"), ("CVC-ClinicDB", "p4")]
    for r in rows:
        similarity = np.array([float(r[f"similarity_{a:g}"]) for a in study.STUDY_ANGLES])
        assert similarity.shape == (19,) and ((similarity >= 0) & (similarity <= 1)).all()
        assert similarity[0] == pytest.approx(1.0)  # no rotation: the same prediction
        assert 0 <= float(r["test_dice"]) <= 1 and int(r["parameters"]) > 0 and float(r["train_s"]) > 0
        if r["net"] == "p4":  # exact at 90°: the masks agree pixel for pixel
            assert similarity[-1] == pytest.approx(1.0, abs=1e-6)
    table = paths["table"].read_text()
    assert "| Kvasir-SEG | p4 U-Net |" in table and "| CVC-ClinicDB | U-Net |" in table
    for dataset in ("Kvasir-SEG", "CVC-ClinicDB"):  # the bundle's split and checkpoint in each run's root
        assert (out / dataset / "p4" / "models" / "model.pt").is_file()
        assert (out / dataset / "p4" / "data" / "datalist.json").is_file()
    again = study.main(argv)  # trained runs are reused, not trained again
    with open(again["csv"]) as f:
        assert all(float(r["train_s"]) == 0 for r in csv.DictReader(f))


def test_missing_datasets_are_skipped_or_named_with_where_to_get_them(study, tmp_path, capsys):
    _write_kvasir(tmp_path / "Kvasir-SEG", 4)
    args = study.parse_args(["--data-dir", str(tmp_path)])
    assert list(study.resolve_datasets(args)) == ["Kvasir-SEG"]
    assert "skipping CVC-ClinicDB" in capsys.readouterr().out
    named = study.parse_args(["--data-dir", str(tmp_path), "--cvc-dir", str(tmp_path / "nowhere")])
    with pytest.raises(FileNotFoundError, match=r"CVC-ClinicDB folder .*nowhere.* does not exist.*grand-challenge"):
        study.resolve_datasets(named)
    with pytest.raises(FileNotFoundError, match="no dataset found"):
        study.resolve_datasets(study.parse_args(["--data-dir", str(tmp_path / "empty")]))
    with pytest.raises(SystemExit):
        study.parse_args(["--epochs", "0"])
