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
