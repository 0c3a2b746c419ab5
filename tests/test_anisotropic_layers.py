"""Per-axis kernels, strides and the transposed group conv: exact on every element where the grid maps onto itself."""

import pickle

import pytest
import torch
from helpers import assert_matches
from monai.networks.layers.factories import Conv

from monai_equivariant.groups import get_group, largest_admissible_group
from monai_equivariant.layers import GroupConv, GroupConvTranspose, LiftingConv, expand_filter
from monai_equivariant.layers.plain import export


def assert_exact(module, group, x, regular_in, regular_out):
    """f(g·x) == g·f(x) for every element g, to float32 round-off relative to the output's max."""
    y = module(x)
    for g in range(group.order):
        assert_matches(module(group.transform(x, g, regular_in)), group.transform(y, g, regular_out), module,
                       msg=f"{group.name} element {g}:")


# (group, kernel, stride, padding, two input sizes the strided grid maps onto itself on)
STRIDED = [
    ("p4", 3, 2, None, [(9, 9), (7, 7)]),  # odd k, default padding: (n - 1) % 2 == 0
    ("p4m", 3, 2, None, [(5, 5), (11, 11)]),
    ("p4m", 2, 2, 0, [(6, 6), (8, 8)]),  # k = s = 2, padding 0: even sides
    ("D4h", (1, 3, 3), (1, 2, 2), None, [(3, 9, 9), (4, 5, 5)]),  # depth untouched: any depth
    ("D4h", (1, 2, 2), (1, 2, 2), 0, [(3, 6, 6), (2, 4, 4)]),
    ("O", 3, 2, None, [(5, 5, 5), (7, 7, 7)]),
]


@pytest.mark.parametrize("name,kernel,stride,padding,sizes", STRIDED)
def test_strided_lifting_and_group_convs_are_exact_on_every_element(name, kernel, stride, padding, sizes):
    g = get_group(name)
    lift = LiftingConv(2, 3, g, kernel, padding=padding, stride=stride)
    conv = GroupConv(2, 2, g, kernel, padding=padding, stride=stride)
    for size in sizes:
        x = torch.randn((2, 2) + size)
        assert_exact(lift, g, x, False, True)
        assert_exact(conv, g, torch.randn((2, 2 * g.order) + size), True, True)
    assert not lift.grid_action and not conv.grid_action  # strided layers never take the input route


@pytest.mark.parametrize("name,sizes", [("p4", [(6, 6), (9, 9)]), ("D4h", [(3, 6, 6), (5, 7, 7)])])
def test_anisotropic_stride_one_convs_are_exact(name, sizes):
    g = get_group(name)
    kernel = 3 if g.spatial_dims == 2 else (1, 3, 3)
    conv = GroupConv(2, 3, g, kernel)
    for size in sizes:
        assert_exact(conv, g, torch.randn((1, 2 * g.order) + size), True, True)
        assert conv(torch.randn((1, 2 * g.order) + size)).shape[2:] == size
    assert conv.grid_action == (g.spatial_dims == 2)  # a non-cubic kernel has no input route


# (group, kernel, stride, two coarse sizes): k = s = 2 gives 2m (even sides), k = 3, s = 2 gives 2m - 1 (odd sides)
TRANSPOSED = [
    ("p4", 2, 2, [(3, 3), (4, 4)]),
    ("p4", 3, 2, [(3, 3), (5, 5)]),
    ("p4m", 2, 2, [(3, 3), (4, 4)]),
    ("p4m", 3, 2, [(2, 2), (5, 5)]),
    ("D4h", (1, 2, 2), (1, 2, 2), [(2, 3, 3), (3, 4, 4)]),
    ("D4h", (1, 3, 3), (1, 2, 2), [(2, 3, 3), (3, 5, 5)]),
    ("O", 2, 2, [(2, 2, 2), (3, 3, 3)]),
    ("O", 3, 2, [(2, 2, 2), (3, 3, 3)]),
]


@pytest.mark.parametrize("name,kernel,stride,sizes", TRANSPOSED)
def test_transposed_group_conv_is_exact_on_every_element(name, kernel, stride, sizes):
    g = get_group(name)
    up = GroupConvTranspose(3, 2, g, kernel, stride=stride)
    torch.nn.init.normal_(up.bias)
    for size in sizes:
        x = torch.randn((2, 3 * g.order) + size)
        out = up(x)
        assert out.shape[2:] == up.output_size(size)
        assert_exact(up, g, x, True, True)


@pytest.mark.parametrize("name,kernel,stride", [("p4m", 3, 2), ("D4h", (1, 2, 2), (1, 2, 2))])
def test_transposed_conv_is_the_adjoint_of_the_strided_group_conv_with_the_same_weight(name, kernel, stride):
    """Which index is which: the transposed conv's weight (C_in, C_out, |G|, *k) is a group conv's weight from C_out
    to C_in fields, and the two layers are adjoint: <up(x), y> == <x, down(y)>."""
    g = get_group(name)
    up = GroupConvTranspose(3, 2, g, kernel, stride=stride, bias=False)
    down = GroupConv(2, 3, g, kernel, padding=up.padding, stride=stride, bias=False)
    with torch.no_grad():
        down.weight.copy_(up.weight)
    coarse = (3, 3) if g.spatial_dims == 2 else (2, 3, 3)
    x = torch.randn((2, 3 * g.order) + coarse, dtype=torch.float64)
    y = torch.randn((2, 2 * g.order) + up.output_size(coarse), dtype=torch.float64)
    up, down = up.double(), down.double()
    assert down(y).shape == x.shape
    torch.testing.assert_close((up(x) * y).sum(), (x * down(y)).sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close(up.expanded()[0], expand_filter(up.weight, g, True), rtol=0, atol=0)


@pytest.mark.parametrize("cls", [LiftingConv, GroupConv, GroupConvTranspose])
def test_the_cube_group_refuses_an_anisotropic_kernel_naming_the_element(cls):
    with pytest.raises(ValueError, match=r"'O' does not map the kernel grid \(1, 3, 3\).*element 2 = "
                                         r"\[\[0, 0, -1\], \[0, 1, 0\], \[1, 0, 0\]\].*at most the group 'D4h'"):
        cls(1, 2, "O", (1, 3, 3))


def test_bad_kernels_and_strides_are_refused_by_name():
    with pytest.raises(ValueError, match="stride-1 group conv needs odd sides.*axis 0"):
        GroupConv(1, 1, "p4", 2)
    with pytest.raises(ValueError, match="interpolates its kernels.*square with an odd side"):
        GroupConv(1, 1, "se2_8", (3, 5))
    with pytest.raises(ValueError, match=r"stride must be an integer ≥ 1 or 3 of them.*got \(1, 2\)"):
        GroupConv(1, 1, "D4h", 3, stride=(1, 2))
    with pytest.raises(ValueError, match="kernel_size must be an int ≥ 1 or 2 ints"):
        LiftingConv(1, 1, "p4", (3, 3, 3))


def test_largest_admissible_group_picks_the_subgroup_that_keeps_the_anisotropic_axis():
    plan_kernels = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]
    plan_strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert largest_admissible_group(3, plan_kernels, plan_strides) == "D4h"
    assert largest_admissible_group(3, [3, 3, 3], [1, 2, 2]) == "Oh"
    assert largest_admissible_group(3, [3, 3], [1, [2, 2, 1]]) == "trivial"  # D4h rotates about axis 0 only
    assert largest_admissible_group(2, [3, 3], [1, 2]) == "p4m"
    assert largest_admissible_group(2, [[1, 3]], [1]) == "trivial"
    with pytest.raises(ValueError, match=r"strides\[1\] must be an int ≥ 1 or 3 ints"):
        largest_admissible_group(3, [3, 3], [1, [2, 2]])


@pytest.mark.parametrize("layer", [
    lambda: LiftingConv(2, 3, "D4h", (1, 3, 3), stride=(1, 2, 2)),
    lambda: GroupConv(2, 3, "p4m", 3, stride=2),
    lambda: GroupConvTranspose(2, 3, "D4h", (1, 2, 2), stride=(1, 2, 2)),
    lambda: GroupConvTranspose(2, 3, "O", 3, stride=2),
], ids=["lifting-D4h", "group-p4m", "transposed-D4h-k2", "transposed-O-k3"])
def test_export_script_and_pickle_equal_eager(layer):
    layer = layer()
    torch.nn.init.normal_(layer.bias)
    g = layer.group
    channels = layer.expected_in_channels
    x = torch.randn((2, channels) + ((3, 5, 5) if g.spatial_dims == 3 else (5, 5)))
    expected = layer(x)
    plain = export(layer)
    assert type(plain) is Conv[Conv.CONVTRANS if layer.transposed else Conv.CONV, g.spatial_dims]
    assert_matches(plain(x), expected, layer)
    assert_matches(torch.jit.script(layer)(x), expected, layer)
    restored = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(restored(x), expected, rtol=0, atol=0)
    assert restored.stride == layer.stride and restored.kernel_size == layer.kernel_size


def test_transposed_conv_is_in_monais_factory_and_trains():
    up = Conv["groupconvtrans", 2](2, 1, "p4", kernel_size=2, stride=2)
    assert isinstance(up, GroupConvTranspose) and up.weight.shape == (2, 1, 4, 2, 2)
    up(torch.randn(1, 8, 3, 3)).square().sum().backward()
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0


def test_a_layer_pickled_before_strides_existed_still_loads():
    layer = GroupConv(2, 2, "p4")
    state = dict(layer.__dict__)
    for key in ("kernel_shape", "padding_shape", "stride_shape", "stride", "transposed", "_stride", "_padding"):
        state.pop(key)
    old = GroupConv.__new__(GroupConv)
    old.__setstate__(state)
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(old(x), layer(x), rtol=0, atol=0)
    assert old.stride == 1 and old.kernel_shape == (3, 3) and old.grid_action
