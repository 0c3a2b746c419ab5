"""Bad input to the layers and networks is refused with an error naming the argument, what was given and what was
expected (issue 19 items 13 and 17: padding, frozen_filters, checkpointing, route, dtypes, empty batches and sizes,
check_onnx_input sizes)."""

import pytest
import torch

from monai_equivariant.layers import GroupConv, LiftingConv, frozen_filters
from monai_equivariant.layers.conv import group_convs
from monai_equivariant.networks.factory import classification_network, segmentation_network
from monai_equivariant.networks.nets import (
    SE2CNN, GroupBasicUNet, GroupCNN, GroupDynUNet, GroupResNet, GroupSegResNet, GroupUNet, P4MUNet, P4UNet, SE2UNet)


@pytest.mark.parametrize("cls", [LiftingConv, GroupConv])
@pytest.mark.parametrize("padding", [-1, 1.5, True, "1"])
def test_layers_refuse_a_padding_that_is_not_an_integer_at_least_zero(cls, padding):
    with pytest.raises(ValueError, match=r"padding must be an integer ≥ 0.*got " + repr(padding).replace(".", r"\.")):
        cls(2, 2, "p4", padding=padding)
    assert cls(2, 2, "p4", padding=0).padding == 0  # 0 and the default k // 2 stay accepted
    assert cls(2, 2, "p4").padding == 1


@pytest.mark.parametrize("value", [42, None, "net"])
def test_frozen_filters_refuses_what_is_not_a_module_when_called(value):
    with pytest.raises(TypeError, match=r"frozen_filters expects a torch.nn.Module.*got " + type(value).__name__):
        frozen_filters(value)  # at the call, before any with block


def test_checkpointing_takes_true_or_false_only():
    with pytest.raises(TypeError, match=r"checkpointing must be True or False, got 'False' \(str\)"):
        GroupCNN(2, 1, 2, (2,), group="p4", checkpointing="False")
    net = SE2CNN(2, 1, 2, (2,), num_rotations=4, checkpointing=True)
    with pytest.raises(TypeError, match="checkpointing must be True or False, got 1"):
        net.checkpointing = 1
    assert net.checkpointing is True  # unchanged by the refused value
    net.checkpointing = False
    assert net.checkpointing is False


GRID_NETS = {
    "GroupUNet": lambda **kw: GroupUNet(2, 1, 1, (2, 4), group="p4", **kw),
    "P4UNet": lambda **kw: P4UNet(2, 1, 1, (2, 4), **kw),
    "P4MUNet": lambda **kw: P4MUNet(2, 1, 1, (2, 4), **kw),
    "SE2UNet-4": lambda **kw: SE2UNet(2, 1, 1, (2, 4), num_rotations=4, **kw),
    "GroupCNN": lambda **kw: GroupCNN(3, 1, 2, (2,), group="O", **kw),
    "SE2CNN-4": lambda **kw: SE2CNN(2, 1, 2, (2,), num_rotations=4, **kw),
    "factory-p4m": lambda **kw: segmentation_network("p4m", in_channels=1, channels=(2, 4), **kw),
    "factory-D4h": lambda **kw: classification_network("D4h", spatial_dims=3, in_channels=1, channels=(2,), **kw),
    "GroupBasicUNet": lambda **kw: GroupBasicUNet(2, 1, 1, (2, 2, 2, 2, 2, 2), group="p4", **kw),
    "GroupSegResNet": lambda **kw: GroupSegResNet(2, 2, 1, 1, blocks_down=(1, 1), blocks_up=(1,), group="p4", **kw),
    "GroupResNet": lambda **kw: GroupResNet("basic", (1, 1, 1, 1), (2, 2, 2, 2), spatial_dims=2, n_input_channels=1,
                                           num_classes=2, group="p4", **kw),
    "GroupDynUNet": lambda **kw: GroupDynUNet(2, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], filters=(2, 2, 4),
                                             group="p4", **kw),
}


@pytest.mark.parametrize("name", list(GRID_NETS))
def test_route_is_a_constructor_argument_and_a_network_setting_of_every_group_conv(name):
    net = GRID_NETS[name](route="input")
    convs = group_convs(net)
    choosing = [conv for conv in convs if conv.grid_action]  # strided and transposed layers have no input route
    assert choosing and all(conv.route == "input" for conv in choosing) and net.route == "input"
    assert all(conv.route == "filter" for conv in convs if not conv.grid_action)
    net.route = "filter"
    assert all(conv.route == "filter" for conv in convs) and net.route == "filter"
    with pytest.raises(ValueError, match=r"route must be one of \('auto', 'filter', 'input'\), got 'bogus'"):
        net.route = "bogus"
    assert all(conv.route == "filter" for conv in convs)  # the refused value changed nothing
    with pytest.raises(ValueError, match="route must be one of .* got 'fast'"):
        GRID_NETS[name](route="fast")
    choosing[0].route = "auto"
    assert net.route == "mixed"


@pytest.mark.parametrize("make", [lambda **kw: SE2UNet(2, 1, 1, (2, 4), num_rotations=8, **kw),
                                  lambda **kw: SE2CNN(2, 1, 2, (2,), num_rotations=8, **kw)])
def test_route_input_is_refused_for_interpolated_groups_naming_them(make):
    with pytest.raises(ValueError, match="route='input' needs groups acting on the pixel grid.*se2_8"):
        make(route="input")
    net = make(route="filter")
    with pytest.raises(ValueError, match="se2_8"):
        net.route = "input"
    assert net.route == "filter"


def _nets_and_inputs():
    return [
        (P4UNet(2, 1, 1, (2, 4)), (1, 1, 8, 8)),
        (GroupCNN(3, 1, 2, (2,), group="O"), (1, 1, 4, 4, 4)),
        (SE2CNN(2, 1, 2, (2,), num_rotations=4), (1, 1, 8, 8)),
    ]


def test_an_input_of_another_dtype_is_refused_naming_both_dtypes():
    for net, shape in _nets_and_inputs():
        net.eval()
        with pytest.raises(ValueError, match=r"input dtype torch.float16 does not match the network's parameter "
                                             r"dtype torch.float32"):
            net(torch.randn(shape, dtype=torch.float16))
        with pytest.raises(ValueError, match="torch.float64 does not match .* torch.float32"):
            net(torch.randn(shape, dtype=torch.float64))
        double = net.double()
        assert double(torch.randn(shape, dtype=torch.float64)).dtype == torch.float64
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts inputs itself: not refused there
            net.float()(torch.randn(shape, dtype=torch.bfloat16))


def test_an_empty_batch_or_a_spatial_size_0_is_refused_naming_the_shape():
    for net, shape in _nets_and_inputs():
        net.eval()
        with pytest.raises(ValueError, match=r"empty batch \(shape \[0, 1, .*expected .* B ≥ 1"):
            net(torch.randn((0,) + shape[1:]))
        zero = shape[:2] + (0,) + shape[3:]
        with pytest.raises(ValueError, match=r"spatial size 0 in shape \[1, 1, 0.*positive multiple of"):
            net(torch.randn(zero))
        scripted = torch.jit.script(net)  # the exported TorchScript keeps both checks
        with pytest.raises(Exception, match="empty batch"):
            scripted(torch.randn((0,) + shape[1:]))
        with pytest.raises(Exception, match="spatial size 0"):
            scripted(torch.randn(zero))


def _model_with_metadata():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from monai_equivariant.utils.export import add_onnx_metadata

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    return onnx, add_onnx_metadata(model, P4UNet(2, 1, 1, (2, 4, 8)))


@pytest.mark.parametrize("shape, bad", [((1, 1, 0, 64), "spatial size 0 0"), ((1, 1, -4, 64), "spatial size 0 -4"),
                                         ((1, 1, 64.5, 64), "spatial size 0 64.5"), ((0, 1, 64, 64), "batch 0"),
                                         ((1, 1, 64, "64"), "spatial size 1 '64'")])
def test_check_onnx_input_refuses_sizes_that_are_not_positive_integers(shape, bad):
    from monai_equivariant.utils.export import check_onnx_input

    _, model = _model_with_metadata()
    check_onnx_input(model, (1, 1, 64, 64))
    with pytest.raises(ValueError, match=f"{bad} is not an integer ≥ 1"):
        check_onnx_input(model, shape)
