"""GroupBasicUNet: MONAI's BasicUNet arguments, exact under p4/p4m (2D) and O (3D) on sides multiples of 16."""

import pickle

import pytest
import torch
from helpers import assert_matches
from monai.networks.nets import BasicUNet

from monai_equivariant.layers import GroupConvTranspose
from monai_equivariant.layers.plain import export
from monai_equivariant.networks.factory import segmentation_network
from monai_equivariant.networks.nets import GroupBasicUNet
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel, trainable_parameters

FEATURES = (2, 2, 3, 3, 4, 2)


def assert_exact(net, x):
    """net(g·x) == g·net(x) for every element, to float32 round-off relative to the output's max."""
    y = net(x)
    for g in range(net.group.order):
        assert_matches(net(net.group.transform(x, g)), net.group.transform(y, g), net,
                       msg=f"{net.group.name} element {g}:")


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("upsample", ["deconv", "nontrainable"])
def test_exact_on_every_element_at_two_sizes_2d(group, upsample):
    torch.manual_seed(0)
    net = GroupBasicUNet(2, 2, 3, FEATURES, group=group, upsample=upsample).eval()
    assert net.size_multiple == 16
    with torch.no_grad():
        for size in (16, 32):
            x = torch.randn(1, 2, size, size)
            assert net(x).shape == (1, 3, size, size)
            assert_exact(net, x)


def test_exact_in_3d_under_the_cube_group():
    torch.manual_seed(0)
    net = GroupBasicUNet(3, 1, 2, (1, 1, 1, 1, 1, 1), group="O", norm="batch").eval()
    assert isinstance(net.decoder[0].upsample, GroupConvTranspose)
    with torch.no_grad():
        assert_exact(net, torch.randn(1, 1, 16, 16, 16))


def test_export_torchscript_and_pickle_equal_eager():
    torch.manual_seed(0)
    net = GroupBasicUNet(2, 1, 2, FEATURES, group="p4m").eval()
    for p in net.parameters():  # affine parameters off their initial zeros / ones
        torch.nn.init.normal_(p, std=0.3) if p.dim() == 1 else None
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        expected = net(x)
        assert_matches(export(net)(x), expected, net)
        assert_matches(torch.jit.script(net)(x), expected, net)
        torch.testing.assert_close(pickle.loads(pickle.dumps(net))(x), expected, rtol=0, atol=0)
    with pytest.raises(Exception, match="multiple of 16"):  # the exported script keeps the size check
        torch.jit.script(net)(torch.randn(1, 1, 24, 24))


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match="spatial size 24 is not a multiple of 16"):
        GroupBasicUNet(2, 1, 1, FEATURES)(torch.randn(1, 1, 24, 24))
    with pytest.raises(ValueError, match=r"upsample must be one of \('deconv', 'nontrainable'\).*pixelshuffle"):
        GroupBasicUNet(2, 1, 1, FEATURES, upsample="pixelshuffle")
    with pytest.raises(ValueError, match="features must be six positive ints"):
        GroupBasicUNet(2, 1, 1, (2, 2, 3, 3, 4))
    with pytest.raises(ValueError, match="needs a grid group"):
        GroupBasicUNet(2, 1, 1, FEATURES, group="se2_8")
    with pytest.raises(ValueError, match="norm"):
        GroupBasicUNet(2, 1, 1, FEATURES, norm=("group", {"num_groups": 2}))
    with pytest.raises(ValueError, match="channels_as must be one of"):
        GroupBasicUNet(2, 1, 1, FEATURES, channels_as="widths")


@pytest.mark.parametrize("upsample", ["deconv", "nontrainable"])
def test_channels_as_matches_monais_basic_unet_within_5_percent(upsample):
    features = (16, 16, 32, 64, 128, 16)
    twin = BasicUNet(2, 3, 2, features, upsample=upsample)
    by_params = GroupBasicUNet(2, 3, 2, features, upsample=upsample, channels_as="params")
    assert abs(trainable_parameters(by_params) / trainable_parameters(twin) - 1) < 0.05
    by_flops = GroupBasicUNet(2, 3, 2, features, upsample=upsample, channels_as="flops")
    ratio = conv_macs_per_pixel(by_flops, (3, 32, 32)) / conv_macs_per_pixel(twin, (3, 32, 32))
    assert abs(ratio - 1) < 0.05
    assert by_flops.features[0] < by_params.features[0] < features[0]


def test_registry_entry_builds_from_the_bundles_channels():
    net = segmentation_network("basicunet_p4", in_channels=3, out_channels=1, channels=(8, 16, 32, 64, 128))
    assert net.features == (8, 16, 32, 64, 128, 8) and net.group.name == "p4" and net.size_multiple == 16
    assert segmentation_network("basicunet_p4", channels=(2, 4)).features == (2, 4, 8, 16, 32, 2)
