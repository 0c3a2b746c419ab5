"""matched_channels: the plain (or other-group) net of equal parameters or of equal conv FLOPs."""

from __future__ import annotations

import pytest
import torch

from monai_equivariant.networks.nets import GroupCNN, GroupUNet, count_parameters, matched_channels

from helpers import forward_flops


def test_by_params_is_the_default_and_scales_by_the_square_root_of_the_order_ratio():
    assert matched_channels((8, 16, 32, 64, 128), "p4", "trivial", 2) == (16, 32, 64, 128, 256)
    assert matched_channels((8, 16), "p4", "trivial", 2, by="params") == (16, 32)
    assert matched_channels((16, 32, 64, 128, 256), "trivial", "p4m", 2) == (6, 11, 23, 45, 91)


def test_by_flops_scales_by_the_order_ratio():
    assert matched_channels((8, 16, 32, 64, 128), "p4", "trivial", 2, by="flops") == (32, 64, 128, 256, 512)
    assert matched_channels((32, 64), "trivial", "p4", 2, by="flops") == (8, 16)
    assert matched_channels((4, 8, 16), "O", "trivial", 3, by="flops") == (96, 192, 384)
    assert matched_channels((4, 8), "p4", "p4m", by="flops") == (2, 4)
    assert matched_channels((1,), "trivial", "Oh", 3, by="flops") == (1,)  # never below one channel


def test_unknown_criterion_names_the_choices():
    with pytest.raises(ValueError, match="'params' or 'flops'"):
        matched_channels((8,), "p4", "trivial", 2, by="memory")


@pytest.mark.parametrize("group", ["p4", "p4m", "se2_8"])
def test_flops_matched_plain_unet_has_the_group_unets_flops(group):
    fields = (4, 8, 16)
    net = GroupUNet(2, 3, 1, fields, group=group)
    plain = GroupUNet(2, 3, 1, matched_channels(fields, group, "trivial", 2, by="flops"), group="trivial")
    x = torch.randn(1, 3, 16, 16)
    flops, plain_flops = forward_flops(net, x), forward_flops(plain, x)
    assert plain_flops == pytest.approx(flops, rel=0.02)
    # ... while the parameter-matched plain net has about |G|× fewer FLOPs
    params_plain = GroupUNet(2, 3, 1, matched_channels(fields, group, "trivial", 2), group="trivial")
    order = net.group.order
    assert forward_flops(params_plain, x) == pytest.approx(flops / order, rel=0.15)
    assert count_parameters(params_plain) == pytest.approx(count_parameters(net), rel=0.05)


def test_flops_matched_plain_3d_classifier_has_the_o_classifiers_flops():
    fields = (2, 4)
    net = GroupCNN(3, 1, 2, fields, group="O")
    plain = GroupCNN(3, 1, 2, matched_channels(fields, "O", "trivial", 3, by="flops"), group="trivial")
    x = torch.randn(1, 1, 4, 4, 4)
    assert forward_flops(plain, x) == pytest.approx(forward_flops(net, x), rel=0.02)
