"""GroupResNet: MONAI's ResNet arguments, logits invariant to every group element, export, pickling, sizes."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from monai.networks.nets import ResNet

from monai_equivariant.networks.nets import GroupResNet, count_parameters, group_resnet10, group_resnet34
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel
from monai_equivariant.utils import export

from helpers import assert_compiled_trains_then_validates, assert_matches, trained_briefly


def small_2d(**kwargs) -> GroupResNet:
    args = dict(block="basic", layers=(1, 1, 1, 1), block_inplanes=(2, 2, 3, 4), spatial_dims=2, n_input_channels=2,
                num_classes=3, conv1_t_size=3)
    return GroupResNet(**{**args, **kwargs})


def assert_invariant(net: torch.nn.Module, x: torch.Tensor) -> None:
    """f(g·x) == f(x) for every element g of the net's group, within float32 round-off of max |f(x)|."""
    group = net.group
    with torch.no_grad():
        y = net(x)
        for g in range(group.order):
            assert_matches(net(group.transform(x, g)), y, net, msg=f"element {g}")


@pytest.mark.parametrize("kwargs", [
    {},
    dict(block="bottleneck", shortcut_type="A", group="p4m", no_max_pool=True),
    dict(conv1_t_stride=2, norm="instance", act="relu"),
])
def test_2d_logits_invariant_on_every_element_at_two_sizes(kwargs):
    block = kwargs.pop("block", "basic")
    net = GroupResNet(block, (1, 2, 1, 1), (2, 2, 3, 4), spatial_dims=2, n_input_channels=2, num_classes=3,
                      conv1_t_size=3, **kwargs)
    side = net.size_multiple
    net = trained_briefly(net, (side, side))
    for size in ((side, side), (2 * side, 3 * side)):
        assert_invariant(net, torch.randn(2, 2, *size))


def test_3d_o_logits_invariant_on_every_element_at_two_sizes():
    net = GroupResNet("basic", (1, 1, 1, 1), (1, 1, 2, 2), spatial_dims=3, n_input_channels=1, num_classes=2,
                      conv1_t_size=3, no_max_pool=True)
    assert net.group.name == "O" and net.size_multiple == 8
    net = trained_briefly(net, (8, 8, 8))
    for size in ((8, 8, 8), (16, 8, 8)):
        assert_invariant(net, torch.randn(1, 1, *size))


def test_export_and_torchscript_equal_eager():
    net = trained_briefly(small_2d(block="bottleneck", shortcut_type="A"), (16, 16))
    x = torch.randn(2, 2, 32, 16)
    expected = net(x)
    plain = export(net)
    assert not any(type(m).__module__.startswith("monai_equivariant.layers") for m in plain.modules())
    assert_matches(plain(x), expected, net)
    scripted = torch.jit.script(net)
    assert_matches(scripted(x), expected, net)
    with pytest.raises(Exception, match="multiple of 16"):
        scripted(torch.randn(1, 2, 24, 24))  # the size check is exported too


def test_pickles_and_saves():
    net = small_2d(shortcut_type="B").eval()
    x = torch.randn(1, 2, 16, 16)
    torch.testing.assert_close(pickle.loads(pickle.dumps(net))(x), net(x), rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), net(x), rtol=0, atol=0)
    assert set(net.state_dict()) == set(net.train().state_dict())  # keys independent of the mode


def test_refuses_inadmissible_sizes_and_arguments_by_name():
    net = small_2d()
    assert net.size_multiple == 16
    with pytest.raises(ValueError, match="spatial size 24 is not a multiple of 16"):
        net(torch.randn(1, 2, 24, 32))
    assert small_2d(no_max_pool=True, conv1_t_stride=3).size_multiple == 24
    for bad, match in [
        (dict(layers=(1, 1, 1)), "layers must be 4 ints"),
        (dict(block_inplanes=(2, 2, 0, 4)), "block_inplanes must be 4 ints"),
        (dict(shortcut_type="C"), "shortcut_type must be 'A' or 'B'"),
        (dict(conv1_t_size=4), "conv1_t_size"),
        (dict(conv1_t_size=(3, 5)), "conv1_t_size"),
        (dict(conv1_t_stride=(1, 2)), "conv1_t_stride must be a positive int or 2 equal ones"),
        (dict(block="wide"), "block must be 'basic' or 'bottleneck'"),
        (dict(channels_as="param"), "channels_as must be one of"),
    ]:
        args = dict(block="basic", layers=(1, 1, 1, 1), block_inplanes=(2, 2, 3, 4), spatial_dims=2,
                    n_input_channels=2, num_classes=3, conv1_t_size=3)
        with pytest.raises(ValueError, match=match):
            GroupResNet(**{**args, **bad})


def test_constructors_follow_monais_layouts_and_monais_arguments():
    net = group_resnet34(spatial_dims=2, n_input_channels=1, num_classes=2, block_inplanes=(1, 1, 2, 2))
    assert [len(stage) - (i > 0) for i, stage in enumerate(net.stages)] == [3, 4, 6, 3]  # blocks (after a pool)
    assert net.group.name == "p4" and net.fc.out_features == 2
    assert group_resnet10(spatial_dims=3, n_input_channels=1, block_inplanes=(1, 1, 1, 1)).group.name == "O"
    assert GroupResNet("basic", [1, 1, 1, 1], [2, 4, 4, 4], spatial_dims=2, widen_factor=1.5).block_inplanes == (
        3, 6, 6, 6)
    features = small_2d(feed_forward=False)
    assert features(torch.randn(2, 2, 16, 16)).shape == (2, 4)


@pytest.mark.parametrize("by", ["params", "flops"])
def test_channels_as_matches_monais_resnet(by):
    args = dict(spatial_dims=2, n_input_channels=1, num_classes=2)
    plain = ResNet("basic", [1, 1, 1, 1], [16, 32, 64, 128], **args)
    net = GroupResNet("basic", (1, 1, 1, 1), (16, 32, 64, 128), channels_as=by, **args)
    if by == "params":
        assert count_parameters(net) == pytest.approx(count_parameters(plain), rel=0.05)
    else:
        assert conv_macs_per_pixel(net, (1, 32, 32)) == pytest.approx(conv_macs_per_pixel(plain, (1, 32, 32)), rel=0.05)


def test_resnet_entries_build_through_the_factory():
    from monai_equivariant.networks import registry
    from monai_equivariant.networks.factory import classification_network

    entries = [entry for entry in registry.resnet_entries() if entry.spatial_dims == 3]  # 2D: registered
    try:
        for entry in entries:
            registry.register(entry)
        net = classification_network("resnet_p4", spatial_dims=2, in_channels=1, out_channels=2, channels=(2, 4))
        assert isinstance(net, GroupResNet) and net.block_inplanes == (2, 4, 8, 16)
        assert net.size_multiple == 8  # MONAI's no_max_pool stem: the histopathology bundle's 8·n sizes fit
        assert classification_network("resnet_O", spatial_dims=3, in_channels=1, channels=(1,)).group.name == "O"
        plain = classification_network("resnet", spatial_dims=2, in_channels=1, channels=(2, 4))
        assert isinstance(plain, ResNet)
        assert count_parameters(plain) == pytest.approx(count_parameters(net), rel=0.25)  # sqrt(|G|) rule
    finally:
        for entry in entries:
            registry.NETWORKS.pop((entry.task, entry.spatial_dims, entry.name), None)


@pytest.mark.slow  # about 12 s on 2 shared cores (dynamo + AOT autograd)
def test_torch_compile_one_graph_train_then_eval():
    torch._dynamo.reset()
    net = small_2d(shortcut_type="A").double()
    assert_compiled_trains_then_validates(net, torch.randn(2, 2, 16, 16, dtype=torch.float64))


def test_the_histopathology_bundle_offers_the_resnets_and_refuses_sizes_they_do_not_take():
    from monai_equivariant.bundle.overrides import BUNDLE_SPECS, check_network_input
    from monai_equivariant.networks.factory import classification_network

    assert {"resnet_p4", "resnet"} <= set(BUNDLE_SPECS["histopathology_classification"].network_names)
    assert not {"resnet_O", "resnet"} & set(BUNDLE_SPECS["nodule_classification"].network_names)  # 4·n, 28³ inputs
    net = classification_network("resnet_p4", spatial_dims=2, in_channels=3, out_channels=2, channels=(8, 16, 32))
    for size in (8, 32, 96):
        assert check_network_input(net, "histopathology_classification", size, norm="batch") == size
    with pytest.raises(ValueError, match=r"--image_size 12 is not a multiple of 8.*use a multiple of 8"):
        check_network_input(net, "histopathology_classification", 12, norm="batch")
