"""GroupEnsembleInferer: a plain net becomes exactly equivariant / invariant; MONAI inferers, evaluator, configs."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_matches
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.transforms import Activationsd, AsDiscreted, Compose

from monai_equivariant.groups import get_group
from monai_equivariant.inferers import GroupEnsembleInferer
from monai_equivariant.networks.nets import GroupCNN, GroupUNet


def _plain_unet() -> GroupUNet:
    torch.manual_seed(0)
    return GroupUNet(2, 1, 1, channels=(4, 8), group="trivial").eval()


def _max_error(predict, group_name: str, x: torch.Tensor, invariant: bool = False) -> float:
    group = get_group(group_name)
    reference = predict(x)
    errors = []
    for element in range(group.order):
        moved = predict(group.spatial_transform(x, element))
        expected = reference if invariant else group.spatial_transform(reference, element)
        errors.append(float((moved - expected).abs().max()))
    return max(errors)


@torch.no_grad()
def test_plain_unet_in_p4_ensemble_is_exactly_equivariant() -> None:
    net = _plain_unet()
    x = torch.randn(2, 1, 16, 16)
    inferer = GroupEnsembleInferer("p4")
    assert _max_error(net, "p4", x) > 1e-3  # the plain net alone is not equivariant
    assert _max_error(lambda t: inferer(t, net), "p4", x) <= 1e-5


@torch.no_grad()
def test_3d_classification_is_invariant_over_the_24_cube_rotations() -> None:
    torch.manual_seed(0)
    net = GroupCNN(3, 1, 2, channels=(2, 4), group="trivial").eval()
    x = torch.randn(2, 1, 8, 8, 8)
    inferer = GroupEnsembleInferer("O", mode="classification")
    assert inferer(x, net).shape == (2, 2)
    assert _max_error(net, "O", x, invariant=True) > 1e-4
    assert _max_error(lambda t: inferer(t, net), "O", x, invariant=True) <= 1e-5


@torch.no_grad()
def test_wraps_sliding_window_inferer() -> None:
    net = _plain_unet()
    x = torch.randn(1, 1, 24, 24)
    window = SlidingWindowInferer(roi_size=(16, 16), sw_batch_size=2, overlap=0.25, mode="gaussian")
    inferer = GroupEnsembleInferer("p4m", inferer=window)
    out = inferer(x, net)
    assert out.shape == (1, 1, 24, 24)
    assert _max_error(lambda t: inferer(t, net), "p4m", x) <= 1e-5
    # one element (the identity) of the ensemble is the wrapped inferer itself
    single = GroupEnsembleInferer("trivial", inferer=window)
    assert_matches(single(x, net), window(x, net), net)


@torch.no_grad()
def test_metatensor_inputs_keep_their_metadata() -> None:
    net = _plain_unet()
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
    x = MetaTensor(torch.randn(1, 1, 16, 16), affine=affine)
    out = GroupEnsembleInferer("p4")(x, net)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, x.affine)


def test_in_supervised_evaluator_and_bundle_config() -> None:
    net = _plain_unet()
    parser = ConfigParser(
        {
            "inferer": {
                "_target_": "monai_equivariant.inferers.GroupEnsembleInferer",
                "group": "p4",
                "inferer": {"_target_": "SimpleInferer"},
            }
        }
    )
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, GroupEnsembleInferer) and isinstance(inferer.inferer, SimpleInferer)
    data = [{"image": torch.randn(1, 16, 16), "label": (torch.rand(1, 16, 16) > 0.5).float()} for _ in range(3)]
    post = Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=net,
        inferer=inferer,
        postprocessing=post,
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["dice"] <= 1.0


def test_bad_arguments_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        GroupEnsembleInferer("p4", mode="detection")
    with pytest.raises(ValueError, match="grid groups"):
        GroupEnsembleInferer("se2_8")
    with pytest.raises(ValueError, match="3 spatial dims"):
        GroupEnsembleInferer("O")(torch.zeros(1, 1, 8, 8), torch.nn.Identity())
    with pytest.raises(ValueError, match="mode='classification'"):
        GroupEnsembleInferer("p4")(torch.zeros(1, 1, 8, 8), lambda t: t.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------------------------
# batched ensemble (max_batch) and lateral labels (label_permutation)

GRID_GROUPS = ["trivial", "p4", "p4m", "D4", "D4h", "O", "Oh"]


class _Counting(torch.nn.Module):
    """A plain (not equivariant) conv net that counts its calls and the inputs it saw."""

    def __init__(self, dims: int, out_channels: int, classify: bool) -> None:
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.body = torch.nn.Sequential(conv(2, 4, 3, padding=1), torch.nn.ReLU(), conv(4, out_channels, 3, padding=1))
        self.classify, self.calls, self.rows = classify, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls, self.rows = self.calls + 1, self.rows + x.shape[0]
        y = self.body(x)
        # classification: weight the pooled map by position, so the logits are not invariant by themselves
        ramp = torch.linspace(0.5, 1.5, y.shape[-1])
        return (y * ramp).flatten(2).mean(-1) if self.classify else y


def _sequential_reference(group, net, x, mode, permutation=None) -> torch.Tensor:
    """mean_g P_g g⁻¹·f(g·x) (or mean_g P_g f(g·x)) written out element by element."""
    from monai_equivariant.layers.lateral_head import reflections

    total = 0
    for g in range(group.order):
        y = net(group.spatial_transform(x, g))
        if mode == "segmentation":
            y = group.spatial_transform(y, int(group.inverse[g]))
        if permutation is not None and reflections(group)[g]:
            y = y[:, list(permutation)]
        total = total + y
    return total / group.order


@pytest.mark.parametrize("name", GRID_GROUPS)
@pytest.mark.parametrize("mode", ["segmentation", "classification"])
@torch.no_grad()
def test_batched_ensemble_equals_the_sequential_one_on_every_group(name: str, mode: str) -> None:
    group = get_group(name, 2 if name == "trivial" else None)
    dims = group.spatial_dims
    torch.manual_seed(0)
    net = _Counting(dims, 3, mode == "classification").eval()
    batch = 2
    for spatial in ((6, 6), (6, 8)) if dims == 2 else ((4, 4, 4), (4, 5, 6)):
        x = torch.randn(batch, 2, *spatial)
        expected = _sequential_reference(group, net, x, mode)
        shapes = {tuple(group.spatial_transform(x[:1], g).shape) for g in range(group.order)}
        for max_batch in (None, 1, 3, batch, batch * group.order + 5):
            net.calls = net.rows = 0
            out = GroupEnsembleInferer(group, mode=mode, max_batch=max_batch)(x, net)
            assert_matches(out, expected, net, msg=f"{name} {spatial} max_batch={max_batch}")
            assert net.rows == batch * group.order  # every copy once
            if max_batch is None:  # one call per spatial shape of the copies
                assert net.calls == len(shapes)
            else:
                assert net.calls >= -(-batch * group.order // max_batch)


@torch.no_grad()
def test_batched_ensemble_through_a_sliding_window_inferer() -> None:
    torch.manual_seed(0)
    net = _Counting(2, 2, classify=False).eval()
    x = torch.randn(2, 2, 20, 20)
    window = SlidingWindowInferer(roi_size=(12, 12), sw_batch_size=3, overlap=0.25, mode="gaussian")
    group = get_group("p4m")
    expected = _sequential_reference(group, lambda t: window(t, net), x, "segmentation")
    for max_batch in (None, 3):
        out = GroupEnsembleInferer(group, inferer=window, max_batch=max_batch)(x, net)
        assert_matches(out, expected, net, msg=f"max_batch={max_batch}")
    window3d = SlidingWindowInferer(roi_size=(4, 4, 4), sw_batch_size=4, overlap=0.25)
    net3d, x3d, oh = _Counting(3, 2, classify=False).eval(), torch.randn(1, 2, 6, 6, 6), get_group("Oh")
    expected = _sequential_reference(oh, lambda t: window3d(t, net3d), x3d, "segmentation")
    assert_matches(GroupEnsembleInferer(oh, inferer=window3d, max_batch=20)(x3d, net3d), expected, net3d)


@pytest.mark.parametrize("name", ["p4m", "D4h", "Oh"])
@torch.no_grad()
def test_ensemble_with_label_permutation_is_equivariant_with_the_swap(name: str) -> None:
    from monai_equivariant.layers.lateral_head import reflections

    group = get_group(name)
    torch.manual_seed(0)
    perm = [0, 2, 1]
    for mode in ("segmentation", "classification"):
        net = _Counting(group.spatial_dims, 3, mode == "classification").eval()
        inferer = GroupEnsembleInferer(name, mode=mode, label_permutation=perm)
        x = torch.randn(2, 2, *((8, 8) if group.spatial_dims == 2 else (4, 4, 4)))
        reference = inferer(x, net)
        assert_matches(reference, _sequential_reference(group, net, x, mode, perm), net)
        for g in range(group.order):
            expected = group.spatial_transform(reference, g) if mode == "segmentation" else reference
            if reflections(group)[g]:
                expected = expected[:, perm]
            assert_matches(inferer(group.spatial_transform(x, g), net), expected, net, msg=f"{name} {mode} g={g}")
        # without the permutation the ensemble is equivariant without the swap, so the two differ
        plain = GroupEnsembleInferer(name, mode=mode)(x, net)
        assert float((plain - reference).abs().max()) > 1e-3


def test_batched_ensemble_and_label_permutation_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupEnsembleInferer("p4", max_batch=0)
    with pytest.raises(TypeError, match="max_batch"):
        GroupEnsembleInferer("p4", max_batch=2.5)
    with pytest.raises(ValueError, match="label_permutation .*no reflections"):
        GroupEnsembleInferer("p4", label_permutation=[0, 2, 1])
    with pytest.raises(ValueError, match="label_permutation must be a permutation"):
        GroupEnsembleInferer("p4m", label_permutation=[0, 1, 1])
    with pytest.raises(ValueError, match="label_permutation must swap classes in pairs"):
        GroupEnsembleInferer("p4m", label_permutation=[1, 2, 0])
    with pytest.raises(TypeError, match="label_permutation"):
        GroupEnsembleInferer("p4m", label_permutation="0,2,1")
    with pytest.raises(ValueError, match="label_permutation has 3 classes but the outputs have 2 channels"):
        GroupEnsembleInferer("p4m", label_permutation=[0, 2, 1])(torch.zeros(1, 2, 8, 8), _Counting(2, 2, False))
    with pytest.raises(ValueError, match="at least one input"):
        GroupEnsembleInferer("p4m")(torch.zeros(0, 2, 8, 8), _Counting(2, 2, False))
    with pytest.raises(ValueError, match="returned 1 outputs for a batch of 8"):
        GroupEnsembleInferer("p4m")(torch.zeros(1, 2, 8, 8), lambda t: t[:1])


def test_label_permutation_in_a_bundle_config() -> None:
    parser = ConfigParser(
        {
            "inferer": {
                "_target_": "monai_equivariant.inferers.GroupEnsembleInferer",
                "group": "p4m",
                "label_permutation": [0, 2, 1],
                "max_batch": 4,
            }
        }
    )
    inferer = parser.get_parsed_content("inferer")
    assert inferer.label_permutation == (0, 2, 1) and inferer.max_batch == 4


def test_ensemble_throughput_benchmark_quick(capsys) -> None:
    """benchmarks/ensemble_throughput.py --quick: every case runs, both candidates give the same outputs."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ensemble_throughput.py"
    spec = importlib.util.spec_from_file_location("_bench_ensemble_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--quick", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    assert len(rows) == 5 and "| UNet p4m b2 16² |" in capsys.readouterr().out
    for row in rows:
        assert row["sequential_img_s"] > 0 and row["batched_img_s"] > 0 and row["ratio"] > 0
        assert row["rel_diff"] < 1e-5  # float round-off: batching changes no output
