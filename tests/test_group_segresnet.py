"""GroupSegResNet: MONAI's SegResNet arguments, exact under p4/p4m (2D) and O (3D); group norm over whole fields."""

import pickle

import pytest
import torch
from helpers import assert_matches
from monai.networks.nets import SegResNet

from monai_equivariant.groups import get_group
from monai_equivariant.layers.norm import GroupGroupNorm
from monai_equivariant.layers.plain import export
from monai_equivariant.networks.factory import segmentation_network
from monai_equivariant.networks.nets import GroupSegResNet
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel, trainable_parameters

SMALL = dict(blocks_down=(1, 1, 1), blocks_up=(1, 1))


def assert_exact(net, x):
    y = net(x)
    for g in range(net.group.order):
        assert_matches(net(net.group.transform(x, g)), net.group.transform(y, g), net,
                       msg=f"{net.group.name} element {g}:")


def test_group_norm_keeps_fields_whole_and_commutes_with_the_group():
    group = get_group("p4m")
    torch.manual_seed(0)
    norm = GroupGroupNorm(6, group.order, num_groups=3)
    torch.nn.init.normal_(norm.norm.weight)
    torch.nn.init.normal_(norm.norm.bias)
    x = torch.randn(2, 6 * group.order, 5, 5)
    y = norm(x)
    for g in range(group.order):
        assert_matches(norm(group.transform(x, g, regular=True)), group.transform(y, g, regular=True), norm)
    plain = norm.to_plain()
    assert isinstance(plain, torch.nn.GroupNorm) and plain.num_groups == 3
    assert_matches(plain(x), y, norm)
    with pytest.raises(ValueError, match="num_groups must be a positive divisor of the number of fields"):
        GroupGroupNorm(6, 4, num_groups=4)


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("upsample_mode", ["nontrainable", "deconv"])
def test_exact_on_every_element_at_two_sizes_2d(group, upsample_mode):
    torch.manual_seed(0)
    net = GroupSegResNet(2, 4, 2, 3, group=group, upsample_mode=upsample_mode, **SMALL).eval()
    assert net.size_multiple == 4
    assert any(isinstance(m, GroupGroupNorm) for m in net.modules())  # MONAI's default ("group", 8) -> gcd(8, 4)
    with torch.no_grad():
        for size in (8, 12):
            x = torch.randn(1, 2, size, size)
            assert net(x).shape == (1, 3, size, size)
            assert_exact(net, x)


def test_exact_in_3d_under_the_cube_group():
    torch.manual_seed(0)
    net = GroupSegResNet(3, 1, 1, 2, group="O", blocks_down=(1, 1), blocks_up=(1,), norm="instance").eval()
    with torch.no_grad():
        for size in (4, 6):
            assert_exact(net, torch.randn(1, 1, size, size, size))


def test_export_torchscript_and_pickle_equal_eager():
    torch.manual_seed(0)
    net = GroupSegResNet(2, 4, 1, 2, group="p4m", dropout_prob=0.1, **SMALL).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3) if p.dim() == 1 else None
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
        assert_matches(export(net)(x), expected, net)
        assert_matches(torch.jit.script(net)(x), expected, net)
        torch.testing.assert_close(pickle.loads(pickle.dumps(net))(x), expected, rtol=0, atol=0)
    with pytest.raises(Exception, match="multiple of 4"):
        torch.jit.script(net)(torch.randn(1, 1, 10, 10))


def test_without_the_final_conv_the_pooled_fields_come_out():
    net = GroupSegResNet(2, 3, 1, 5, use_conv_final=False, **SMALL).eval()
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 3, 8, 8) and net.out_channels == 3


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match="spatial size 12 is not a multiple of 8"):
        GroupSegResNet(2, 2, 1, 1)(torch.randn(1, 1, 12, 12))
    with pytest.raises(ValueError, match="upsample must be one of"):
        GroupSegResNet(2, 2, 1, 1, upsample_mode="pixelshuffle")
    with pytest.raises(ValueError, match=r"blocks_up needs len\(blocks_down\) - 1 = 3"):
        GroupSegResNet(2, 2, 1, 1, blocks_up=(1, 1))
    with pytest.raises(ValueError, match="norm_name must be 'group'"):
        GroupSegResNet(2, 2, 1, 1, norm_name="batch")
    with pytest.raises(ValueError, match="norm"):
        GroupSegResNet(2, 2, 1, 1, norm="layer")
    with pytest.raises(ValueError, match="needs a grid group"):
        GroupSegResNet(2, 2, 1, 1, group="se2_8")
    with pytest.raises(ValueError, match="init_filters must be a positive int"):
        GroupSegResNet(2, 0, 1, 1)


@pytest.mark.parametrize("init_filters", [8, 16])
def test_channels_as_matches_monais_segresnet_within_5_percent(init_filters):
    twin = SegResNet(2, init_filters, 3, 2)
    by_params = GroupSegResNet(2, init_filters, 3, 2, group="p4", channels_as="params")
    assert abs(trainable_parameters(by_params) / trainable_parameters(twin) - 1) < 0.05
    by_flops = GroupSegResNet(2, init_filters, 3, 2, group="p4", channels_as="flops")
    ratio = conv_macs_per_pixel(by_flops, (3, 16, 16)) / conv_macs_per_pixel(twin, (3, 16, 16))
    assert abs(ratio - 1) < 0.05
    assert by_flops.init_filters < by_params.init_filters < init_filters


def test_registry_entry_builds_from_the_bundles_channels():
    net = segmentation_network("segresnet_p4", in_channels=3, out_channels=1, channels=(8, 16, 32, 64, 128),
                               norm="instance")
    assert net.init_filters == 8 and net.group.name == "p4" and net.size_multiple == 8
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
