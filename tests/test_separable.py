"""Separable group convolutions: exact on every element (grid groups; se2_N at 90°), the rank-one group conv they
stand for, their parameter and FLOP counts, the separable nets, export, TorchScript, ONNX and pickling."""

import copy
import io
import math
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import assert_compiled_trains_then_validates, assert_matches
from monai.networks.layers.factories import Conv
from torch.utils.flop_counter import FlopCounterMode

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupConv, SeparableGroupConv
from monai_equivariant.layers.plain import export
from monai_equivariant.layers.separable import separable_flops, separable_parameters
from monai_equivariant.networks.blocks import GroupConvBlock, GroupResidualUnit
from monai_equivariant.networks.nets import GroupCNN, GroupDynUNet, GroupUNet, P4UNet, SE2UNet, count_parameters
from monai_equivariant.networks.nets.dyn_unet import default_plan


def assert_exact(module, group, x, regular_out=True, elements=None):
    """f(g·x) == g·f(x) (regular input) for every element g (or those given), to float32 round-off relative to the
    output's max."""
    with torch.no_grad():
        y = module(x)
        for g in range(group.order) if elements is None else elements:
            assert_matches(module(group.transform(x, g, True)), group.transform(y, g, regular_out), module,
                           msg=f"{group.name} element {g}:")


# (group, kernel, two admissible sizes)
LAYER_CASES = [
    ("p4", 3, [(7, 7), (10, 10)]),
    ("p4m", 3, [(6, 6), (9, 9)]),
    ("p4", 5, [(8, 8), (11, 11)]),
    ("D4h", (1, 3, 3), [(3, 6, 6), (4, 7, 7)]),
    ("O", 3, [(4, 4, 4), (5, 5, 5)]),
    ("Oh", 3, [(4, 4, 4), (5, 5, 5)]),
]


@pytest.mark.parametrize("name,kernel,sizes", LAYER_CASES)
def test_separable_layer_is_exact_on_every_element(name, kernel, sizes):
    torch.manual_seed(0)
    group = get_group(name)
    layer = SeparableGroupConv(2, 3, group, kernel)
    for size in sizes:
        x = torch.randn((2, 2 * group.order) + size)
        assert_exact(layer, group, x)
        assert layer(x).shape == (2, 3 * group.order) + size


@pytest.mark.parametrize("name,kernel,stride,sizes", [
    ("p4", 3, 2, [(7, 7), (9, 9)]),  # odd k, default padding: (n - 1) % 2 == 0
    ("D4h", (1, 3, 3), (1, 2, 2), [(3, 5, 5), (2, 9, 9)]),
])
def test_strided_separable_layer_is_exact_on_the_grid_it_maps_onto_itself(name, kernel, stride, sizes):
    torch.manual_seed(0)
    group = get_group(name)
    layer = SeparableGroupConv(2, 2, group, kernel, stride=stride)
    for size in sizes:
        assert_exact(layer, group, torch.randn((1, 2 * group.order) + size))


def _blurred(shape, passes=3):
    """A smooth random image (a field that interpolated rotations of the grid approximate well)."""
    x = torch.randn(shape)
    kernel = torch.ones(x.shape[1], 1, 3, 3) / 9
    for _ in range(passes):
        x = F.conv2d(x, kernel, padding=1, groups=x.shape[1])
    return x


def test_se2_8_is_exact_at_its_90_degree_elements_and_measured_at_45():
    group = get_group("se2_8")
    torch.manual_seed(0)
    layer = SeparableGroupConv(2, 3, group, 5)
    for size in [(9, 9), (12, 12)]:
        assert_exact(layer, group, torch.randn((1, 2 * 8) + size), elements=[0, 2, 4, 6])
    # at 45° the full and the separable conv both interpolate their kernels (and the test its images): the error,
    # relative to the output's max in the interior of a smooth input (the corners rotate off the grid), measured
    # over 4 random layers: separable 0.27 / 0.48 / 0.48 / 0.63, full 0.39 / 0.36 / 0.32 / 0.33 (random 5×5 kernels
    # are far from band-limited; trained ones are smoother). The separable conv's error is of the full one's order.
    errors = {"separable": [], "full": []}
    for seed in range(4):
        torch.manual_seed(seed)
        x = _blurred((1, 2 * 8, 33, 33))
        for label, conv in (("separable", SeparableGroupConv(2, 3, group, 5)), ("full", GroupConv(2, 3, group, 5))):
            with torch.no_grad():
                y = conv(x)
                diffs = [conv(group.transform(x, g, True)) - group.transform(y, g, True) for g in (1, 3, 5, 7)]
            errors[label].append(max(float(d[..., 10:-10, 10:-10].abs().max() / y.abs().max()) for d in diffs))
    mean = {label: sum(values) / len(values) for label, values in errors.items()}
    assert mean["separable"] < 2 * mean["full"], errors


@pytest.mark.parametrize("name,kernel", [("p4m", 3), ("se2_8", 5), ("D4h", (1, 3, 3)), ("O", 3)])
def test_separable_layer_is_the_group_conv_of_the_rank_one_kernel(name, kernel):
    """The factorisation: GroupConv with weight W[o, i, h](y) = pointwise[o, i, h] · base[o](y) (the bias after)."""
    torch.manual_seed(0)
    group = get_group(name)
    layer = SeparableGroupConv(2, 3, group, kernel)
    nn.init.normal_(layer.bias)
    full = GroupConv(2, 3, group, kernel)
    dims = group.spatial_dims
    with torch.no_grad():
        pointwise = layer.pointwise.weight.reshape(3, 2, group.order, *([1] * dims))
        full.weight.copy_(pointwise * layer.weight.reshape(3, 1, 1, *layer.kernel_shape))
        full.bias.copy_(layer.bias)
        x = torch.randn((2, 2 * group.order) + (6,) * dims)
        assert_matches(layer(x), full(x), full)


def test_parameter_and_flop_counts_follow_the_formulas():
    for name, kernel, size in (("p4", 3, (8, 8)), ("O", 3, (4, 4, 4)), ("D4h", (1, 3, 3), (3, 6, 6))):
        group = get_group(name)
        c_in, c_out = 3, 5
        layer = SeparableGroupConv(c_in, c_out, group, kernel)
        taps = math.prod(layer.kernel_shape)
        full = GroupConv(c_in, c_out, group, kernel)
        assert count_parameters(layer) == separable_parameters(c_in, c_out, group.order, taps)
        assert count_parameters(layer) == c_in * c_out * group.order + c_out * taps + c_out
        assert count_parameters(full) == c_in * c_out * group.order * taps + c_out
        x = torch.randn((2, c_in * group.order) + size)
        counts = []
        for module in (layer, full):
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(x)
            counts.append(counter.get_total_flops())
        pixels = 2 * math.prod(size)  # batch 2, same-size output; FlopCounterMode counts 2 FLOPs per multiply-add
        assert counts[0] == 2 * pixels * separable_flops(c_in, c_out, group.order, taps)
        assert counts[0] == 2 * pixels * (c_in * c_out * group.order**2 + c_out * group.order * taps)
        assert counts[1] == 2 * pixels * c_in * c_out * group.order**2 * taps


def test_gradients_of_both_weights_pass_gradcheck():
    torch.manual_seed(0)
    for name, kernel in (("p4m", 3), ("se2_8", 3)):
        layer = SeparableGroupConv(1, 2, name, kernel).double()
        x = torch.randn(1, layer.group_order, 5, 5, dtype=torch.double, requires_grad=True)
        params = (layer.pointwise.weight, layer.weight, layer.bias)

        def run(x, *p, layer=layer):
            return torch.func.functional_call(layer, {"pointwise.weight": p[0], "weight": p[1], "bias": p[2]}, (x,))

        assert torch.autograd.gradcheck(run, (x, *params))


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="more than one tap.*GroupConv"):
        SeparableGroupConv(2, 2, "p4", 1)
    with pytest.raises(ValueError, match="element"):
        SeparableGroupConv(2, 2, "O", (1, 3, 3))
    with pytest.raises(ValueError, match="odd sides"):
        SeparableGroupConv(2, 2, "p4", 2)
    with pytest.raises(ValueError, match="in_channels and out_channels"):
        SeparableGroupConv(0, 2, "p4")
    with pytest.raises(ValueError, match="input channels"):
        SeparableGroupConv(2, 2, "p4")(torch.randn(1, 3, 5, 5))
    with pytest.raises(TypeError, match="separable must be True or False"):
        GroupUNet(2, 1, 1, (2, 4), separable="False")
    with pytest.raises(TypeError, match="separable must be True or False"):
        GroupCNN(3, 1, 2, (2,), "O", separable=1)


def test_monai_factory_and_blocks_build_it_after_the_lifting_only():
    assert isinstance(Conv["separable_groupconv", 3](2, 3, "O"), SeparableGroupConv)
    lifting = GroupConvBlock(1, 2, "p4", lifting=True, separable=True)
    assert type(lifting.conv).__name__ == "LiftingConv"
    assert isinstance(GroupConvBlock(2, 2, "p4", separable=True).conv, SeparableGroupConv)
    assert type(GroupConvBlock(2, 2, "p4", kernel_size=1, separable=True).conv) is GroupConv  # already pointwise
    unit = GroupResidualUnit(2, 3, "p4", separable=True)
    assert all(isinstance(block.conv, SeparableGroupConv) for block in unit.conv)
    assert type(unit.residual) is GroupConv


def _separable_convs(net):
    return [m for m in net.modules() if isinstance(m, SeparableGroupConv)]


NETS = {
    "P4UNet": (lambda: P4UNet(2, 1, 2, channels=(2, 4), separable=True), [(1, 1, 8, 8), (1, 1, 12, 12)], "p4"),
    "P4UNet-res": (lambda: P4UNet(2, 1, 1, channels=(2, 3), num_res_units=2, separable=True),
                   [(1, 1, 8, 8), (2, 1, 10, 10)], "p4"),
    "GroupCNN-O": (lambda: GroupCNN(3, 1, 2, channels=(2, 3), group="O", separable=True),
                   [(2, 1, 4, 4, 4), (1, 1, 6, 6, 6)], "O"),
    "GroupDynUNet-D4h": (lambda: GroupDynUNet(3, 1, 2, filters=(2, 3, 4), separable=True, **default_plan(3, 3)),
                         [(1, 1, 3, 5, 5), (1, 1, 5, 9, 9)], "D4h"),
    "SE2UNet-8": (lambda: SE2UNet(2, 1, 1, channels=(2, 3), num_rotations=8, separable=True),
                  [(1, 1, 8, 8), (1, 1, 12, 12)], "p4"),
}


def _trained(net, shape, steps=2):
    """A few SGD steps so batch norms hold running statistics; returns the net in eval mode."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        out = net(torch.randn((2,) + tuple(shape[1:])))
        out.square().mean().backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("name", list(NETS))
def test_separable_nets_are_exact_on_every_element_at_two_sizes(name):
    make, shapes, checked = NETS[name]
    torch.manual_seed(0)
    net = _trained(make(), shapes[0])
    assert _separable_convs(net) and net.separable
    group = get_group(checked)
    classifier = isinstance(net, GroupCNN)
    for shape in shapes:
        x = torch.randn(shape)
        with torch.no_grad():
            y = net(x)
            for g in range(group.order):
                expected = y if classifier else group.transform(y, g)
                assert_matches(net(group.transform(x, g)), expected, net, msg=f"{name} {checked} element {g}:")


def test_separable_nets_cost_less_at_equal_fields():
    full, separable = P4UNet(2, 3, 1), P4UNet(2, 3, 1, separable=True)
    assert count_parameters(separable) < count_parameters(full) / 4
    assert len(_separable_convs(separable)) == 2 * 9 - 1  # every conv of the 9 levels but the lifting
    o_full, o_sep = GroupCNN(3, 1, 2, (4, 8, 16), "O"), GroupCNN(3, 1, 2, (4, 8, 16), "O", separable=True)
    assert count_parameters(o_sep) < count_parameters(o_full) / 4


@pytest.mark.parametrize("name", ["P4UNet", "GroupCNN-O", "GroupDynUNet-D4h"])
def test_export_torchscript_trace_and_onnx_equal_eager(name):
    make, shapes, _ = NETS[name]
    torch.manual_seed(0)
    net = _trained(make(), shapes[0])
    x = torch.randn(shapes[1])
    with torch.no_grad():
        expected = net(x)
        plain = export(net)
        layers = [m for m in plain.modules() if type(m).__module__.startswith("monai_equivariant.layers")]
        assert not layers, layers  # plain torch convs and norms only
        assert_matches(plain(x), expected, net)
        assert_matches(torch.jit.script(net)(x), expected, net)
        assert_matches(torch.jit.trace(copy.deepcopy(net), x)(x), expected, net)
    ort = pytest.importorskip("onnxruntime")
    buffer = io.BytesIO()
    torch.onnx.export(copy.deepcopy(net), (x,), buffer, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert_matches(onnx_out, expected, net)


def test_the_layer_scripts_exports_and_pickles_as_it_is():
    torch.manual_seed(0)
    layer = SeparableGroupConv(2, 3, "D4h", (1, 3, 3), stride=(1, 2, 2))
    nn.init.normal_(layer.bias)
    x = torch.randn(1, 2 * 16, 3, 5, 5)
    with torch.no_grad():
        expected = layer(x)
        plain = layer.to_plain()
        assert isinstance(plain, nn.Sequential) and plain[1].groups == 3 * 16
        assert_matches(plain(x), expected, layer)
        assert_matches(torch.jit.script(layer)(x), expected, layer)
        restored = pickle.loads(pickle.dumps(layer))
        torch.testing.assert_close(restored(x), expected, rtol=0, atol=0)
    keys = set(layer.state_dict())
    assert keys == {"pointwise.weight", "weight", "bias"} and set(layer.eval().state_dict()) == keys


def test_nets_pickle_and_keep_state_dict_keys_across_modes():
    make, shapes, _ = NETS["P4UNet"]
    torch.manual_seed(0)
    net = _trained(make(), shapes[0])
    x = torch.randn(shapes[0])
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(pickle.loads(pickle.dumps(net))(x), expected, rtol=0, atol=0)
    assert set(net.train().state_dict()) == set(net.eval().state_dict())


def test_checkpointed_separable_cnn_gives_the_same_gradients():
    torch.manual_seed(0)
    net = GroupCNN(3, 1, 2, (2, 3), "O", separable=True)
    twin = copy.deepcopy(net)
    twin.checkpointing = True
    x = torch.randn(2, 1, 4, 4, 4)
    grads = []
    for model in (net, twin):
        model.zero_grad()
        model(x).square().sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    scale = float(grads[0].abs().max())
    assert_matches(grads[1], grads[0], net, depth=2 * 8, scale=scale)


def test_registry_names_build_the_separable_nets():
    from monai_equivariant.networks.factory import classification_network, segmentation_network

    seg = segmentation_network("p4_separable", in_channels=1, channels=(2, 4))
    assert isinstance(seg, GroupUNet) and seg.separable and seg.channels == (2, 4) and seg.group.name == "p4"
    cls = classification_network("O_separable", spatial_dims=3, in_channels=1, channels=(2, 4))
    assert isinstance(cls, GroupCNN) and cls.separable and cls.group.name == "O"


def test_cost_table_separable_section_reports_ratios(capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cost_table.py"
    spec = importlib.util.spec_from_file_location("_bench_cost_table_separable", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    rows = module.main(["--separable", "--smoke", "--threads", "1", "--only", "P4UNet", "GroupCNN (O)"])
    assert "| separable net | params ×full / ×plain |" in capsys.readouterr().out
    assert [r["net"] for r in rows] == ["P4UNet separable", "P4UNet", "plain, equal params",
                                        "GroupCNN (O) separable", "GroupCNN (O)", "plain, equal params"]
    for separable, full, plain in (rows[0:3], rows[3:6]):
        assert separable["channels"] == full["channels"] and separable["params"] < full["params"] / 3
        assert separable["gflops"] < full["gflops"] / 3
        assert separable["ratio_full"]["params"] == separable["params"] / full["params"]
        assert separable["ratio_plain"]["train_ms"] == separable["train_ms"] / plain["train_ms"]


def test_compiled_separable_net_trains_then_validates_in_one_graph():
    """``torch.compile(fullgraph=True)`` (aot_eager, float64): a training step and an eval call equal eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 3), separable=True).double()
    assert_compiled_trains_then_validates(net, torch.randn(2, 1, 8, 8, dtype=torch.double), one_graph=False)


def test_both_routes_of_the_pointwise_convs_agree():
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 3), separable=True)
    x = torch.randn(2, 1, 8, 8)
    outputs = {}
    for route in ("filter", "input"):
        net.route = route
        assert all(conv.route == route for conv in net.modules() if isinstance(conv, GroupConv))
        outputs[route] = net(x)  # training mode: batch statistics, no cache
    assert_matches(outputs["input"], outputs["filter"], net)


@pytest.mark.parametrize("spatial_dims,group,shapes", [
    (2, "p4m", [(1, 1, 16, 16), (1, 1, 24, 24)]),
    (3, "D4h", [(1, 1, 5, 9, 9), (1, 1, 9, 17, 17)]),
])
def test_separable_nets_with_lateral_labels_are_exact_with_the_swap(spatial_dims, group, shapes):
    """``separable`` and ``label_permutation`` together (two options added side by side): f(g·x) = P_g g·f(x), P_g
    swapping channels 1 and 2 under the reflections, on every element at two sizes."""
    torch.manual_seed(0)
    perm = [0, 2, 1]
    if spatial_dims == 2:
        net = GroupUNet(2, 1, 3, (2, 4, 4), group=group, separable=True, label_permutation=perm)
    else:
        net = GroupDynUNet(3, 1, 3, filters=(2, 2, 4), group=group, separable=True, label_permutation=perm,
                           **default_plan(3, 3))
    net = _trained(net, shapes[0])
    assert _separable_convs(net)
    grp = get_group(group)
    for shape in shapes:
        x = torch.randn(shape)
        with torch.no_grad():
            y = net(x)
            for g in range(grp.order):
                expected = grp.transform(y, g)
                if torch.linalg.det(torch.as_tensor(grp.matrices[g])) < 0:
                    expected = expected[:, perm]
                assert_matches(net(grp.transform(x, g)), expected, net, msg=f"{group} element {g}:")
