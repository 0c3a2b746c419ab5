"""channels_as: a swap for MONAI's UNet keeps its cost (parameters or conv multiply-adds); per-axis strides with the
group checked against them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from monai_equivariant.groups import Group
from monai_equivariant.networks.nets import SE2CNN, GroupCNN, GroupUNet, P4MUNet, P4UNet, SE2UNet, count_parameters
from monai_equivariant.networks.nets.channel_budget import conv_macs_per_pixel, solve_fields

from helpers import assert_matches, forward_flops, trained_briefly

SWAP = dict(spatial_dims=2, in_channels=3, out_channels=1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
            num_res_units=2)
ISSUE_UNET_PARAMETERS = 1_624_844  # issue 21: MONAI's UNet with SWAP's arguments



def axis_flips(spatial_dims: int) -> Group:
    """The 2^d axis flips diag(±1, ...): the group that fits any per-axis strides."""
    signs = itertools.product((1, -1), repeat=spatial_dims)
    return Group(f"axis_flips_{spatial_dims}d", np.stack([np.diag(s) for s in signs]))


def assert_exact(net: torch.nn.Module, group: Group, x: torch.Tensor) -> None:
    """f(g·x) == g·f(x) for every element g (plain output), within float32 round-off of the output's max."""
    with torch.no_grad():
        y = net(x)
        for g in range(group.order):
            assert_matches(net(group.transform(x, g)), group.transform(y, g), net, msg=f"element {g}")


@pytest.mark.parametrize("net", [P4UNet, P4MUNet])
def test_swap_by_params_has_the_plain_unets_parameters(net):
    unet = count_parameters(UNet(**SWAP))
    assert count_parameters(net(**SWAP)) > 4 * unet  # read as fields (the default): |G|·... wider
    matched = net(**SWAP, channels_as="params")
    assert matched.channels_as == "params" and len(matched.channels) == 5
    assert count_parameters(matched) == pytest.approx(unet, rel=0.05)
    assert count_parameters(matched) == pytest.approx(ISSUE_UNET_PARAMETERS, rel=0.05)


@pytest.mark.parametrize("net", [P4UNet, P4MUNet])
def test_swap_by_flops_has_the_plain_unets_flops(net):
    x = torch.randn(1, 3, 32, 32)
    unet = forward_flops(UNet(**SWAP), x)
    matched = net(**SWAP, channels_as="flops")
    assert forward_flops(matched, x) == pytest.approx(unet, rel=0.05)
    # the package's counter (multiply-adds per pixel) agrees with torch's (2 FLOPs per multiply-add)
    assert conv_macs_per_pixel(matched, (3, 32, 32)) * 2 * 32 * 32 == pytest.approx(forward_flops(matched, x), rel=1e-6)


@pytest.mark.parametrize("group,dims", [("O", 3), ("p4m", 2)])
def test_group_cnn_by_params_matches_its_plain_twin(group, dims):
    plain = count_parameters(GroupCNN(dims, 1, 2, (8, 16, 32), group="trivial"))
    net = GroupCNN(dims, 1, 2, (8, 16, 32), group=group, channels_as="params")
    assert count_parameters(net) == pytest.approx(plain, rel=0.05)
    se2 = SE2CNN(2, 3, 2, (16, 32, 64), channels_as="params")
    assert count_parameters(se2) == pytest.approx(
        count_parameters(GroupCNN(2, 3, 2, (16, 32, 64), group="trivial", kernel_size=5)), rel=0.05
    )


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_group_cnn_by_flops_matches_its_plain_twin(group):
    x = torch.randn(1, 1, 16, 16)
    plain = forward_flops(GroupCNN(2, 1, 2, (16, 32, 64), group="trivial"), x)
    net = GroupCNN(2, 1, 2, (16, 32, 64), group=group, channels_as="flops")
    assert forward_flops(net, x) == pytest.approx(plain, rel=0.05)


def test_default_reads_fields_and_the_solver_leaves_the_rng_alone():
    torch.manual_seed(0)
    default = P4UNet(2, 1, 1, (4, 8, 16))
    torch.manual_seed(0)
    explicit = P4UNet(2, 1, 1, (4, 8, 16), channels_as="fields")
    assert default.channels == (4, 8, 16) and default.channels_as == "fields"
    x = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(default.eval()(x), explicit.eval()(x), rtol=0, atol=0)
    # building the candidates does not move the seed: the matched net has the weights of its fields given directly
    torch.manual_seed(1)
    matched = P4UNet(2, 1, 1, (16, 32, 64), num_res_units=1, channels_as="params")
    torch.manual_seed(1)
    direct = P4UNet(2, 1, 1, matched.channels, num_res_units=1)
    for (name, a), (_, b) in zip(matched.state_dict().items(), direct.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_solver_picks_the_closest_count():
    channels = (16, 32, 64)
    cost = lambda f: sum(c * c for c in f) + 10 * f[0]  # noqa: E731  (a quadratic cost like a net's)
    target = 1_000
    fields = solve_fields(channels, cost, target, 0.5)
    neighbours = [fields[:i] + (f + d,) + fields[i + 1:] for i, f in enumerate(fields) for d in (-1, 1)]
    assert all(abs(cost(fields) - target) <= abs(cost(n) - target) for n in neighbours)
    assert abs(cost(fields) - target) <= 0.05 * target


def test_unreachable_budget_warns_and_bad_reading_is_refused():
    with pytest.warns(UserWarning, match="closest fields"):
        SE2UNet(2, 3, 1, (16, 32, 64, 128, 256), channels_as="flops")  # 12 orientations: over budget at 1 field
    for bad in ("param", None, 1):
        with pytest.raises(ValueError, match=r"channels_as must be one of \('fields', 'params', 'flops'\)"):
            P4UNet(2, 1, 1, (2, 2), channels_as=bad)


def test_anisotropic_strides_2d_exact_on_the_axis_flips():
    flips = axis_flips(2)
    net = trained_briefly(GroupUNet(2, 2, 2, (2, 3, 4), group=flips, strides=((2, 1), (2, 2))), (8, 6))
    assert net.strides == ((2, 1), 2) and net.axis_multiples == [4, 2]
    for size in ((8, 6), (12, 10)):
        assert_exact(net, flips, torch.randn(2, 2, *size))
    with pytest.raises(ValueError, match="along axis 0 is not a multiple of 4"):
        net(torch.randn(1, 2, 6, 6))
    cnn = trained_briefly(GroupCNN(2, 1, 3, (2, 2), group=flips, strides=((1, 2),), invariance="group"),
                          (6, 8))  # invariance="group": invariant to every element, the flips too
    for size in ((6, 8), (5, 12)):
        x = torch.randn(2, 1, *size)
        with torch.no_grad():
            for g in range(flips.order):
                assert_matches(cnn(flips.transform(x, g)), cnn(x), cnn, msg=f"element {g}")


def test_anisotropic_strides_3d_exact_on_d4h():
    net = trained_briefly(GroupUNet(3, 1, 1, (1, 2), group="D4h", strides=((1, 2, 2),)), (3, 4, 4))
    for size in ((3, 4, 4), (2, 6, 6)):
        assert_exact(net, net.group, torch.randn(1, 1, *size))


def test_group_that_swaps_axes_of_different_strides_is_refused_naming_the_level():
    with pytest.raises(ValueError, match=r"strides\[1\] = \(2, 1\).*between levels 1 and 2.*'trivial'.*axis flips"):
        P4UNet(2, 1, 1, (2, 2, 2), strides=((2, 2), (2, 1)))
    fits_d4h = r"strides\[0\] = \(1, 2, 2\).*group 'O'.*largest group that fits this plan is 'D4h'"
    with pytest.raises(ValueError, match=fits_d4h):
        GroupUNet(3, 1, 1, (1, 2), group="O", strides=((1, 2, 2),))
    with pytest.raises(ValueError, match=r"strides\[0\].*group 'p4'"):
        GroupCNN(2, 1, 2, (2, 2), group="p4", strides=((2, 1),))
    with pytest.raises(ValueError, match=r"strides\[0\] must be an int or a sequence of 2 ints"):
        P4UNet(2, 1, 1, (2, 2), strides=((2, 2, 2),))


def test_equal_per_axis_strides_stay_as_today():
    torch.manual_seed(0)
    per_axis = P4UNet(2, 1, 1, (2, 3, 4), strides=((2, 2), [2, 2]))
    torch.manual_seed(0)
    today = P4UNet(2, 1, 1, (2, 3, 4), strides=(2, 2))
    assert per_axis.strides == (2, 2) and per_axis.axis_multiples is None and per_axis.size_multiple == 4
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(per_axis.eval()(x), today.eval()(x), rtol=0, atol=0)


def test_steerable_unet_by_params_matches_monais_unet():
    pytest.importorskip("escnn")
    from monai_equivariant.networks.nets import SteerableUNet

    channels = (8, 16, 32)
    net = SteerableUNet(2, 1, 1, channels, num_rotations=4, channels_as="params")
    plain = UNet(2, 1, 1, channels, (2, 2))  # no residual units: SteerableUNet has two convs per level
    assert net.channels_as == "params"
    assert count_parameters(net) == pytest.approx(count_parameters(plain), rel=0.05)


def test_dynunet_swap_by_params_and_by_flops():
    """GroupDynUNet with MONAI DynUNet's arguments (the anisotropic nnU-Net plan): by params within 5 % of MONAI's
    DynUNet, by FLOPs within 5 % of the same plan without the group (MONAI's takes other sides); fields by default."""
    from monai.networks.nets import DynUNet

    from monai_equivariant.networks.nets import GroupDynUNet

    plan = dict(kernel_size=[[1, 3, 3], [1, 3, 3], [3, 3, 3]], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                upsample_kernel_size=[[1, 2, 2], [2, 2, 2]])
    filters = [16, 32, 64]
    assert GroupDynUNet(3, 1, 3, filters=filters, **plan).filters == tuple(filters)
    by_params = GroupDynUNet(3, 1, 3, filters=filters, channels_as="params", **plan)
    monai = DynUNet(3, 1, 3, filters=filters, **plan)
    assert abs(count_parameters(by_params) / count_parameters(monai) - 1) < 0.05
    by_flops = GroupDynUNet(3, 1, 3, filters=filters, channels_as="flops", **plan)
    plain = GroupDynUNet(3, 1, 3, filters=filters, group="trivial", **plan)
    shape = (1, 5, 9, 9)  # sides 1 + m·P, P = (2, 4, 4)
    assert abs(conv_macs_per_pixel(by_flops, shape) / conv_macs_per_pixel(plain, shape) - 1) < 0.05
    with pytest.raises(ValueError, match="channels_as"):
        GroupDynUNet(3, 1, 3, filters=filters, channels_as="parameters", **plan)
