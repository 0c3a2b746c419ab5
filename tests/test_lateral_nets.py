"""label_permutation on the segmentation nets: the head permutes lateral labels under reflections, so
f(g·x) = P_g g·f(x) exactly on every element (p4m, D4h), through export too."""

import pickle

import pytest
import torch
from helpers import assert_matches

from monai_equivariant.layers import LateralGroupHead
from monai_equivariant.layers.lateral_head import element_label_permutation
from monai_equivariant.layers.plain import export
from monai_equivariant.networks.nets import GroupBasicUNet, GroupDynUNet, GroupSegResNet, GroupUNet, P4MUNet, P4UNet

PERM = [0, 2, 1]  # background, left, right


def permuted_transform(net, y, g, channel_axis=1):
    """P_g g·y: the group element acting on the output's pixels, the label permutation on its channels."""
    group = net.group
    folded = y.flatten(0, channel_axis - 1) if channel_axis > 1 else y
    moved = group.transform(folded, g).reshape(y.shape)
    perm = element_label_permutation(PERM, group, g)
    return moved if perm is None else moved.index_select(channel_axis, torch.tensor(perm))


def assert_lateral_exact(net, x, channel_axis=1):
    y = net(x)
    for g in range(net.group.order):
        assert_matches(net(net.group.transform(x, g)), permuted_transform(net, y, g, channel_axis), net,
                       msg=f"{net.group.name} element {g}:")
    return y


NETS_2D = {
    "unet": (lambda: GroupUNet(2, 1, 3, (2, 3), group="p4m", label_permutation=PERM), (8, 12)),
    "p4munet": (lambda: P4MUNet(2, 1, 3, (2, 3), num_res_units=1, label_permutation=PERM), (8, 12)),
    "dynunet": (lambda: GroupDynUNet(2, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], filters=(2, 2, 3), group="p4m",
                                     label_permutation=PERM), (9, 13)),
    "basicunet": (lambda: GroupBasicUNet(2, 1, 3, (1, 1, 2, 2, 2, 1), group="p4m", label_permutation=PERM),
                  (16, 32)),
    "segresnet": (lambda: GroupSegResNet(2, 2, 1, 3, blocks_down=(1, 1), blocks_up=(1,), group="p4m",
                                         label_permutation=PERM), (4, 6)),
}


@pytest.mark.parametrize("name", list(NETS_2D))
def test_lateral_head_exact_on_every_element_of_p4m_at_two_sizes_and_through_export(name):
    make, sizes = NETS_2D[name]
    torch.manual_seed(0)
    net = make().eval()
    assert isinstance(net.head, LateralGroupHead) and net.label_permutation == PERM
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(1, 1, size, size)
            y = assert_lateral_exact(net, x)
            assert_matches(export(net)(x), y, net)
        assert_matches(torch.jit.script(net)(x), y, net)
        torch.testing.assert_close(pickle.loads(pickle.dumps(net))(x), y, rtol=0, atol=0)
    reflection = int(torch.nonzero(torch.tensor(
        [element_label_permutation(PERM, net.group, g) is not None for g in range(net.group.order)]))[0])
    with torch.no_grad():  # the swap is real: without it a reflection would not commute
        flipped = net(net.group.transform(x, reflection))
        assert (flipped - net.group.transform(y, reflection)).abs().max() > 1e-3 * y.abs().max()


def test_dynunet_on_the_anisotropic_plan_with_deep_supervision_heads_exact_under_d4h():
    torch.manual_seed(0)
    net = GroupDynUNet(3, 1, 3, [[1, 3, 3], [1, 3, 3], 3], [1, [1, 2, 2], 2], [[1, 2, 2], 2], filters=(1, 2, 2),
                       deep_supervision=True, deep_supr_num=1, label_permutation=PERM)
    assert net.group.name == "D4h" and all(isinstance(h, LateralGroupHead) for h in
                                           [net.head] + [s[1] for s in net.deep_supervision_heads])
    with torch.no_grad():
        for size in ((3, 5, 5), (5, 9, 9)):
            x = torch.randn(1, 1, *size)
            assert_lateral_exact(net.train(), x, channel_axis=2)  # (B, 1 + deep_supr_num, C, *spatial)
            y = assert_lateral_exact(net.eval(), x)
            assert_matches(export(net)(x), y, net)


def test_group_unet_3d_d4h_exact_at_two_sizes():
    torch.manual_seed(0)
    net = GroupUNet(3, 1, 3, (1, 2), group="D4h", norm="instance", label_permutation=PERM).eval()
    with torch.no_grad():
        for size in ((2, 4, 4), (4, 6, 6)):
            assert_lateral_exact(net, torch.randn(1, 1, *size))


def test_label_permutation_refusals_name_it():
    with pytest.raises(ValueError, match="label_permutation is given but group 'p4' has no reflections"):
        P4UNet(2, 1, 3, (2, 3), label_permutation=PERM)
    with pytest.raises(ValueError, match="label_permutation has 3 entries but out_channels=2"):
        GroupBasicUNet(2, 1, 2, (1, 1, 1, 1, 1, 1), group="p4m", label_permutation=PERM)
    with pytest.raises(ValueError, match="label_permutation must swap classes in pairs"):
        GroupDynUNet(2, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], group="p4m", label_permutation=[1, 2, 0])
    with pytest.raises(ValueError, match="label_permutation needs use_conv_final=True"):
        GroupSegResNet(2, 2, 1, 3, group="p4m", use_conv_final=False, label_permutation=PERM)
