"""EquivarianceMetric, its ignite handler and plots: exact nets score 1 at 90° multiples, others do not."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.metrics import compute_dice

from monai_equivariant.groups import get_group, rotate
from monai_equivariant.handlers import EquivarianceHandler
from monai_equivariant.metrics import DEFAULT_ANGLES_2D, EquivarianceMetric, compute_equivariance, valid_region
from monai_equivariant.networks.nets import GroupUNet, P4UNet
from monai_equivariant.utils.equivariance import eval_mode_restored
from monai_equivariant.visualize import plot_equivariance_boxplots, plot_equivariance_curves, plot_per_angle_csvs

QUARTER_TURNS = [0.0, 90.0, 180.0, 270.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class MedianCentred(nn.Module):
    """f(x) - median of f(x) per image: still exactly equivariant (a median ignores pixel order), and the
    sigmoid mask covers about half the image, so Dice is not trivially 1 on empty masks."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out - out.flatten(1).median(dim=1).values.view(-1, *[1] * (out.dim() - 1))


class StridedConv(nn.Module):
    """Not equivariant: a random 3×3 kernel with stride 2 (the grid is not mapped onto itself), upsampled."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(self.conv(x), size=x.shape[2:], mode="nearest")
        return out - out.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)


def add_ramp(x: torch.Tensor) -> torch.Tensor:
    """Not equivariant: the first channel plus a ramp along the last axis (a fixed direction)."""
    ramp = torch.linspace(-1, 1, x.shape[-1])
    return x[:, :1] - 0.5 + ramp


def p4_net(in_channels: int = 3) -> nn.Module:
    return MedianCentred(P4UNet(2, in_channels, 1, channels=(4, 8))).eval()


def test_default_angles():
    metric = EquivarianceMetric(lambda x: x)
    metric(torch.rand(1, 1, 8, 8))
    assert metric.angles == list(DEFAULT_ANGLES_2D) and metric.angles[0] == 0 and metric.angles[-1] == 90
    assert len(metric.angles) == 19 and metric.labels[9] == "45"


@pytest.mark.parametrize("size", [16, 24])
def test_p4_unet_scores_one_at_quarter_turns(size):
    net = p4_net()
    x = torch.rand(2, 3, size, size)
    metric = EquivarianceMetric(net, angles=QUARTER_TURNS)
    metric(x)
    per_image = metric.aggregate("none")
    assert per_image["dice"].shape == (2, 4)
    assert torch.equal(per_image["dice"], torch.ones(2, 4))
    assert torch.equal(per_image["iou"], torch.ones(2, 4))
    assert per_image["mad"].max() <= 1e-5
    masks = torch.sigmoid(net(x)) > 0.5
    assert 0.2 < masks.float().mean() < 0.8  # masks are far from empty or full


def test_pointwise_function_scores_one_at_quarter_turns():
    metric = EquivarianceMetric(lambda x: x[:, :1] - 0.5, angles=QUARTER_TURNS + [360.0, -90.0])
    metric(torch.rand(3, 2, 20, 20))
    assert torch.equal(metric.aggregate()["dice"], torch.ones(6))


@pytest.mark.parametrize("network", [StridedConv(3), add_ramp], ids=["strided_conv", "ramp"])
def test_non_equivariant_scores_below_one(network):
    metric = EquivarianceMetric(network, angles=QUARTER_TURNS)
    metric(torch.rand(2, 3, 16, 16))
    dice = metric.aggregate()["dice"]
    assert dice[0] == 1.0  # the identity always agrees
    assert dice[1:].max() < 0.95
    assert metric.aggregate()["mad"][1:].min() > 1e-2


def test_dice_matches_monai_compute_dice():
    metric = EquivarianceMetric(add_ramp, angles=[90.0], valid_region="all")
    x = torch.rand(3, 1, 12, 12)
    metric(x)
    expected_mask = rotate(torch.sigmoid(add_ramp(x)), 90.0) > 0.5
    actual_mask = torch.sigmoid(add_ramp(rotate(x, 90.0))) > 0.5
    reference = compute_dice(actual_mask.float(), expected_mask.float(), include_background=True, ignore_empty=False)
    assert torch.allclose(metric.aggregate("none")["dice"][:, 0], reference[:, 0])


def test_padding_would_dominate_without_valid_region():
    """f = 1 everywhere: rotate(f(x)) has zero corners, f(rotate(x)) does not; only the valid region is fair."""

    def ones(x):
        return torch.ones_like(x[:, :1])

    angles = [0.0, 30.0, 45.0, 90.0]
    fair = EquivarianceMetric(ones, angles=angles, activation=None)
    unfair = EquivarianceMetric(ones, angles=angles, activation=None, valid_region="all")
    x = torch.rand(2, 1, 32, 32)
    fair(x)
    unfair(x)
    assert torch.equal(fair.aggregate()["dice"], torch.ones(4))
    assert fair.aggregate()["mad"].max() <= 1e-6
    dice_all = unfair.aggregate()["dice"]
    assert dice_all[0] == 1 and dice_all[3] == 1  # no padding at 0° and 90°
    assert dice_all[2] < 0.92 and dice_all[1] < 0.95  # the corners at 45° cost ~9% Dice


def test_input_padding_keeps_padded_corners_out_of_the_network_input():
    """A network that reacts to black pixels sees the zero-padded corners of a rotated input; with reflection
    padding its input has no black corners and it scores Dice 1 (the output comparison is unchanged)."""

    def black_detector(x):  # foreground = within 2 px of a (near) black pixel
        return F.max_pool2d((x[:, :1] < 1e-3).float(), 5, stride=1, padding=2)

    x = torch.rand(2, 1, 32, 32) * 0.9 + 0.1
    angles = [0.0, 45.0, 90.0]
    # no black pixel in x: both masks empty at 0° and 90°, which counts as agreement only with ignore_empty=False
    zeros = EquivarianceMetric(black_detector, angles=angles, activation=None, ignore_empty=False)
    reflected = EquivarianceMetric(
        black_detector, angles=angles, activation=None, input_padding="reflection", ignore_empty=False
    )
    zeros(x)
    reflected(x)
    dice_zeros, dice_reflected = zeros.aggregate()["dice"], reflected.aggregate()["dice"]
    assert dice_zeros[0] == 1 and dice_zeros[2] == 1 and dice_zeros[1] < 0.5
    assert torch.equal(dice_reflected, torch.ones(3))
    assert torch.allclose(rotate(torch.ones(1, 1, 8, 8), 45.0, padding_mode="border"), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="input_padding"):
        EquivarianceMetric(black_detector, input_padding="wrap")


def test_valid_region_masks():
    shape = (32, 32)
    quarter = valid_region(lambda t: rotate(t, 90.0), shape)
    assert quarter.shape == (1, 1, 32, 32) and bool(quarter.all())
    tilted = valid_region(lambda t: rotate(t, 45.0), shape)
    assert not tilted[0, 0, 0, 0] and tilted[0, 0, 16, 16]  # corner padded, centre kept
    assert 0.6 < tilted.float().mean() < 0.85
    disk = valid_region(lambda t: rotate(t, 45.0), shape, region="disk")
    assert bool((disk <= tilted).all()) and disk.sum() < tilted.sum()
    eroded = valid_region(lambda t: rotate(t, 45.0), shape, margin=2)
    assert bool((eroded <= tilted).all()) and eroded.sum() < tilted.sum()
    eroded_quarter = valid_region(lambda t: rotate(t, 90.0), shape, margin=1)
    assert eroded_quarter.sum() == 30 * 30


def test_cumulative_batches_and_reset():
    metric = EquivarianceMetric(add_ramp, angles=[0.0, 30.0, 90.0])
    x = torch.rand(5, 1, 16, 16)
    metric(x[:2])
    metric(x[2:])
    per_image = metric.aggregate("none")
    assert per_image["dice"].shape == (5, 3) and len(metric) == 5
    single = EquivarianceMetric(add_ramp, angles=[0.0, 30.0, 90.0])
    single(x[3:4])
    assert torch.allclose(per_image["dice"][3], single.aggregate("none")["dice"][0])
    assert torch.allclose(metric.aggregate()["dice"], per_image["dice"].mean(0))
    assert metric.aggregate("mean")["iou"].numel() == 1  # as MONAI's metrics: a one-element tensor
    assert len(metric.get_buffer()) == 3  # one buffer per measure
    metric.reset()
    assert metric.get_buffer() is None
    with pytest.raises(RuntimeError, match="no results"):
        metric.aggregate()


def test_list_of_channel_first_images():
    metric = EquivarianceMetric(add_ramp, angles=[0.0, 90.0])
    metric([torch.rand(1, 8, 8), torch.rand(1, 8, 8)])
    assert metric.aggregate("none")["dice"].shape == (2, 2)
    metric([torch.rand(1, 8, 8), torch.rand(1, 12, 12)])  # different sizes: one image at a time
    assert metric.aggregate("none")["dice"].shape == (4, 2)


def test_group_elements_match_rotation_angles():
    """One rotation implementation: p4's elements (Group.transform) and rotate() at 0/90/180/270° agree."""
    x = MetaTensor(torch.rand(3, 1, 12, 12))
    by_angle, by_group = EquivarianceMetric(add_ramp, angles=QUARTER_TURNS), EquivarianceMetric(add_ramp, group="p4")
    by_angle(x)
    by_group(x)
    assert by_group.labels == ["g0", "g1", "g2", "g3"]
    for name, values in by_angle.aggregate("none").items():
        assert torch.equal(values, by_group.aggregate("none")[name])


def test_network_given_per_call():
    metric = EquivarianceMetric(angles=[90.0])
    metric(torch.rand(2, 1, 8, 8), network=lambda x: x - 0.5)
    assert torch.equal(metric.aggregate()["dice"], torch.ones(1))


def test_softmax_two_classes_without_background():
    def two_class(x):  # exactly equivariant, pointwise
        return torch.cat([x[:, :1], 1 - x[:, :1]], dim=1)

    metric = EquivarianceMetric(two_class, angles=QUARTER_TURNS, activation="softmax", include_background=False)
    metric(torch.rand(2, 1, 12, 12))
    assert torch.equal(metric.aggregate()["dice"], torch.ones(4))
    ramp = EquivarianceMetric(lambda x: two_class(add_ramp(x) + 0.5), angles=[90.0], activation="softmax")
    ramp(torch.rand(2, 1, 12, 12))
    assert ramp.aggregate()["dice"][0] < 0.95


def test_3d_cube_rotations():
    net = MedianCentred(GroupUNet(3, 1, 1, channels=(2, 4), group="O")).eval()
    metric = EquivarianceMetric(net)
    metric(torch.rand(2, 1, 8, 8, 8))
    assert metric.labels == [f"g{g}" for g in range(24)]
    per_image = metric.aggregate("none")
    assert per_image["dice"].shape == (2, 24)
    assert torch.equal(per_image["dice"], torch.ones(2, 24))
    assert per_image["mad"].max() <= 1e-5

    ramp = EquivarianceMetric(lambda x: x - 0.5 + torch.linspace(-1, 1, x.shape[2]).view(-1, 1, 1))
    ramp(torch.rand(2, 1, 6, 6, 6))
    dice = ramp.aggregate()["dice"]
    group = get_group("O")
    moves_depth = torch.tensor([abs(group.matrices[g][0, 0]) != 1 or group.matrices[g][0, 0] < 0 for g in range(24)])
    assert dice[0] == 1 and torch.all(dice[moves_depth] < 0.95) and torch.all(dice[~moves_depth] == 1)


def test_classifier_agreement_and_logit_change():
    def pooled(x):  # invariant to 90° rotations: global average pooling
        means = x.mean(dim=(2, 3))
        return torch.stack([means[:, 0], means[:, 1]], dim=1)

    metric = EquivarianceMetric(pooled, angles=QUARTER_TURNS)
    metric(torch.rand(3, 2, 10, 10))
    result = metric.aggregate()
    assert metric.measures == ("agreement", "logit_change")
    assert torch.equal(result["agreement"], torch.ones(4))
    assert result["logit_change"].max() <= 1e-6

    def top_vs_bottom(x):  # not invariant: a 180° turn swaps the two logits
        return torch.stack([x[:, 0, 0].mean(1), x[:, 0, -1].mean(1)], dim=1)

    metric = EquivarianceMetric(top_vs_bottom, angles=[0.0, 180.0])
    metric(torch.rand(4, 1, 10, 10))
    result = metric.aggregate()
    assert result["agreement"].tolist() == [1.0, 0.0]
    assert result["logit_change"][1] > 1e-3


def test_bad_input_raises():
    with pytest.raises(ValueError, match="either angles"):
        EquivarianceMetric(add_ramp, angles=[0], group="p4")
    with pytest.raises(ValueError, match="activation"):
        EquivarianceMetric(add_ramp, activation="relu")
    with pytest.raises(ValueError, match="needs a network"):
        EquivarianceMetric()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="give a group"):
        EquivarianceMetric(lambda x: x, angles=[0, 45])(torch.rand(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="expected \\(B, K\\) logits"):
        EquivarianceMetric(lambda x: x[:, :, ::2])(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="task='classification'"):
        EquivarianceMetric(lambda x: x, task="classification")(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="spatial dims"):
        EquivarianceMetric(lambda x: x)(torch.rand(2, 8))


# ------------------------------------------------------------------------------------------------------
# eval mode, non-finite outputs, empty masks (issue 10 item 4, issue 11)


def _bn_net() -> nn.Module:
    """A P4UNet (batch norm) whose running statistics moved away from their initial values."""
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(4, 8))
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 1, 16, 16) * 3)
    return net


def test_train_mode_net_is_measured_in_eval_mode_and_left_unchanged():
    net = _bn_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 1, 16, 16)
    metric = EquivarianceMetric(net, angles=[0.0, 90.0])
    metric(x)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # running statistics untouched
    reference = EquivarianceMetric(net.eval(), angles=[0.0, 90.0])
    reference(x)
    assert torch.equal(metric.aggregate("none")["mad"], reference.aggregate("none")["mad"])
    assert metric.aggregate("none")["mad"].max() <= 1e-5  # eval mode: exact at 90°


def test_handler_on_train_mode_net_leaves_running_statistics_unchanged():
    from ignite.engine import Engine

    net = _bn_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    handler = EquivarianceHandler(images=torch.rand(2, 1, 16, 16), network=net, angles=QUARTER_TURNS)
    handler.attach(engine := Engine(lambda e, b: None))
    engine.run([0], max_epochs=1)
    assert net.training and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert engine.state.metrics["equivariance_mad"] <= 1e-5


def test_eval_mode_restored_keeps_each_submodules_mode():
    net = nn.Sequential(nn.BatchNorm2d(1), nn.BatchNorm2d(1))
    net.train()
    net[1].eval()  # e.g. a frozen part of a training net
    with eval_mode_restored(net, add_ramp):  # plain functions are ignored
        assert not any(m.training for m in net.modules()) and not torch.is_grad_enabled()
    assert net.training and net[0].training and not net[1].training


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_non_finite_outputs_are_nan_not_perfectly_equivariant(task):
    network = (lambda x: x[:, :1] - 0.5) if task == "segmentation" else (lambda x: x.mean(dim=(2, 3)))
    x = torch.rand(3, 1, 8, 8)
    x[1] = float("nan")  # one all-NaN image
    metric = EquivarianceMetric(network, angles=QUARTER_TURNS)
    with pytest.warns(UserWarning, match="non-finite network outputs for 4 of 12 .*1 of 3 input images"):
        metric(x)
    per_image = metric.aggregate("none")
    for values in per_image.values():
        assert torch.isnan(values[1]).all() and not torch.isnan(values[[0, 2]]).any()
    all_nan = EquivarianceMetric(network, angles=QUARTER_TURNS)
    with pytest.warns(UserWarning, match="non-finite"):
        all_nan(torch.full((2, 1, 8, 8), float("nan")))
    for reduction in ("mean_batch", "mean"):  # NaN, not MONAI's 0 for an all-NaN column, and never 1
        assert all(torch.isnan(v).all() for v in all_nan.aggregate(reduction).values())


def test_two_empty_masks_are_nan_by_default_as_dice_metric():
    def empty(x):
        return x[:, :1] - 10.0  # sigmoid < 0.5 everywhere: both masks empty, exactly equivariant

    default = EquivarianceMetric(empty, angles=[0.0, 30.0, 90.0])
    default(torch.rand(2, 1, 8, 8))
    result = default.aggregate("none")
    assert torch.isnan(result["dice"]).all() and torch.isnan(result["iou"]).all()
    assert torch.isnan(default.aggregate()["dice"]).all()  # not 1.0
    assert torch.isnan(default.aggregate("none")["dice"]).all()  # a reduction left the buffer's NaN alone
    assert (result["mad"] < 1e-5).all()  # the probabilities still agree
    counted = EquivarianceMetric(empty, angles=[0.0, 30.0, 90.0], ignore_empty=False)
    counted(torch.rand(2, 1, 8, 8))
    assert torch.equal(counted.aggregate()["dice"], torch.ones(3))

    def top_row(x):  # foreground only in the top row: after a 180° turn one mask is empty, the other not
        out = torch.full_like(x[:, :1], -10.0)
        out[..., 0, :] = 10.0
        return out

    one_empty = EquivarianceMetric(top_row, angles=[0.0, 180.0])
    one_empty(torch.rand(2, 1, 8, 8))
    assert one_empty.aggregate()["dice"].tolist() == [1.0, 0.0]


def test_compute_equivariance_is_the_metrics_function():
    x = torch.rand(3, 1, 12, 12)
    values = compute_equivariance(add_ramp, x, angles=[0.0, 45.0, 90.0])
    metric = EquivarianceMetric(add_ramp, angles=[0.0, 45.0, 90.0])
    metric(x)
    assert set(values) == {"dice", "iou", "mad"} and values["dice"].shape == (3, 3)
    for name, per_image in metric.aggregate("none").items():
        assert torch.equal(values[name], per_image)
    logits = compute_equivariance(lambda t: t.mean(dim=(2, 3)), x, group="p4")
    assert set(logits) == {"agreement", "logit_change"} and logits["agreement"].shape == (3, 4)
    calls = []

    def inferer(inputs, network):  # MONAI's inferer(inputs, network) convention
        calls.append(inputs.shape)
        return network(inputs)

    via = compute_equivariance(add_ramp, x, angles=[0.0, 45.0, 90.0], inferer=inferer)
    assert len(calls) == 4 and torch.equal(via["dice"], values["dice"])
    with pytest.raises(ValueError, match="ignore|valid_region"):
        compute_equivariance(add_ramp, x, valid_region="box")


def test_group_elements_are_named_as_elements_not_angles(tmp_path):
    from ignite.engine import Engine

    metric = EquivarianceMetric(add_ramp, group="p4m")
    metric(torch.rand(2, 1, 8, 8))
    assert metric.axis == "element" and metric.angles is None and metric.elements == list(range(8))
    assert metric.labels == [f"g{g}" for g in range(8)] and list(metric.table())[0] == "element"
    rotations = EquivarianceMetric(add_ramp, angles=[0.0, 22.5])
    rotations(torch.rand(1, 1, 8, 8))
    assert rotations.axis == "angle" and rotations.angles == [0.0, 22.5] and rotations.elements is None
    assert rotations.labels == ["0", "22.5"]

    handler = EquivarianceHandler(images=torch.rand(2, 1, 8, 8), network=add_ramp, group="p4", output_dir=tmp_path)
    handler.attach(engine := Engine(lambda e, b: None))
    engine.run([0], max_epochs=1)
    with open(tmp_path / "equivariance_per_angle.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["epoch", "network", "element"] and [r["element"] for r in rows] == list("0123")
    fig = plot_per_angle_csvs({"ramp": tmp_path / "equivariance_per_angle.csv"}, tmp_path / "elements.png")
    axes = fig.axes[0]
    assert axes.get_xlabel() == "group element"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["g0", "g1", "g2", "g3"]
    assert "equivariance_dice_g1" in engine.state.metrics


def test_handler_says_how_many_empty_masks_were_skipped(caplog):
    import logging

    from ignite.engine import Engine

    handler = EquivarianceHandler(images=torch.rand(2, 1, 8, 8), network=lambda x: x[:, :1] - 10.0, angles=[0, 90])
    handler.attach(engine := Engine(lambda e, b: None))
    with caplog.at_level(logging.INFO):
        engine.run([0], max_epochs=1)
    assert "4 of 4 (image, angle) pairs have both masks empty: Dice/IoU NaN" in caplog.text
    assert np.isnan(engine.state.metrics["equivariance_dice"]) and engine.state.metrics["equivariance_mad"] < 1e-6


def test_plots_moved_to_visualize_and_stay_importable_from_metrics():
    import monai_equivariant.metrics as metrics
    import monai_equivariant.visualize as visualize

    for name in ("plot_equivariance_curves", "plot_equivariance_boxplots", "plot_per_angle_csvs", "save_figure"):
        assert getattr(metrics, name) is getattr(visualize, name)


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_plots_write_png(tmp_path):
    angles = list(DEFAULT_ANGLES_2D)
    curves = {"P4UNet": torch.ones(19), "U-Net": torch.linspace(1, 0.8, 19)}
    fig = plot_equivariance_curves(angles, curves, path=tmp_path / "curves" / "dice.png")
    assert _is_png(tmp_path / "curves" / "dice.png")
    assert fig.axes[0].get_xlim() == (0.0, 360.0)  # the 0..90 measurement is shown over a full turn
    per_image = {"P4UNet": torch.ones(5, 19), "U-Net": torch.rand(5, 19)}
    plot_equivariance_boxplots(angles, per_image, measure="dice", path=tmp_path / "box.png")
    assert _is_png(tmp_path / "box.png")
    with pytest.raises(ValueError, match="shape"):
        plot_equivariance_curves(angles, {"bad": torch.ones(3)})


def test_plot_per_angle_csvs_takes_the_last_epoch_of_each_run(tmp_path):
    for name, value in (("p4", 1.0), ("plain", 0.9)):
        lines = ["epoch,network,angle,dice,iou,mad"]
        lines += [f"1,{name},{a},0.5,0.5,0.1" for a in (0.0, 45.0, 90.0)]
        lines += [f"2,{name},{a},{value},{value},0.0" for a in (0.0, 45.0, 90.0)]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    fig = plot_per_angle_csvs({"P4UNet": tmp_path / "p4.csv", "U-Net": tmp_path / "plain.csv"}, tmp_path / "cmp.png")
    assert _is_png(tmp_path / "cmp.png")
    solid = [line for line in fig.axes[0].get_lines() if line.get_label() in ("P4UNet", "U-Net")]
    assert sorted(set(line.get_ydata()[0] for line in solid)) == [0.9, 1.0]
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plot_per_angle_csvs({"x": tmp_path / "missing.csv"}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'hd'"):
        plot_per_angle_csvs({"x": tmp_path / "p4.csv"}, tmp_path / "x.png", measure="hd")


# ------------------------------------------------------------------------------------------------------
# handler


def _evaluator_config(output_dir) -> dict:
    return {
        "imports": ["$import torch", "$import monai_equivariant"],
        "device": "cpu",
        "network": {
            "_target_": "monai_equivariant.networks.nets.P4UNet",
            "in_channels": 1,
            "out_channels": 1,
            "channels": [4, 8],
        },
        "dataset": "$[{'image': torch.rand(1, 16, 16), 'label': (torch.rand(1, 16, 16) > 0.5).float()} "
        "for _ in range(5)]",
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 2, "shuffle": False},
        "stats": {"_target_": "StatsHandler", "iteration_log": False, "name": "equivariance_test"},
        "saver": {"_target_": "MetricsSaver", "save_dir": str(output_dir), "metrics": ["equivariance_dice"],
                  "metric_details": ["equivariance_dice"]},
        "equivariance": {
            "_target_": "monai_equivariant.handlers.EquivarianceHandler",
            "num_images": 3,
            "angles": [0, 45, 90],
            "output_dir": str(output_dir),
        },
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "val_handlers": ["@stats", "@saver", "@equivariance"],  # logging first: values must still be there
        },
    }


def test_handler_from_config_on_supervised_evaluator(tmp_path, capsys):
    from monai.bundle import ConfigParser

    parser = ConfigParser(_evaluator_config(tmp_path))
    evaluator = parser.get_parsed_content("evaluator")
    handler = parser.get_parsed_content("equivariance")
    network = parser.get_parsed_content("network")
    network.train()
    evaluator.run()
    metrics = evaluator.state.metrics
    for key in ("equivariance_dice_0", "equivariance_dice_45", "equivariance_dice_90", "equivariance_mad"):
        assert key in metrics
    assert metrics["equivariance_dice_0"] == 1.0 and metrics["equivariance_dice_90"] == 1.0
    assert "equivariance_dice_45: " in capsys.readouterr().out  # StatsHandler logged it at EPOCH_COMPLETED
    assert network.training  # mode restored
    images = handler._images
    assert images.shape == (3, 1, 16, 16)
    assert torch.equal(images, torch.stack([parser.get_parsed_content("dataset")[i]["image"] for i in range(3)]))
    assert _is_png(tmp_path / "equivariance_curve.png") and _is_png(tmp_path / "equivariance_boxplot.png")
    with open(tmp_path / "equivariance_dice_raw.csv") as f:  # MONAI's MetricsSaver: one row per image
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and list(rows[0]) == ["filename", "class0", "class1", "class2", "mean"]
    assert [float(r["class0"]) for r in rows] == [1.0] * 3  # class0 = the first angle, 0°
    assert not (tmp_path / "equivariance_per_image.csv").exists()  # MetricsSaver does that job now
    evaluator.run()  # second validation: same fixed images, history grows
    assert handler._images is images
    with open(tmp_path / "equivariance_per_angle.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 and set(rows[0]) == {"epoch", "network", "angle", "dice", "iou", "mad"}


def test_handler_fixed_images_and_comparison_networks(tmp_path):
    from ignite.engine import Engine

    net, plain = p4_net(1), StridedConv(1).eval()
    engine = Engine(lambda e, b: None)
    handler = EquivarianceHandler(
        images=torch.rand(4, 1, 16, 16), network=net, networks={"strided": plain}, network_name="p4",
        angles=QUARTER_TURNS, batch_size=3, log_measures=["dice", "mad"], output_dir=tmp_path,
    )
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    assert engine.state.metrics["equivariance_dice_90"] == 1.0
    assert engine.state.metrics["equivariance_mad_270"] <= 1e-5
    assert handler.results["strided"]["means"]["dice"][1] < 0.95
    assert handler.results["p4"]["per_image"]["dice"].shape == (4, 4)
    assert engine.state.metric_details["equivariance_dice"].shape == (4, 4)
    with open(tmp_path / "equivariance_per_angle.csv") as f:
        assert {row["network"] for row in csv.DictReader(f)} == {"p4", "strided"}


def test_handler_classifier_and_dataset_items():
    from ignite.engine import Engine

    dataset = [(torch.rand(2, 8, 8), 0) for _ in range(3)]
    handler = EquivarianceHandler(images=dataset, num_images=5, network=lambda x: x.mean(dim=(2, 3)),
                                  angles=QUARTER_TURNS, prefix="inv")
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    assert handler._images.shape == (3, 2, 8, 8)
    assert engine.state.metrics["inv_agreement_180"] == 1.0 and "inv_logit_change" in engine.state.metrics
    with pytest.raises(ValueError, match="log_measures"):
        bad = EquivarianceHandler(images=dataset, network=lambda x: x.mean(dim=(2, 3)), log_measures=["dice"])
        bad.evaluate(Engine(lambda e, b: None))


def test_handler_3d_group_elements(tmp_path):
    from ignite.engine import Engine

    handler = EquivarianceHandler(images=torch.rand(2, 1, 6, 6, 6), network=lambda x: x - 0.5, output_dir=tmp_path)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    assert [engine.state.metrics[f"equivariance_dice_g{g}"] for g in range(24)] == [1.0] * 24
    assert _is_png(tmp_path / "equivariance_curve.png") and _is_png(tmp_path / "equivariance_boxplot.png")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    net = p4_net().cuda()
    metric = EquivarianceMetric(net, angles=QUARTER_TURNS + [45.0])
    metric(torch.rand(2, 3, 16, 16, device="cuda"))
    dice = metric.aggregate()["dice"]
    assert dice.device.type == "cuda" and torch.equal(dice[:4].cpu(), torch.ones(4))
    cube = EquivarianceMetric(MedianCentred(GroupUNet(3, 1, 1, channels=(2, 4), group="O")).eval().cuda())
    cube(torch.rand(2, 1, 8, 8, 8, device="cuda"))
    assert torch.equal(cube.aggregate()["dice"].cpu(), torch.ones(24))
