"""GroupDynUNet: MONAI's DynUNet arguments, exact under the group its plan admits, refusing the others."""

import io
import pickle

import pytest
import torch
from helpers import assert_matches
from monai.networks.nets import DynUNet

from monai_equivariant.layers import GroupConvTranspose
from monai_equivariant.layers.plain import export
from monai_equivariant.networks.factory import segmentation_network
from monai_equivariant.networks.nets import GroupDynUNet

# the anisotropic nnU-Net plan of the issue (3D, axis 0 = depth, z spacing larger than in-plane)
KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
SIZES_3D = [(5, 9, 9), (9, 17, 17)]  # sides 1 + m·P, P = (4, 8, 8)


def nnunet_twin(**kwargs) -> GroupDynUNet:
    torch.manual_seed(0)
    return GroupDynUNet(3, 1, 2, KERNELS, STRIDES, STRIDES[1:], filters=(2, 4, 8, 8), **kwargs)


def assert_exact(net, x, extra_axes=0):
    """net(g·x) == g·net(x) for every element, to float32 round-off relative to the output's max; ``extra_axes``
    leading axes after the batch (the deep-supervision stack) are folded into the batch."""
    group = net.group
    y = net(x)
    fold = (lambda t: t.flatten(0, extra_axes)) if extra_axes else (lambda t: t)
    for g in range(group.order):
        assert_matches(fold(net(group.transform(x, g))), group.transform(fold(y), g), net,
                       msg=f"{group.name} element {g}:")


def test_the_nnunet_plan_builds_the_d4h_twin_exact_on_all_16_elements():
    net = nnunet_twin().eval()
    assert net.group.name == "D4h" and net.group.order == 16
    assert net.size_period == [4, 8, 8]
    assert net.upsample_kernel_size == [(1, 3, 3), 3, 3]  # MONAI's kernel = stride, one tap larger
    assert isinstance(net.decoder[0].transp_conv, GroupConvTranspose)
    with torch.no_grad():
        for size in SIZES_3D:
            x = torch.randn((2, 1) + size)
            assert net(x).shape == (2, 2) + size
            assert_exact(net, x)


def test_a_2d_plan_with_residual_blocks_is_exact_under_p4_and_p4m():
    for group in ("p4", "p4m"):
        torch.manual_seed(0)
        net = GroupDynUNet(2, 2, 3, [3, 3, 3], [1, 2, 2], [2, 2], filters=(2, 3, 4), res_block=True,
                           group=group).eval()
        with torch.no_grad():
            for size in ((9, 9), (13, 13)):
                assert_exact(net, torch.randn((1, 2) + size))


def test_the_cube_group_is_refused_naming_the_level_and_the_group_that_fits():
    with pytest.raises(ValueError, match=r"group 'O' does not preserve level 0 of the plan: kernel_size\[0\] = "
                                         r"\(1, 3, 3\).*largest group that fits this plan is 'D4h'"):
        nnunet_twin(group="O")
    with pytest.raises(ValueError, match=r"level 1 of the plan: strides\[1\] = \(1, 2, 2\).*fits this plan is 'D4h'"):
        GroupDynUNet(3, 1, 1, [3, 3, 3], [1, [1, 2, 2], 2], [[1, 2, 2], 2], group="Oh")
    with pytest.raises(ValueError, match="fits this plan is 'trivial'"):  # anisotropic along an in-plane axis
        GroupDynUNet(3, 1, 1, [[3, 3, 1], 3, 3], [1, 2, 2], [2, 2])


def test_inadmissible_sizes_and_arguments_are_refused_by_name():
    net = nnunet_twin().eval()
    with pytest.raises(ValueError, match=r"spatial size 8 on axis 1 .*accepts sides 1 \+ m·P with P = \[4, 8, 8\] "
                                         r"per axis.*here 1 or 9"):
        net(torch.randn(1, 1, 5, 8, 9))
    with pytest.raises(ValueError, match="at least 3 levels"):
        GroupDynUNet(2, 1, 1, [3, 3], [1, 2], [2])
    with pytest.raises(ValueError, match=r"kernel_size\[1\] = \(2, 2\): every level's kernel needs odd sides"):
        GroupDynUNet(2, 1, 1, [3, 2, 3], [1, 2, 2], [2, 2])
    with pytest.raises(ValueError, match="upsample_kernel_size needs len"):
        GroupDynUNet(2, 1, 1, [3, 3, 3], [1, 2, 2], [2])
    with pytest.raises(ValueError, match="deep_supr_num must be an integer ≥ 1 and < the number"):
        GroupDynUNet(2, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], deep_supervision=True, deep_supr_num=2)
    with pytest.raises(ValueError, match="needs a grid group"):
        GroupDynUNet(2, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], group="se2_8")


def test_deep_supervision_returns_monais_stacked_layout_and_is_equivariant_in_training():
    net = nnunet_twin(deep_supervision=True, deep_supr_num=2).train()
    x = torch.randn(2, 1, 5, 9, 9)
    out = net(x)
    monai = DynUNet(3, 1, 2, KERNELS, STRIDES, STRIDES[1:], filters=(2, 4, 8, 8), deep_supervision=True,
                    deep_supr_num=2).train()
    reference = monai(torch.randn(2, 1, 8, 16, 16))
    assert out.shape == (2, 3, 2, 5, 9, 9) and reference.shape == (2, 3, 2, 8, 16, 16)  # same layout
    assert_exact(net, x, extra_axes=1)
    assert net.eval()(x).shape == (2, 2, 5, 9, 9)  # eval: the output alone, as MONAI


def test_export_torchscript_onnx_and_pickle_equal_eager():
    net = nnunet_twin(trans_bias=True).eval()
    for p in net.parameters():  # biases and affine parameters off their initial zeros / ones
        torch.nn.init.normal_(p, std=0.3) if p.dim() == 1 else None
    x = torch.randn(1, 1, 5, 9, 9)
    with torch.no_grad():
        expected = net(x)
        assert_matches(export(net)(x), expected, net)
        assert_matches(torch.jit.script(net)(x), expected, net)
        restored = pickle.loads(pickle.dumps(net))
        torch.testing.assert_close(restored(x), expected, rtol=0, atol=0)
    ort = pytest.importorskip("onnxruntime")
    buffer = io.BytesIO()
    torch.onnx.export(export(net), (x,), buffer, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert_matches(onnx_out, expected, net)
    with pytest.raises(Exception, match="not admissible"):  # the exported script keeps the size check
        torch.jit.script(net)(torch.randn(1, 1, 6, 9, 9))


def test_route_input_applies_to_the_convs_that_have_one():
    net = nnunet_twin(route="input")
    convs = [m for m in net.modules() if hasattr(m, "grid_action")]
    assert {c.route for c in convs if c.grid_action} == {"input"}
    assert {c.route for c in convs if not c.grid_action} == {"filter"}
    assert net.route == "input"
    net.route = "auto"
    assert {c.route for c in convs} == {"auto"}


def test_registry_builds_the_twins_with_matched_parameters():
    d4h = segmentation_network("dynunet_d4h", spatial_dims=3, in_channels=1, out_channels=2, channels=(2, 4, 8))
    plain = segmentation_network("dynunet_plain", spatial_dims=3, in_channels=1, out_channels=2, channels=(2, 4, 8))
    assert d4h.group.name == "D4h" and plain.group.order == 1 and plain.filters == (8, 16, 32)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert abs(count(plain) / count(d4h) - 1) < 0.05
    assert d4h.kernel_size == [(1, 3, 3), (1, 3, 3), 3] and d4h.strides == [1, (1, 2, 2), 2]  # the default plan
    assert d4h.eval()(torch.randn(1, 1, 3, 5, 5)).shape == (1, 2, 3, 5, 5)
