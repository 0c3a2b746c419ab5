"""One measuring core (issue 20 item 1): EquivarianceHelper under compute_equivariance and EquivarianceMetric, masks
cached by shape, one disk mask, a reporting handler and a separate saver, the bundle report restoring the mode."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ignite.engine import Engine
from monai.inferers import SimpleInferer

import monai_equivariant.metrics.equivariance_helper as core
from monai_equivariant.bundle import equivariance_errors
from monai_equivariant.groups import rotate
from monai_equivariant.handlers import EquivarianceEvents, EquivarianceHandler, EquivarianceReport, EquivarianceSaver
from monai_equivariant.metrics import EquivarianceHelper, EquivarianceMetric, compute_equivariance, valid_region
from monai_equivariant.utils import disk_mask
from monai_equivariant.utils.equivariance import eval_mode_restored

ANGLES = [0.0, 45.0, 90.0]
PACKAGE = Path(__file__).resolve().parents[1] / "monai_equivariant"


def ramp(x: torch.Tensor) -> torch.Tensor:
    """Not equivariant: the first channel plus a ramp along the last axis."""
    return x[:, :1] - 0.5 + torch.linspace(-1, 1, x.shape[-1])


def test_twins_share_one_helper():
    metric = EquivarianceMetric(ramp, angles=ANGLES, margin=1)
    assert isinstance(metric.helper, EquivarianceHelper) and metric.helper.margin == 1
    helper = metric.helper
    x = torch.rand(3, 1, 12, 12)
    metric(x[:2])
    metric(x[2:])
    assert metric.helper is helper  # built once, not per batch
    direct = EquivarianceHelper(angles=ANGLES, margin=1)(ramp, x)
    function = compute_equivariance(ramp, x, angles=ANGLES, margin=1)
    for name, values in metric.aggregate("none").items():
        assert torch.equal(values, direct[name]) and torch.equal(values, function[name])
    with pytest.raises(TypeError):
        compute_equivariance(ramp, x, ANGLES, None, "segmentation")  # options after group are keyword-only


def test_helper_validates_once_at_construction():
    with pytest.raises(ValueError, match="valid_region"):
        EquivarianceHelper(valid_region="box")
    with pytest.raises(ValueError, match="either angles"):
        EquivarianceHelper(angles=[0], group="p4")
    with pytest.raises(TypeError):
        EquivarianceHandler(angels=[0, 90])  # a misspelt option is refused when the handler is made


def test_masks_cached_by_shape_and_device(monkeypatch):
    calls = []
    original = core.valid_region

    def counting(*args, **kwargs):
        calls.append(tuple(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(core, "valid_region", counting)
    metric = EquivarianceMetric(ramp, angles=ANGLES)
    for _ in range(3):
        metric(torch.rand(2, 1, 12, 12))
    assert calls == [(12, 12)] * len(ANGLES)  # one mask per angle, made once for three batches
    masks = metric.helper.masks((12, 12))
    assert masks is metric.helper.masks([12, 12], "cpu") and len(masks) == len(ANGLES)
    metric(torch.rand(2, 1, 16, 16))
    assert calls[len(ANGLES):] == [(16, 16)] * len(ANGLES)  # a new shape: its own masks
    assert metric.helper.masks((16, 16))[1].shape == (1, 1, 16, 16)
    for angle, mask in zip(ANGLES, masks):
        assert torch.equal(mask, original(lambda t, a=angle: rotate(t, a), (12, 12)))
    for size in range(20, 20 + core.MASK_CACHE_SIZE + 2):  # bounded
        metric.helper.masks((size, size))
    assert len(metric.helper._masks) == core.MASK_CACHE_SIZE


def test_one_disk_mask():
    assert torch.equal(disk_mask(6), core.disk_mask((6, 6)))
    ball = core.disk_mask((5, 6, 7), radius=2.0)
    assert ball.shape == (5, 6, 7) and ball[2, 2, 3] == 1 and ball[0, 0, 0] == 0
    region = valid_region(lambda t: t, (10, 14), region="disk")
    assert torch.equal(region[0, 0], core.disk_mask((10, 14), radius=5.0).bool())
    assert eval_mode_restored is core.eval_mode_restored


def test_no_private_imports_across_the_equivariance_modules():
    files = ["metrics/equivariance.py", "metrics/equivariance_helper.py", "handlers/equivariance.py",
             "handlers/equivariance_saver.py", "utils/equivariance.py", "visualize/equivariance.py", "bundle/report.py"]
    for name in files:
        source = (PACKAGE / name).read_text()
        imports = re.findall(r"from monai_equivariant[\w.]* import \(?([^)]*?)\)?\n(?!\s)", source, flags=re.S)
        names = [n.strip() for group in imports for n in group.replace("\n", ",").split(",") if n.strip()]
        assert not [n for n in names if n.startswith("_")], name


def _run_handler(handler: EquivarianceHandler, *savers: EquivarianceSaver, epochs: int = 1) -> Engine:
    engine = Engine(lambda e, b: None)
    for saver in savers:  # attached before the handler: the event makes the order irrelevant
        saver.attach(engine)
    handler.attach(engine)
    engine.run([0], max_epochs=epochs)
    return engine


def test_handler_only_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handler = EquivarianceHandler(images=torch.rand(2, 1, 8, 8), network=ramp, angles=ANGLES)
    engine = _run_handler(handler)
    assert not list(tmp_path.iterdir())  # nothing written
    report = engine.state.equivariance["equivariance"]
    assert isinstance(report, EquivarianceReport) and report is handler.report
    assert report.network_name == "network" and report.measures == ("dice",)
    assert report.results["network"]["per_image"]["dice"].shape == (2, 3)
    assert engine.state.metrics["equivariance_dice_0"] == 1.0


def test_saver_writes_csv_and_plots_separately(tmp_path):
    handler = EquivarianceHandler(images=torch.rand(2, 1, 8, 8), network=ramp, networks={"identity": lambda x: x},
                                  angles=ANGLES, log_measures=["mad", "dice"])
    everything = EquivarianceSaver(tmp_path / "all")
    csv_only = EquivarianceSaver(tmp_path / "csv", measure="dice", curve=False, boxplot=False)
    _run_handler(handler, everything, csv_only, epochs=2)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "equivariance_boxplot.png", "equivariance_curve.png", "equivariance_per_angle.csv"]
    assert [p.name for p in (tmp_path / "csv").iterdir()] == ["equivariance_per_angle.csv"]
    with open(tmp_path / "csv" / "equivariance_per_angle.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 3  # epochs x networks x angles: history kept
    assert {r["network"] for r in rows} == {"network", "identity"}
    assert list(rows[0])[:3] == ["epoch", "network", "angle"]
    assert everything.history == csv_only.history


def test_saver_ignores_other_prefixes_and_output_dir_is_a_shorthand(tmp_path):
    other = EquivarianceSaver(tmp_path / "other", prefix="other")
    handler = EquivarianceHandler(images=torch.rand(1, 1, 8, 8), network=ramp, angles=ANGLES,
                                  output_dir=tmp_path / "own")
    engine = _run_handler(handler, other)
    assert not (tmp_path / "other").exists()
    assert isinstance(handler.saver, EquivarianceSaver)
    assert engine.has_event_handler(handler.saver, EquivarianceEvents.MEASURED)
    assert (tmp_path / "own" / "equivariance_per_angle.csv").is_file()
    written = handler.save(tmp_path / "again")
    assert set(written) == {"curve", "boxplot", "per_angle"} and all(p.is_file() for p in written.values())


@pytest.mark.parametrize("training", [True, False])
def test_report_restores_the_network_mode(training):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 1))
    net.train(training)
    net[1].eval()  # a frozen part keeps its own mode
    state = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []

    def inferer(x, network):
        seen.append(network.training)
        return SimpleInferer()(x, network)

    errors = equivariance_errors(net, inferer, torch.rand(2, 1, 8, 8), "p4")
    assert errors.shape == (4,) and seen and not any(seen)  # measured in eval mode
    assert net.training == training and net[0].training == training and not net[1].training
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
