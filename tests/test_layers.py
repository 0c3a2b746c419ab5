import itertools

import pytest
import torch
from helpers import assert_matches

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupBatchNorm, GroupConv, GroupInstanceNorm, GroupPool, LiftingConv, expand_filter
from monai_equivariant.utils import assert_equivariant

GROUPS = ["p4", "p4m", "D4", "D4h", "O", "Oh", "se2_4"]


def _size(group, n=7):
    return (n,) * group.spatial_dims


def reference_bank(weight, group, regular_input):
    """Expansion written straight from the definition, one element at a time."""
    c_out, c_in, g_in = weight.shape[:3]
    k = weight.shape[3]
    n = group.order
    bank = torch.zeros((c_out, n, c_in, g_in) + weight.shape[3:])
    for g in range(n):
        for h in range(g_in):
            src = int(group.cayley[group.inverse[g], h]) if regular_input else 0
            w = weight[:, :, src]  # (C_out, C_in, *k)
            bank[:, g, :, h] = group.transform(w.reshape(c_out * c_in, 1, *w.shape[2:]), g).reshape(w.shape)
    return bank.reshape(c_out * n, c_in * g_in, *weight.shape[3:])


@pytest.mark.parametrize("name", ["p4", "p4m", "D4h", "O"])
@pytest.mark.parametrize("regular_input", [False, True])
def test_expand_filter_matches_definition(name, regular_input):
    g = get_group(name)
    w = torch.randn((3, 2, g.order if regular_input else 1) + (3,) * g.spatial_dims)
    assert torch.equal(expand_filter(w, g, regular_input), reference_bank(w, g, regular_input))


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_lifting_and_group_conv_equivariant(name, kernel_size):
    g = get_group(name)
    lift = LiftingConv(2, 3, g, kernel_size)
    conv = GroupConv(3, 2, g, kernel_size)
    x = torch.randn((2, 2) + _size(g, 8 if g.spatial_dims == 2 else 6))
    assert_equivariant(lift, g, x, "plain", "regular")
    assert_equivariant(conv, g, lift(x), "regular", "regular")
    # odd sizes are admissible for a single conv too
    assert_equivariant(lift, g, torch.randn((1, 2) + _size(g, 5)), "plain", "regular")


@pytest.mark.parametrize("name", GROUPS)
def test_pool_and_norms_equivariant(name):
    g = get_group(name)
    x = torch.randn((2, 3 * g.order) + _size(g, 6))
    assert_equivariant(GroupPool(g.order, "max"), g, x, "regular", "plain")
    assert_equivariant(GroupPool(g.order, "mean"), g, x, "regular", "plain")
    bn = GroupBatchNorm(3, g.order)
    assert_equivariant(bn.train(), g, x, "regular", "regular")
    assert_equivariant(bn.eval(), g, x, "regular", "regular")
    assert_equivariant(GroupInstanceNorm(3, g.order, affine=True), g, x, "regular", "regular")


def test_batch_norm_shares_statistics_over_group():
    g = get_group("p4")
    bn = GroupBatchNorm(2, g.order)
    x = torch.randn(4, 8, 5, 5) * 3 + 1
    y = bn.train()(x).reshape(4, 2, 4, 5, 5)
    # a mean of 400 normalised entries: round-off of one sum (fan_in 400) on the scale of the entries
    assert_matches(y.mean(dim=(0, 2, 3, 4)), torch.zeros(2), depth=1, fan_in=400, scale=y.abs().max())
    assert bn.norm.running_mean.shape == (2,)


def test_se2_4_layers_agree_with_p4():
    torch.manual_seed(1)
    a, b = GroupConv(2, 3, "p4"), GroupConv(2, 3, "se2_4")
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 8, 9, 9)
    assert_matches(b(x), a(x), a)


@pytest.mark.parametrize("cls", [LiftingConv, GroupConv])
def test_state_dict_keys_do_not_depend_on_mode_and_cache_tracks_weights(cls):
    conv = cls(2, 2, "p4")
    x = torch.randn(1, 2 * (4 if cls is GroupConv else 1), 6, 6)
    train_keys = set(conv.state_dict())
    conv.eval()
    with torch.no_grad():
        first = conv(x)
        assert set(conv.state_dict()) == train_keys == {"weight", "bias"}
        assert conv._cache.filled
        conv.weight.mul_(2.0)  # in-place update must invalidate the cached bank
        second = conv(x)
    assert_matches(second - conv.bias.repeat_interleave(4)[None, :, None, None],
                   2 * (first - conv.bias.repeat_interleave(4)[None, :, None, None]), conv)
    fresh = cls(2, 2, "p4")
    fresh.load_state_dict(conv.state_dict(), strict=True)


def test_training_gradients_flow_to_weight():
    conv = GroupConv(2, 2, "p4m")
    conv(torch.randn(1, 16, 5, 5)).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_bad_inputs_give_clear_errors():
    conv = GroupConv(3, 2, "p4")
    with pytest.raises(ValueError, match="12 input channels"):
        conv(torch.randn(1, 11, 8, 8))
    with pytest.raises(ValueError, match="2 spatial dims"):
        conv(torch.randn(1, 12, 8, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        GroupConv(3, 2, "p4", kernel_size=4)
    with pytest.raises(ValueError, match="unknown group"):
        LiftingConv(3, 2, "p7")
    with pytest.raises(ValueError, match="3D"):
        LiftingConv(3, 2, "O", spatial_dims=2)
    with pytest.raises(ValueError, match="C\\*4"):
        GroupPool(4)(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match="group norm expects"):
        GroupBatchNorm(3, 4)(torch.randn(2, 8, 4, 4))


@pytest.mark.parametrize("name,regular", list(itertools.product(["p4", "O"], [False, True])))
def test_to_plain_equals_layer(name, regular):
    g = get_group(name)
    conv = (GroupConv if regular else LiftingConv)(2, 3, g)
    x = torch.randn((2, 2 * (g.order if regular else 1)) + _size(g, 5))
    assert_matches(conv.to_plain()(x), conv(x), conv)


@pytest.mark.parametrize("dims,group", [(2, "p4m"), (3, "O")])
def test_batch_norm_to_plain_equals_in_eval(dims, group):
    g = get_group(group)
    bn = GroupBatchNorm(3, g.order, spatial_dims=dims)
    x = torch.randn((4, 3 * g.order) + (5,) * dims) * 2 + 1
    bn.train()(x)  # running statistics
    bn.norm.weight.data.uniform_(0.5, 1.5)
    bn.eval()
    plain = bn.to_plain()
    assert isinstance(plain, {2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}[dims])
    assert_matches(plain(x), bn(x), bn)
