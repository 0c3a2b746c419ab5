"""The main job's comparison module (benchmarks/polyp_comparison.py): measures, table, curves, figure, bundle runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def comparison():
    spec = importlib.util.spec_from_file_location("polyp_comparison", ROOT / "benchmarks" / "polyp_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _disks(n: int = 3, size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = [((yy - 10 - 3 * i) ** 2 + (xx - 14) ** 2 < (5 + i) ** 2).float() for i in range(n)]
    return torch.stack(masks)[:, None]


def _oracle(x: torch.Tensor) -> torch.Tensor:
    """A pointwise 'network' (exactly equivariant): logits from the first channel."""
    return 20 * (x[:, :1] - 0.5)


def test_epoch_seconds_are_the_median_without_the_validation_epoch(comparison) -> None:
    log = "\n".join(
        f"2026-01-01 10:00:0{k},000 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[{k}] Complete. "
        f"Time taken: 00:0{1 if k == 4 else 0}:0{k}.500"
        for k in range(1, 5)
    ) + "\nignite.engine.engine.SupervisedEvaluator - INFO - Epoch[1] Complete. Time taken: 00:00:09.000\n"
    assert comparison.epoch_seconds(log) == pytest.approx(2.5)  # epochs 1-3: 1.5, 2.5, 3.5 s
    with pytest.raises(ValueError, match="Time taken"):
        comparison.epoch_seconds("nothing here")


def test_measures_on_an_exactly_equivariant_predictor(comparison) -> None:
    labels = _disks()
    images = labels.repeat(1, 3, 1, 1)
    dice = comparison.rotated_dice(_oracle, images, labels, [0, 30, 45, 90])
    assert dice[0] == pytest.approx(1.0) and dice[3] == pytest.approx(1.0) and dice.min() > 0.9
    curve = comparison.equivariance_dice(_oracle, images, comparison.CURVE_ANGLES)
    assert curve.shape == (25,) and all(curve[i] == pytest.approx(1.0) for i in (0, 6, 12, 18, 24))
    assert comparison.max_error_90(_oracle, images) < 1e-6
    assert comparison.max_error_90(lambda x: torch.roll(_oracle(x), 3, dims=-1), images) > 0.1
    assert comparison.inference_ms(_oracle, images) > 0


def test_table_curves_and_figure(comparison, tmp_path: Path) -> None:
    row = {"model": "P4UNet", "parameters": 1234, "dice_0": 0.9, "dice_30": 0.8, "dice_45": 0.7, "dice_90": 0.9,
           "equivariance_dice_45": 0.95, "max_error_90": 3e-7, "train_s_per_epoch": 1.5,
           "inference_ms_per_image": 2.0, "test_images": 14}
    curves = {"P4UNet": {"test_dice": np.linspace(0, 1, 25), "equivariance_dice": np.ones(25)}}
    comparison.write_outputs([row], curves, "full training set", tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "| P4UNet | 1,234 | 0.900 | 0.800 | 0.700 | 0.900 | 0.950 | 3.0e-07 | 1.50 | 2.00 |" in table
    title, read = comparison.read_curves(tmp_path / "curves.csv")
    angles, values = read["P4UNet"]["test_dice"]
    assert title == "full training set" and angles[0] == 0 and angles[-1] == 360
    assert np.allclose(values, np.linspace(0, 1, 25), atol=1e-6)
    figure = comparison.plot_comparison([tmp_path / "curves.csv", tmp_path / "curves.csv"], tmp_path / "fig.png")
    assert figure.stat().st_size > 1000


def test_bundle_run_is_rebuilt_from_the_bundle_configs(comparison, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    bundle = ROOT / "bundles" / "polyp_segmentation"
    overrides = {"bundle_root": str(tmp_path / "run"), "network_name": "plain", "image_size": 16,
                 "synthetic_samples": 8, "network_channels": [2, 4]}
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update(overrides)
    parser["device"] = "$torch.device('cpu')"
    network = parser.get_parsed_content("network_def")
    (tmp_path / "run" / "models").mkdir(parents=True)
    torch.save(network.state_dict(), tmp_path / "run" / "models" / "model.pt")  # stands in for a trained model
    run = comparison.load_bundle_run("plain", bundle, overrides)
    assert run.images.shape[1:] == (3, 16, 16) and run.labels.shape[1:] == (1, 16, 16)
    for key, value in network.state_dict().items():
        assert torch.equal(run.network.state_dict()[key], value)
    assert run.predict(run.images).shape == run.labels.shape
