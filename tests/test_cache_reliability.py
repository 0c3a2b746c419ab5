"""The eval-mode filter cache: correct after every way torch code changes weights, and out of the way of every
tracer/compiler (issue 10 item 3, issue 11)."""

import pytest
import torch
from helpers import assert_matches

from monai_equivariant.layers import GroupConv, LiftingConv
from monai_equivariant.networks.nets import P4UNet


def _layer():
    conv = GroupConv(2, 3, "p4").eval()
    x = torch.randn(1, 8, 6, 6)
    return conv, x


def _fresh(conv, x):
    """The output with a bank built from the current weights (no cache involved)."""
    with torch.no_grad():
        return conv.to_plain()(x)


def _warm(conv, x):
    with torch.no_grad():
        out = conv(x)
    assert conv._cache.filled
    return out


EDITS = {
    "data_assignment": lambda c: setattr(c.weight, "data", torch.randn_like(c.weight)),
    "data_copy_": lambda c: c.weight.data.copy_(torch.randn_like(c.weight)),
    "data_mul_": lambda c: c.weight.data.mul_(-2.0),
    "bias_data_add_": lambda c: c.bias.data.add_(1.0),
    "copy_under_no_grad": lambda c: c.weight.copy_(torch.randn_like(c.weight)),
    "numpy_view": lambda c: c.weight.detach().numpy().__setitem__((0, 0, 0, 1, 1), 5.0),
    "load_state_dict": lambda c: c.load_state_dict(
        {"weight": torch.randn_like(c.weight), "bias": torch.randn_like(c.bias)}
    ),
    "float64": lambda c: c.to(torch.float64),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_cache_sees_every_weight_edit(edit):
    conv, x = _layer()
    before = _warm(conv, x)
    with torch.no_grad():
        EDITS[edit](conv)
    x = x.to(conv.weight.dtype)
    with torch.no_grad():
        after = conv(x)
    expected = _fresh(conv, x)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert not torch.allclose(after.to(before.dtype), before)


def test_cache_after_optimizer_step():
    conv, x = _layer()
    _warm(conv, x)
    opt = torch.optim.Adam(conv.parameters(), lr=0.1)
    conv.train()
    conv(x).square().mean().backward()
    opt.step()
    conv.eval()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)
    # an optimizer step while staying in eval mode (gradients on for the step only)
    conv(x).square().mean().backward()
    opt.step()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)


def test_cache_does_not_call_data_ptr(monkeypatch):
    conv, x = _layer()

    def forbidden(self):
        raise AssertionError("data_ptr() called")

    monkeypatch.setattr(torch.Tensor, "data_ptr", forbidden)
    with torch.no_grad():
        conv(x)
        conv(x)
    assert conv._cache.filled


def test_nets_built_and_run_under_inference_mode():
    with torch.inference_mode():
        net = P4UNet(2, 1, 1, channels=(2, 4)).eval()
        x = torch.randn(1, 1, 8, 8)
        first = net(x)
        net.encoder[0][0][0].weight.mul_(2.0)  # inference tensors: in-place edits are allowed here
        second = net(x)
    assert not torch.equal(first, second)
    with torch.no_grad():
        torch.testing.assert_close(net(x), second, rtol=0, atol=0)


def test_cache_stands_aside_under_tracing_and_compiling():
    conv, x = _layer()
    conv._cache.clear()
    with torch.no_grad():
        traced = torch.jit.trace(conv, x)  # check_trace runs it twice: graphs must agree
    assert "index_select" in str(traced.graph)  # the trace expands the weight; it holds no cached bank
    with torch.no_grad():
        conv.weight.mul_(-1.0)
    assert_matches(traced(x), _fresh(conv, x), conv)
    conv._cache.clear()
    compiled = torch.compile(conv, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert_matches(compiled(x), _fresh(conv, x), conv)
    assert not conv._cache.filled
    with torch.no_grad():
        program = torch.export.export(conv, (x,))
    assert not conv._cache.filled
    assert_matches(program.module()(x), _fresh(conv, x), conv)


def test_copies_start_with_an_empty_cache():
    import copy
    import pickle

    conv, x = _layer()
    _warm(conv, x)
    assert not copy.deepcopy(conv)._cache.filled
    restored = pickle.loads(pickle.dumps(conv))
    assert not restored._cache.filled
    with torch.no_grad():
        torch.testing.assert_close(restored(x), conv(x), rtol=0, atol=0)


def test_lifting_conv_cache_tracks_data_edits():
    conv = LiftingConv(1, 2, "p4m").eval()
    x = torch.randn(1, 1, 5, 5)
    _warm(conv, x)
    conv.weight.data.copy_(torch.randn_like(conv.weight))
    with torch.no_grad():
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)


def test_frozen_filters_skip_the_check_inside_and_catch_edits_on_exit(monkeypatch):
    from monai_equivariant.layers import filter_cache, frozen_filters

    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 4), strides=(2,)).eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
    compared = []
    original = filter_cache._same
    monkeypatch.setattr(filter_cache, "_same", lambda a, b: compared.append(1) or original(a, b))
    with torch.no_grad(), frozen_filters(net):
        for _ in range(3):
            assert torch.equal(net(x), expected)
        assert compared == []  # no parameter read per forward inside the block
    assert compared  # compared once on leaving

    conv = next(m for m in net.modules() if isinstance(m, GroupConv))
    with pytest.raises(RuntimeError, match="changed inside frozen_filters"):
        with torch.no_grad(), frozen_filters(net):
            net(x)
            conv.weight.data.mul_(2.0)  # an edit no version counter sees
            net(x)  # stale inside the block: reported on exit
    with torch.no_grad():
        fresh = net(x)
    assert not torch.equal(fresh, expected)  # the stale banks were dropped
    with torch.no_grad():
        conv.weight.data.mul_(0.5)
        assert torch.equal(net(x), expected)

    with pytest.raises(ZeroDivisionError):  # an error inside the block is not masked
        with torch.no_grad(), frozen_filters(net):
            net(x)
            conv.weight.data.mul_(2.0)
            1 / 0
    conv.weight.data.mul_(0.5)
    with frozen_filters(net), frozen_filters(net), torch.no_grad():  # nested blocks
        assert torch.equal(net(x), expected)
    net.train()
    with frozen_filters(net):  # training inside a block: banks are built per step, nothing is stale
        net(x).sum().backward()
        conv.weight.data.add_(1.0)
        net(x)
