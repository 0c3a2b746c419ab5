"""``torch.compile`` of every network on the first call: one graph (``fullgraph=True``, no graph break) for a
training step's forward, outputs and gradients equal to eager (issue 10 item 7, issue 13 item 2).

Inductor takes tens of seconds per net on 2 shared cores (about a minute for the tiny P4UNet with a cold inductor
cache), so the default run checks P4UNet only, without inductor: its graph (dynamo ``explain``: one graph, no
break) and its training step through dynamo + AOT autograd (``aot_eager``); inductor (P4UNet on its first call,
and every net) and the other nets under ``aot_eager`` run with ``pytest -m slow``. Training-step comparisons
run in float64, so compiled and eager agree to round-off (in float32, batch norm over a tiny batch amplifies the
reordering of sums that inductor does)."""

import copy

import pytest
import torch

from test_export_tools import NETS, _build


def _compiled_matches_eager(name: str, backend: str) -> None:
    torch._dynamo.reset()
    net, x = _build(name)
    net, x = net.double(), torch.cat([x, x.flip(-1)]).double()  # batch 2: batch norm in training mode
    reference = copy.deepcopy(net)
    explanation = torch._dynamo.explain(copy.deepcopy(net))(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1

    compiled = torch.compile(net, fullgraph=True, backend=backend)
    out = compiled(x)  # the first call is a training step
    out.square().mean().backward()
    expected = reference(x)
    expected.square().mean().backward()
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    for (key, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-9, msg=lambda m, k=key: f"{k}: {m}")

    net.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-9, atol=1e-10)


AOT_DEFAULT = ("P4UNet",)


@pytest.mark.parametrize(
    "name", [n if n in AOT_DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in NETS]
)
def test_compile_train_step_one_graph_aot_eager(name):
    _compiled_matches_eager(name, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETS))
def test_compile_train_step_inductor(name):
    _compiled_matches_eager(name, "inductor")


def test_compile_p4unet_inductor_first_call_equals_eager():
    """What users run: float32, compiled before any eager call (the tables were built at construction), a
    training step first (this failed with "InductorError: Exponent must be non-negative").

    In the default run (about 35 s warm, a minute with an empty inductor cache): one inductor compile (forward +
    backward). Eval mode under inductor (a second compile) is checked for every net by the slow
    ``test_compile_train_step_inductor``, and under ``aot_eager`` by the default run."""
    torch._dynamo.reset()
    net, x = _build("P4UNet")
    x = torch.cat([x, x.flip(-1)])
    reference = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_compiled_training_step_takes_the_input_route_in_one_graph(monkeypatch):
    """Under ``torch.compile`` the deep levels take the input route as in eager code (its tables become graph
    constants): one graph, and outputs and gradients equal to eager (float64, ``aot_eager``)."""
    from monai_equivariant.layers import GroupConv
    from monai_equivariant.networks.nets import P4UNet

    traced = []
    original = GroupConv._forward_by_input_transform
    monkeypatch.setattr(GroupConv, "_forward_by_input_transform",
                        lambda self, x: traced.append(tuple(x.shape)) or original(self, x))
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 32), strides=(2,)).double()  # 32 fields on 4×4: the input route
    x = torch.randn(2, 1, 8, 8, dtype=torch.double)
    reference = copy.deepcopy(net)
    explanation = torch._dynamo.explain(copy.deepcopy(net))(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    traced.clear()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    assert traced, "the compiled forward did not take the input route"
    out.square().mean().backward()
    expected = reference(x)
    expected.square().mean().backward()
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-9)
