"""MONAI UNet's arguments on every net: explicit signatures, num_res_units, kernel sizes, MONAI norm/act/dropout
specs (group norms in MONAI's Norm factory), one argument order."""

import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.bundle import ConfigParser
from monai.networks.layers.factories import Act, Norm
from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets import UNet

from monai_equivariant.layers import GroupBatchNorm, GroupConv, GroupInstanceNorm, LiftingConv
from monai_equivariant.networks.blocks import GroupConvBlock, GroupDoubleConv, GroupResidualBlock, GroupResidualUnit
from monai_equivariant.networks.nets import (
    SE2CNN,
    GroupCNN,
    GroupUNet,
    P4MUNet,
    P4UNet,
    SE2UNet,
    SteerableUNet,
)
from monai_equivariant.utils import assert_equivariant

from helpers import trained_briefly

UNET_ARGS = ["strides", "kernel_size", "up_kernel_size", "num_res_units", "act", "norm", "dropout", "bias"]


@pytest.mark.parametrize("net", [GroupUNet, P4UNet, P4MUNet, SE2UNet, SteerableUNet, GroupCNN, SE2CNN])
def test_signatures_are_explicit(net):
    params = inspect.signature(net).parameters
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values()), net
    expected = UNET_ARGS if issubclass(net, GroupUNet) else [a for a in UNET_ARGS if a in ("strides", "kernel_size",
                                                                                            "act", "norm", "dropout",
                                                                                            "bias")]
    assert set(expected) <= set(params), set(expected) - set(params)


@pytest.mark.parametrize("net", [P4UNet, P4MUNet])
def test_p4_unets_take_monai_unet_positional_order(net):
    monai_order = list(inspect.signature(UNet).parameters)[:13]  # spatial_dims ... bias, adn_ordering
    ours = list(inspect.signature(net).parameters)
    # MONAI's order, then own options
    assert ours[:13] == monai_order and ours[13:] == ["route", "channels_as", "separable", "label_permutation"]
    unet = net(2, 1, 1, (2, 3), (2,), 3, 3, 1, "relu", "instance", 0.0, True)
    assert unet.num_res_units == 1 and unet.strides == (2,)


def test_num_res_units_and_kernel_sequence_exact_at_90_degrees():
    net = GroupUNet(2, 2, 1, (2, 3), group="p4", num_res_units=2, kernel_size=(3, 3), up_kernel_size=[5, 5])
    units = [m for m in net.modules() if isinstance(m, GroupResidualUnit)]
    assert len(units) == 3 and all(len(u.conv) == 2 for u in units)  # 2 encoder levels, 1 decoder level
    assert isinstance(units[0].residual, LiftingConv) and isinstance(units[1].residual, GroupConv)
    assert net.decoder[0].block.conv[0][0].kernel_size == 5
    net = trained_briefly(net, (8, 8))
    errors = assert_equivariant(net, "p4", torch.randn(2, 2, 12, 12))
    assert len(errors) == 4


def test_p4m_residual_unet_exact_and_3d_residual_unet_exact():
    p4m = trained_briefly(P4MUNet(2, 1, 2, (2, 2), num_res_units=1, norm="instance"), (8, 8))
    assert_equivariant(p4m, "p4m", torch.randn(1, 1, 8, 8))
    cube = GroupUNet(3, 1, 1, (1, 2), group="O", num_res_units=1, kernel_size=(3, 3, 3)).eval()
    assert_equivariant(cube, "O", torch.randn(1, 1, 4, 4, 4), elements=[1, 9, 17, 23])


def test_se2cnn_takes_channels_before_num_rotations():
    net = SE2CNN(2, 3, 2, (8, 16, 32))
    assert net.channels == (8, 16, 32) and net.num_rotations == 8
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    assert SE2CNN(2, 1, 2, (2, 2), 4).num_rotations == 4
    with pytest.raises(TypeError, match="look swapped"):
        SE2CNN(2, 3, 2, 8, (8, 16))
    assert SE2CNN(2, 3, 2, num_rotations=4, channels=(2, 2)).channels == (2, 2)  # keywords still work


def test_group_cnn_default_group_follows_spatial_dims():
    net2d = GroupCNN(2, 1, 2)
    assert net2d.group.name == "p4" and net2d.spatial_dims == 2
    assert net2d(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    assert GroupCNN(3, 1, 2, (1, 1)).group.name == "O"


def test_steerable_unet_strides():
    net = SteerableUNet(2, 1, 1, (2, 2), num_rotations=4, strides=(3,), kernel_size=(3, 3)).eval()
    assert net.size_multiple == 3 and net.strides == (3,)
    assert_equivariant(net, "p4", torch.randn(1, 1, 12, 12))
    with pytest.raises(ValueError, match="multiple of 3"):
        net(torch.randn(1, 1, 8, 8))


def _norms(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (GroupBatchNorm, GroupInstanceNorm))]


@pytest.mark.parametrize("norm,cls,check", [
    ("batch", GroupBatchNorm, lambda m: m.norm.momentum == 0.1),
    ("INSTANCE", GroupInstanceNorm, lambda m: not m.norm.affine),
    (Norm.BATCH, GroupBatchNorm, lambda m: True),
    (("batch", {"momentum": 0.3, "eps": 1e-3}), GroupBatchNorm, lambda m: m.norm.momentum == 0.3 and m.norm.eps == 1e-3),
    (["instance", {"affine": True}], GroupInstanceNorm, lambda m: m.norm.affine),  # JSON configs give lists
    (("groupbatch", {"momentum": 0.2}), GroupBatchNorm, lambda m: m.norm.momentum == 0.2),
    ("groupinstance", GroupInstanceNorm, lambda m: True),
    ((GroupBatchNorm, {"momentum": 0.4}), GroupBatchNorm, lambda m: m.norm.momentum == 0.4),
])
def test_norm_specs_in_monai_forms(norm, cls, check):
    for net in (P4UNet(2, 1, 1, (2, 2), norm=norm), GroupCNN(2, 1, 2, (2,), norm=norm)):
        norms = _norms(net)
        assert norms and all(isinstance(m, cls) and check(m) for m in norms), norms
        assert {m.group_size for m in norms} == {4}
    assert not _norms(P4UNet(2, 1, 1, (2, 2), norm=None))


@pytest.mark.parametrize("norm", ["layer", ("group", {"num_groups": 2}), "syncbatch", "nonsense", 3])
def test_non_equivariant_norms_refused(norm):
    with pytest.raises(ValueError, match="norm"):
        P4UNet(2, 1, 1, (2, 2), norm=norm)


def test_group_norms_registered_in_monai_factory_without_shadowing():
    layer = get_norm_layer(("groupbatch", {"group_size": 4}), spatial_dims=2, channels=32)
    assert isinstance(layer, GroupBatchNorm) and layer.num_fields == 8 and layer.spatial_dims == 2
    layer = get_norm_layer(("groupinstance", {"group_size": 24, "affine": True}), spatial_dims=3, channels=48)
    assert isinstance(layer, GroupInstanceNorm) and layer.num_fields == 2
    assert Norm["batch", 2] is nn.BatchNorm2d and Norm["instance", 3] is nn.InstanceNorm3d
    with pytest.raises(ValueError, match="multiple of group_size"):
        get_norm_layer(("groupbatch", {"group_size": 4}), spatial_dims=2, channels=30)


def test_act_and_dropout_specs():
    net = P4UNet(2, 1, 1, (2, 2), act=("leakyrelu", {"negative_slope": 0.2}), dropout=("alphadropout", {"p": 0.1}))
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(m.negative_slope == 0.2 for m in acts)
    assert any(isinstance(m, nn.AlphaDropout) for m in net.modules())
    net = GroupCNN(2, 1, 2, (2,), act=Act.PRELU, dropout=0.25)
    assert any(isinstance(m, nn.PReLU) for m in net.modules())
    assert {m.p for m in net.modules() if isinstance(m, nn.Dropout)} == {0.25}
    assert not any(isinstance(m, nn.ReLU) for m in P4UNet(2, 1, 1, (2, 2), act=None).modules())
    with pytest.raises(ValueError, match="per-channel"):
        P4UNet(2, 1, 1, (2, 2), act=("prelu", {"num_parameters": 8}))
    with pytest.raises(ValueError, match="dropout"):
        P4UNet(2, 1, 1, (2, 2), dropout=1.5)


@pytest.mark.parametrize("build", [
    lambda k: GroupUNet(2, 1, 1, (2, 2), kernel_size=k),
    lambda k: P4UNet(2, 1, 1, (2, 2), up_kernel_size=k),
    lambda k: GroupCNN(2, 1, 2, (2,), kernel_size=k),
    lambda k: SE2CNN(2, 1, 2, (2,), kernel_size=k),
    lambda k: GroupConvBlock(1, 2, "p4", kernel_size=k),
    lambda k: GroupResidualBlock(2, 2, "p4", kernel_size=k),
])
def test_kernel_size_forms(build):
    for good in (3, (3, 3), [5, 5], np.int64(3), (np.int64(3), 3)):
        build(good)
    for bad, message in [
        (3.5, "not all integers"), (3.0, "not all integers"), ("3", "not all integers"), (True, "not all integers"),
        ((3, 3.5), "not all integers"), ((3, 5), "sides must be equal"), ((3,), "1 entries"),
        ((3, 3, 3), "3 entries"), (4, "side must be odd"), (0, "side must be odd"), ((2, 2), "side must be odd"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            build(bad)
        # every refusal names what is expected
        assert "kernel_size must be an odd int or a sequence of 2 equal odd ints (e.g. 3 or (3, 3))" in str(error.value)


def test_steerable_kernel_size_forms():
    assert SteerableUNet(2, 1, 1, (1, 1), num_rotations=4, kernel_size=(5, 5)).kernel_size == 5
    with pytest.raises(ValueError, match="integers"):
        SteerableUNet(2, 1, 1, (1, 1), num_rotations=4, kernel_size=3.5)


def test_blocks_take_in_out_group_like_layers():
    block = GroupConvBlock(2, 3, "p4")
    assert isinstance(block[0], GroupConv) and block[0].in_channels == 2 and block[0].out_channels == 3
    assert GroupDoubleConv(1, 2, "p4", lifting=True)[0][0].in_channels == 1
    assert isinstance(GroupResidualBlock(2, 3, "O").shortcut[0], GroupConv)
    for cls in (GroupConvBlock, GroupDoubleConv, GroupResidualBlock, GroupResidualUnit):
        with pytest.raises(TypeError, match=r"\(in_channels, out_channels, group"):
            cls("p4", 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = GroupConvBlock(group="p4", in_fields=2, out_fields=3)  # pre-0.1 keywords still work
    assert old[0].out_channels == 3 and any("in_fields" in str(w.message) for w in caught)


def test_bundle_config_with_monai_specs():
    parser = ConfigParser({
        "imports": ["$import monai_equivariant"],
        "network_def": {
            "_target_": "monai_equivariant.networks.nets.P4UNet", "spatial_dims": 2, "in_channels": 1,
            "out_channels": 1, "channels": [2, 2], "strides": [2], "kernel_size": [3, 3], "num_res_units": 2,
            "norm": ["batch", {"momentum": 0.05}], "act": ["leakyrelu", {"negative_slope": 0.1}], "dropout": 0.1,
        },
    })
    net = parser.get_parsed_content("network_def")
    assert net.num_res_units == 2 and {m.norm.momentum for m in _norms(net)} == {0.05}
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)


def test_num_res_units_refused_clearly():
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_res_units"):
            P4UNet(2, 1, 1, (2, 2), num_res_units=bad)


@pytest.mark.parametrize("net", [GroupUNet, P4UNet, P4MUNet, SE2UNet, SteerableUNet, GroupCNN, SE2CNN])
def test_docstrings_state_differences_from_monai_unet(net):
    doc = " ".join(inspect.getdoc(net).split())  # one line: phrases may wrap
    assert "monai.networks.nets." in doc
    assert "ReLU + batch norm" in doc and "PReLU + instance norm" in doc
    assert "max-pool" in doc and "strided" in doc
    if issubclass(net, (GroupUNet, SteerableUNet)):
        assert "``monai.networks.nets.UNet``" in doc and "transposed conv" in doc and "linear" in doc
    assert "``channels`` counts *fields*" in doc


@pytest.mark.parametrize("net", [P4UNet, P4MUNet, SE2UNet])
def test_inspect_signature_shows_unet_arguments(net):
    params = inspect.signature(net).parameters
    for name in ("strides", "act", "norm", "dropout"):
        assert params[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, (net, name)
    assert params["act"].default == "RELU" and params["norm"].default == "batch"
