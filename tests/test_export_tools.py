"""Every network, freshly built (no warm-up, no ``export()`` first), through MONAI's and torch's own deployment
tools, pickling and channels-last, with outputs equal to eager (issue 10 items 5, 6, 13; issue 11).

Every float32 comparison is :func:`helpers.assert_matches`: a relative error on max |output| below
eps_float32 · depth · sqrt(fan_in) · 4 of the net compared (see :func:`helpers.roundoff_bound` for why), not a fixed
atol/rtol (1e-6 absolute failed on a fresh machine by 1.85e-6: issue 19 item 1)."""

import copy
import io
import pickle

import pytest
import torch
from helpers import assert_matches, roundoff_atol

from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.networks.nets import (
    SE2CNN,
    GroupBasicUNet,
    GroupCNN,
    GroupSegResNet,
    GroupUNet,
    P4MUNet,
    P4UNet,
    SE2UNet,
    SteerableUNet,
)
from monai_equivariant.utils.export import add_onnx_metadata, check_onnx_input, export, export_onnx, scriptable

NETS = {
    "P4UNet": (lambda: P4UNet(2, 1, 1, channels=(2, 4)), (1, 1, 16, 16)),
    "P4MUNet": (lambda: P4MUNet(2, 1, 1, channels=(2, 4)), (1, 1, 16, 16)),
    "GroupUNet-trivial": (lambda: GroupUNet(2, 1, 1, channels=(2, 4), group="trivial"), (1, 1, 16, 16)),
    "SE2UNet": (lambda: SE2UNet(2, 1, 1, channels=(2, 4), num_rotations=8), (1, 1, 16, 16)),
    "SE2CNN": (lambda: SE2CNN(2, 1, 2, num_rotations=8, channels=(2, 4)), (1, 1, 16, 16)),
    "GroupUNet-3d-O": (lambda: GroupUNet(3, 1, 1, channels=(1, 2), group="O"), (1, 1, 4, 4, 4)),
    "GroupCNN-3d": (lambda: GroupCNN(3, 1, 2, channels=(2, 4), group="O"), (1, 1, 8, 8, 8)),
    "SteerableUNet": (lambda: SteerableUNet(2, 1, 1, channels=(2, 4)), (1, 1, 16, 16)),
    "GroupBasicUNet": (lambda: GroupBasicUNet(2, 1, 1, (1, 1, 2, 2, 2, 1), group="p4"), (1, 1, 16, 16)),
    "GroupSegResNet": (lambda: GroupSegResNet(2, 2, 1, 1, blocks_down=(1, 1, 1), blocks_up=(1, 1), group="p4"),
                       (1, 1, 16, 16)),
    "P4MUNet-lateral": (lambda: P4MUNet(2, 1, 3, channels=(2, 4), label_permutation=[0, 2, 1]), (1, 1, 16, 16)),
}


def _build(name):
    make, shape = NETS[name]
    torch.manual_seed(0)
    net = make()
    return net, torch.randn(shape)


def _eager(net, x):
    net.eval()
    with torch.no_grad():
        return net(x)


def _ort(model_bytes_or_path, x):
    ort = pytest.importorskip("onnxruntime")
    if not isinstance(model_bytes_or_path, (str, bytes)):
        model_bytes_or_path = model_bytes_or_path.SerializeToString()
    session = ort.InferenceSession(model_bytes_or_path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("name", list(NETS))
def test_monai_convert_to_torchscript_and_jit_trace(name):
    from monai.networks.utils import convert_to_torchscript

    net, x = _build(name)
    expected = _eager(copy.deepcopy(net), x)
    scripted = convert_to_torchscript(net, verify=True, inputs=[x], rtol=0, atol=roundoff_atol(expected, net))
    assert_matches(scripted(x), expected, net)
    fresh, x = _build(name)
    traced = torch.jit.trace(fresh.eval(), x)  # check_trace runs it again: the graphs must agree
    assert_matches(traced(x), _eager(fresh, x), fresh)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    assert_matches(torch.jit.load(buffer)(x), _eager(fresh, x), fresh)


def test_scripting_many_nets_and_bare_layers_in_one_process():
    """A failed script used to leave "Can't redefine method" behind; the layers also script as they are."""
    for name in ("P4UNet", "GroupCNN-3d", "SE2CNN"):
        net, x = _build(name)
        assert_matches(torch.jit.script(net)(x), _eager(net, x), net)

    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lift, self.conv = LiftingConv(1, 2, "p4"), GroupConv(2, 1, "p4")

        def forward(self, x):
            return self.conv(torch.relu(self.lift(x)))

    custom = Custom().eval()
    x = torch.randn(1, 1, 7, 7)
    scripted = torch.jit.script(custom)
    assert_matches(scripted(x), _eager(custom, x), custom)
    assert isinstance(custom.conv, GroupConv)  # scripting did not swap the user's layers
    with pytest.raises(Exception, match="input channels"):
        scripted(torch.randn(1, 3, 7, 7))


# dynamo ONNX export takes a few seconds per net on 2 cores (about 30 s for all): every net in the default run
@pytest.mark.parametrize("name", list(NETS))
def test_onnx_legacy_and_monai_convert_to_onnx_dynamo(name):
    from monai.networks.utils import convert_to_onnx

    net, x = _build(name)
    expected = _eager(net, x)
    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, dynamo=False)
    assert_matches(_ort(buffer.getvalue(), x), expected, net)
    fresh, x = _build(name)
    model = convert_to_onnx(fresh, [x], dynamo=True, verify=True, use_ort=True, rtol=0,
                             atol=roundoff_atol(expected, fresh))
    assert_matches(_ort(model, x), expected, fresh)


def test_torch_onnx_dynamo_and_reference_evaluator(tmp_path):
    from onnx.reference import ReferenceEvaluator

    net, x = _build("P4UNet")
    path = str(tmp_path / "p4.onnx")
    torch.onnx.export(net.eval(), (x,), path, dynamo=True)
    evaluator = ReferenceEvaluator(path)
    out = evaluator.run(None, {evaluator.input_names[0]: x.numpy()})[0]
    assert_matches(torch.from_numpy(out), _eager(net, x), net)


def test_onnx_metadata_keeps_the_input_size_check(tmp_path):
    """A traced ONNX graph drops the Python size check (65×65 failed deep inside with a concat error): the
    admissible sizes go into the model's metadata and check_onnx_input names the problem."""
    net = P4UNet(2, 1, 1, channels=(2, 4, 8))
    plain = export(net)
    x = torch.randn(1, 1, 16, 16)
    path = str(tmp_path / "plain.onnx")
    torch.onnx.export(plain, (x,), path, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    add_onnx_metadata(path, net)
    check_onnx_input(path, (2, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 4"):
        check_onnx_input(path, (1, 1, 65, 65))
    with pytest.raises(ValueError, match="1 input channels"):
        check_onnx_input(path, (1, 3, 64, 64))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="multiples of 4"):
        check_onnx_input(session, (1, 1, 65, 65))
    y = torch.randn(1, 1, 32, 32)
    out = session.run(None, {"x": y.numpy()})[0]
    assert_matches(torch.from_numpy(out), _eager(net, y), net)


def test_check_onnx_input_on_a_model_without_the_metadata_says_nothing_can_be_checked(tmp_path):
    """A file written by torch.onnx.export alone used to pass every shape (issue 19 item 9): ValueError naming the
    file, that it has no monai_equivariant metadata, and how to add it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    model.metadata_props.add(key="producer_note", value="not ours")  # other metadata do not count
    path = str(tmp_path / "bare.onnx")
    onnx.save(model, path)
    for source, named in ((path, "bare.onnx"), (model, "ModelProto")):
        with pytest.raises(ValueError, match=f"{named}.* has no monai_equivariant metadata.*add_onnx_metadata"):
            check_onnx_input(source, (1, 1, 64, 64))
    add_onnx_metadata(path, P4UNet(2, 1, 1, channels=(2, 4)))
    check_onnx_input(path, (1, 1, 64, 64))  # with the metadata: checked and fine


def test_export_onnx_records_sizes_and_a_65_input_gets_a_clear_error(tmp_path):
    """export_onnx: export(net) with dynamic batch/spatial axes and the size rule in the metadata; a 65×65 input
    is refused by check_onnx_input naming the multiple and the nearest admissible sizes (issue 10 item 13)."""
    ort = pytest.importorskip("onnxruntime")
    net = SE2UNet(2, 1, 1, channels=(2, 4, 8), num_rotations=8)
    path = export_onnx(net, str(tmp_path / "se2.onnx"), torch.randn(1, 1, 16, 16))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["monai_equivariant.size_multiple"] == "4"
    with pytest.raises(ValueError, match=r"multiples of 4 .* 64 or 68"):
        check_onnx_input(session, (1, 1, 65, 65))
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(1, 1, 65, 65))  # the eager net says the same
    y = torch.randn(2, 1, 24, 32)
    check_onnx_input(session, tuple(y.shape))
    out = session.run(None, {"input": y.numpy()})[0]
    assert_matches(torch.from_numpy(out), _eager(net, y), net)


@pytest.mark.parametrize("name", list(NETS))
def test_pickle_torch_save_and_deepcopy_round_trip(name):
    net, x = _build(name)
    net = scriptable(net)  # what the network factory does: must stay picklable
    expected = _eager(net, x)
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(_eager(loaded, x), expected, rtol=0, atol=0)
    torch.testing.assert_close(_eager(pickle.loads(pickle.dumps(net)), x), expected, rtol=0, atol=0)
    torch.testing.assert_close(_eager(copy.deepcopy(net), x), expected, rtol=0, atol=0)
    assert set(loaded.state_dict()) == set(net.state_dict())
    assert_matches(torch.jit.script(loaded)(x), expected, net)


def test_factory_nets_pickle():
    from monai_equivariant.networks.factory import classification_network, segmentation_network

    for net, shape in ((segmentation_network("p4", in_channels=1, channels=(2, 4)), (1, 1, 8, 8)),
                       (classification_network("O", spatial_dims=3, in_channels=1, channels=(2, 4)), (1, 1, 4, 4, 4))):
        x = torch.randn(shape)
        buffer = io.BytesIO()
        torch.save(net, buffer)
        buffer.seek(0)
        torch.testing.assert_close(_eager(torch.load(buffer, weights_only=False), x), _eager(net, x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(NETS))
def test_channels_last(name):
    net, x = _build(name)
    expected = _eager(net, x)
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    converted = copy.deepcopy(net).to(memory_format=fmt)
    out = _eager(converted, x.contiguous(memory_format=fmt))
    assert_matches(out, expected, net)
    if name in ("P4UNet", "GroupCNN-3d"):  # training step too
        converted.train()
        converted(x.contiguous(memory_format=fmt)).sum().backward()
        assert all(p.grad is not None for p in converted.parameters())
    assert set(converted.state_dict()) == set(net.state_dict())
    assert [tuple(v.shape) for v in converted.state_dict().values()] == [
        tuple(v.shape) for v in net.state_dict().values()
    ]


def _registry_cases():
    """Every name the network factory registers (what bundles offer through ``--network_name``), tiny."""
    from monai_equivariant.networks.factory import (
        SEGMENTATION_NETWORKS,
        classification_network,
        segmentation_network,
    )

    from monai_equivariant.networks.registry import network_entries

    cases = {}
    for name in SEGMENTATION_NETWORKS:
        if name.startswith("dynunet"):
            continue  # below: at least 3 levels, odd-grid sides 1 + m·P, in 2D and 3D
        side = 16 if name.startswith("basicunet") else 8  # BasicUNet: four 2×2 pools, sides multiples of 16
        cases[f"segmentation-{name}"] = (
            lambda n=name: segmentation_network(n, in_channels=1, channels=(2, 4)), (1, 1, side, side)
        )
    for entry in network_entries("segmentation"):
        if entry.name.startswith("dynunet"):
            dims = entry.spatial_dims
            # the twins: odd-grid sides 1 + m·P; MONAI's own DynUNet ("dynunet"): multiples of P
            sides = (4, 8, 8) if entry.name == "dynunet" else (3, 5, 5)
            cases[f"segmentation-{entry.name}-{dims}d"] = (
                lambda n=entry.name, d=dims: segmentation_network(n, spatial_dims=d, in_channels=1, channels=(2, 3, 4)),
                (1, 1) + (sides if dims == 3 else sides[1:]),
            )
    for entry in network_entries("classification"):
        name, dims = entry.name, entry.spatial_dims
        side = 8 if name.startswith("resnet") else 4  # the ResNets' three strided stages: sides multiples of 8
        cases[f"classification-{name}-{dims}d"] = (
            lambda n=name, d=dims: classification_network(n, spatial_dims=d, in_channels=1, channels=(2, 4)),
            (1, 1) + (side,) * dims,
        )
    return cases


REGISTRY = _registry_cases()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_network_exports_pickles_and_goes_channels_last(name):
    """Each factory name, fresh: MONAI's convert_to_torchscript, jit.trace, legacy ONNX, torch.save and
    channels-last, all equal to eager (dynamo ONNX per network class above)."""
    from monai.networks.utils import convert_to_torchscript

    make, shape = REGISTRY[name]
    torch.manual_seed(0)
    net, x = make(), torch.randn(shape)
    expected = _eager(copy.deepcopy(net), x)
    scripted = convert_to_torchscript(net, verify=True, inputs=[x], rtol=0, atol=roundoff_atol(expected, net))
    assert_matches(scripted(x), expected, net)
    torch.manual_seed(0)
    fresh = make().eval()
    assert_matches(torch.jit.trace(fresh, x)(x), expected, fresh)
    buffer = io.BytesIO()
    torch.onnx.export(fresh, (x,), buffer, dynamo=False)
    assert_matches(_ort(buffer.getvalue(), x), expected, fresh)
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    torch.testing.assert_close(_eager(torch.load(buffer, weights_only=False), x), expected, rtol=0, atol=0)
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    converted = copy.deepcopy(net).to(memory_format=fmt)
    assert_matches(_eager(converted, x.contiguous(memory_format=fmt)), expected, net)


def _doc_blocks():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_export_examples_run(capsys):
    """The code blocks of docs/export.md run in order in one namespace (the torch.compile block: slow test below
    and tests/test_compile.py)."""
    pytest.importorskip("onnxruntime")
    blocks = _doc_blocks()
    assert len(blocks) >= 7
    namespace: dict = {}
    for block in blocks:
        if "torch.compile" not in block:
            exec(compile(block, "docs/export.md", "exec"), namespace)
    assert "multiples of 4" in capsys.readouterr().out


@pytest.mark.slow
def test_docs_export_compile_example():
    namespace: dict = {"torch": torch, "P4UNet": P4UNet}
    for block in _doc_blocks():
        if "torch.compile" in block:
            exec(compile(block, "docs/export.md", "exec"), namespace)
