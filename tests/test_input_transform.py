"""The input route of a group conv (transform the input, not the filter): equal to the filter route, exactly
equivariant, differentiable twice, and chosen by ``route="auto"`` only where it pays and only in eager code."""

import copy
import pickle

import pytest
import torch
from helpers import assert_matches

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.layers.input_transform import input_transform_tables, spatial_permutations
from monai_equivariant.networks.nets import P4UNet
from monai_equivariant.utils import assert_equivariant

GRID_GROUPS = ["p4", "p4m", "se2_2", "se2_4", "D4", "D4h", "O", "Oh"]


def _both_routes(layer, x):
    """Outputs and gradients (x, weight, bias) of the filter route and of the input route."""
    results = []
    for route in ("filter", "input"):
        layer.route = route
        y = layer(x)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(),
                                    [x, layer.weight, layer.bias])
        results.append((y, grads))
    layer.route = "auto"
    return results


@pytest.mark.parametrize("name", GRID_GROUPS)
@pytest.mark.parametrize("cls", [LiftingConv, GroupConv])
@pytest.mark.parametrize("padding", [None, 0])
def test_input_route_equals_filter_route(name, cls, padding):
    group = get_group(name)
    size = 6 if group.spatial_dims == 2 else 4
    layer = cls(2, 3, group, padding=padding).double()
    x = torch.randn((2, layer.expected_in_channels) + (size,) * group.spatial_dims, dtype=torch.double,
                    requires_grad=True)
    (y_filter, g_filter), (y_input, g_input) = _both_routes(layer, x)
    assert y_filter.shape == y_input.shape
    torch.testing.assert_close(y_input, y_filter, rtol=0, atol=1e-12)
    for a, b in zip(g_input, g_filter):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["p4", "p4m", "O"])
@pytest.mark.parametrize("even", [True, False])
def test_input_route_is_exactly_equivariant(name, even):
    group = get_group(name)
    size = (8 if group.spatial_dims == 2 else 4) + (0 if even else 1)  # even and odd grids
    lift, conv = LiftingConv(2, 3, group), GroupConv(3, 2, group)
    lift.route = conv.route = "input"
    x = torch.randn((2, 2) + (size,) * group.spatial_dims)
    assert_equivariant(lift, group, x, "plain", "regular")
    assert_equivariant(conv, group, lift(x), "regular", "regular")


def test_input_route_double_backward():
    layer = GroupConv(1, 2, "p4").double()
    layer.route = "input"
    x = torch.randn(1, 4, 4, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w, b: _run(layer, x, w, b), (x, layer.weight, layer.bias))


def _run(layer, x, weight, bias):
    from monai_equivariant.layers.input_transform import conv_by_input_transform

    tables = input_transform_tables(layer.group, True, x.shape[-1], x.shape[-1], x.device)
    return conv_by_input_transform(x, weight, bias, tables, layer.padding)


def test_tables_are_the_group_action():
    group = get_group("p4m")
    perm, inverse = spatial_permutations(group, 5)
    z = torch.randn(1, 1, 5, 5)
    for g in range(group.order):
        assert torch.equal(z.flatten()[perm[g]], group.spatial_transform(z, g).flatten())
        assert torch.equal(perm[g][inverse[g]], torch.arange(25))
    tables = input_transform_tables(group, True, 5, 5)
    rows = torch.sort(tables["gather_in"], dim=1).values
    assert torch.equal(rows, torch.arange(group.order * 25).expand_as(rows))  # a permutation per element
    with pytest.raises(ValueError, match="interpolates"):
        spatial_permutations(get_group("se2_8"), 5)


def test_auto_takes_the_input_route_only_where_it_pays(monkeypatch):
    calls = []
    original = GroupConv._forward_by_input_transform

    def spy(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(GroupConv, "_forward_by_input_transform", spy)
    deep = GroupConv(32, 32, "p4")  # |w| = 36864 entries against 2·128·4·4 = 4096 input entries
    shallow = GroupConv(2, 2, "p4")
    deep(torch.randn(2, 128, 4, 4))
    shallow(torch.randn(2, 8, 16, 16))
    assert calls == [(2, 128, 4, 4)]
    deep(torch.randn(2, 128, 4, 5))  # not a cubic grid: the filter route
    channels_last = deep(torch.randn(2, 128, 4, 4).contiguous(memory_format=torch.channels_last))
    assert channels_last.is_contiguous(memory_format=torch.channels_last)  # the input's layout is kept
    assert len(calls) == 2
    deep(torch.randn(2, 128, 4, 4).transpose(2, 3))  # another layout: the filter route
    deep.eval()
    with torch.no_grad():
        deep(torch.randn(2, 128, 4, 4))  # the cached bank costs nothing to build
    deep.route = "filter"
    deep.train()(torch.randn(2, 128, 4, 4))
    assert len(calls) == 2
    deep.route = "input"
    deep.eval()
    with torch.no_grad():
        deep(torch.randn(2, 128, 4, 4))
    assert len(calls) == 3


def test_route_values_are_checked():
    layer = GroupConv(2, 2, "p4")
    with pytest.raises(ValueError, match="route must be one of"):
        layer.route = "fast"
    with pytest.raises(ValueError, match="interpolates"):
        GroupConv(2, 2, "se2_8").route = "input"
    layer.route = "input"
    with pytest.raises(ValueError, match="equal spatial sizes"):
        layer(torch.randn(1, 8, 6, 7))
    assert pickle.loads(pickle.dumps(layer)).route == "input"
    assert copy.deepcopy(layer).route == "input"


def test_network_training_step_is_the_same_on_either_route():
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 4, 32), strides=(2, 2)).double().train()
    x = torch.randn(2, 1, 8, 8, dtype=torch.double)
    convs = [m for m in net.modules() if isinstance(m, (GroupConv, LiftingConv))]
    assert any(m._transforms_input(torch.randn(2, m.expected_in_channels, 2, 2, dtype=torch.double))
               for m in convs)  # the 32-field level at 2×2 takes the input route under "auto"
    results = []
    for route in ("auto", "filter"):
        for m in convs:
            m.route = route
        net.zero_grad()
        y = net(x)
        y.square().mean().backward()
        results.append((y.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_layers_pickled_before_the_input_route_load_and_take_it():
    layer = GroupConv(32, 32, "p4")
    layer.__dict__.pop("grid_action", None), layer.__dict__.pop("_route", None)  # as pickled by the older code
    restored = pickle.loads(pickle.dumps(layer))
    assert restored.route == "auto" and restored.grid_action
    x = torch.randn(2, 128, 4, 4)
    assert_matches(restored(x), GroupConv.forward(restored, x), restored)
    assert restored._transforms_input(x)


def test_torch_export_keeps_the_filter_route(monkeypatch):
    calls = []
    original = GroupConv._forward_by_input_transform
    monkeypatch.setattr(GroupConv, "_forward_by_input_transform",
                        lambda self, x: calls.append(1) or original(self, x))
    net = P4UNet(2, 1, 1, channels=(2, 32), strides=(2,)).train()
    x = torch.randn(2, 1, 8, 8)
    net(x)
    assert calls  # eager training takes the input route at the 32-field level
    calls.clear()
    torch.export.export(net, (x,))
    assert not calls  # an exported graph holds plain banks
