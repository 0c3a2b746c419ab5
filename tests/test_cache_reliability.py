"""The eval-mode filter cache: correct after every change to the weights that PyTorch's version counter or the
tensor's identity and storage records, with no value comparison per forward (issue 22 item 4); edits that bypass
the counter are seen by ``filter_cache_check("values")`` and refreshed by ``clear_filter_caches``/``net.eval()``;
out of the way of every tracer/compiler (issue 10 item 3, issue 11)."""

import collections
import copy
import pickle

import pytest
import torch
import torch.nn as nn
from helpers import assert_matches
from torch.overrides import TorchFunctionMode

from monai_equivariant.layers import (GroupConv, GroupConvTranspose, LiftingConv, SeparableGroupConv,
                                      clear_filter_caches, filter_cache, filter_cache_check, frozen_filters)
from monai_equivariant.layers.filter_cache import FilterCache
from monai_equivariant.networks.nets import P4UNet
from monai_equivariant.utils.export import export


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


def _swap_to_float64(c):
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        c.to(torch.float64)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)


SEEN = {  # edits that go through the version counter or replace the tensor, its storage or its layout
    "data_assignment": lambda c: setattr(c.weight, "data", torch.randn_like(c.weight)),
    "copy_under_no_grad": lambda c: c.weight.copy_(torch.randn_like(c.weight)),
    "view_mul_under_no_grad": lambda c: c.weight[0].mul_(-1.0),
    "detached_alias_mul_": lambda c: c.weight.detach().mul_(-1.0),  # detach() shares the version counter
    "mul_under_inference_mode": lambda c: torch.inference_mode()(c.bias.add_)(1.0),
    "init_normal_": lambda c: nn.init.normal_(c.weight),
    "set_": lambda c: c.weight.set_(torch.randn_like(c.weight)),
    "swap_tensors": lambda c: torch.utils.swap_tensors(c.weight, nn.Parameter(torch.randn_like(c.weight))),
    "new_parameter": lambda c: setattr(c, "weight", nn.Parameter(torch.randn_like(c.weight))),
    "load_state_dict": lambda c: c.load_state_dict(
        {"weight": torch.randn_like(c.weight), "bias": torch.randn_like(c.bias)}
    ),
    "load_state_dict_assign": lambda c: c.load_state_dict(
        {"weight": torch.randn_like(c.weight), "bias": torch.randn_like(c.bias)}, assign=True
    ),
    "vector_to_parameters": lambda c: nn.utils.vector_to_parameters(
        torch.randn(sum(p.numel() for p in c.parameters())), c.parameters()
    ),
    "float64": lambda c: c.to(torch.float64),
    "float64_swapping_params": _swap_to_float64,
}

def _dlpack_alias(t):
    """A tensor on ``t``'s memory through DLPack: a fresh version counter."""
    return torch.utils.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t.detach()))


def _numpy_add(c):
    c.weight.detach().numpy()[0, 0, 0, 1, 1] += 5.0


UNSEEN = {  # edits that bypass the version counter: seen by the "values" check only
    "data_copy_": lambda c: c.weight.data.copy_(torch.randn_like(c.weight)),
    "data_mul_": lambda c: c.weight.data.mul_(-2.0),
    "bias_data_add_": lambda c: c.bias.data.add_(1.0),
    "numpy_view": _numpy_add,
    "dlpack_view": lambda c: _dlpack_alias(c.weight).mul_(-2.0),
}


@pytest.mark.parametrize("edit", list(SEEN))
def test_default_check_sees_every_edit_through_the_version_counter_or_a_new_tensor(edit):
    conv, x = _layer()
    before = _warm(conv, x)
    assert not conv._cache._snapshot.has_values  # no copy of the parameters is kept
    with torch.no_grad():
        SEEN[edit](conv)
    x = x.to(conv.weight.dtype)
    with torch.no_grad():
        after = conv(x)
    torch.testing.assert_close(after, _fresh(conv, x), rtol=0, atol=0)
    assert not torch.allclose(after.to(before.dtype), before)


@pytest.mark.parametrize("edit", list(UNSEEN))
def test_edits_that_bypass_the_version_counter_need_the_values_check_or_a_refresh(edit):
    conv, x = _layer()
    before = _warm(conv, x)
    with torch.no_grad():
        UNSEEN[edit](conv)
        # the default check's limitation, documented: the bank of the old weights is reused
        assert torch.equal(conv(x), before)
        assert not torch.allclose(_fresh(conv, x), before)

        # refreshed by clear_filter_caches() or by eval() again
        assert clear_filter_caches(conv) == 1
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)
        stale = conv(x)
        UNSEEN[edit](conv)
        assert torch.equal(conv(x), stale)
        conv.eval()
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)

        # the "values" check sees it (a bank cached without a copy of the values is built again first)
        with filter_cache_check("values"):
            assert filter_cache_check.current() == "values"
            conv(x)
            assert conv._cache._snapshot.has_values
            UNSEEN[edit](conv)
            torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)
        assert filter_cache_check.current() == "version"


def test_filter_cache_check_sets_until_changed_and_refuses_unknown_checks():
    assert filter_cache_check.current() == "version"
    try:
        filter_cache_check("values")  # a call sets it for the process
        assert filter_cache_check.current() == "values"
        with filter_cache_check("version"):
            assert filter_cache_check.current() == "version"
        assert filter_cache_check.current() == "values"
    finally:
        filter_cache_check("version")
    for bad in ("value", None, True):
        with pytest.raises(ValueError, match=r"filter_cache_check expects one of \('version', 'values'\).*got"):
            filter_cache_check(bad)
    assert filter_cache_check.current() == "version"
    with pytest.raises(TypeError, match="clear_filter_caches expects a torch.nn.Module.*got int"):
        clear_filter_caches(3)


@pytest.mark.parametrize("kind", ["sgd", "adam_for_loop", "adam_foreach", "adam_fused", "sgd_fused"])
def test_cache_after_optimizer_step(kind):
    """Fused steps bump no version counter: the optimizer step hook marks their parameters."""
    make = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
        "adam_for_loop": lambda ps: torch.optim.Adam(ps, lr=0.1, foreach=False),
        "adam_foreach": lambda ps: torch.optim.Adam(ps, lr=0.1, foreach=True),
        "adam_fused": lambda ps: torch.optim.Adam(ps, lr=0.1, fused=True),
        "sgd_fused": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True),
    }[kind]
    conv, x = _layer()
    _warm(conv, x)
    opt = make(conv.parameters())
    conv.train()
    conv(x).square().mean().backward()
    opt.step()
    conv.eval()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), _fresh(conv, x), rtol=0, atol=0)
    for _ in range(2):  # optimizer steps while staying in eval mode (gradients on for the step only)
        before = _warm(conv, x)
        conv(x).square().mean().backward()
        opt.step()
        with torch.no_grad():
            after = conv(x)
        torch.testing.assert_close(after, _fresh(conv, x), rtol=0, atol=0)
        assert not torch.equal(after, before)


def test_functional_call_uses_its_tensors_and_leaves_the_module_bank_correct():
    conv, x = _layer()
    own = _warm(conv, x)
    other = {"weight": torch.randn_like(conv.weight), "bias": torch.randn_like(conv.bias)}
    with torch.no_grad():
        out = torch.func.functional_call(conv, other, (x,))
        reference = copy.deepcopy(conv)
        reference.load_state_dict(other)
        torch.testing.assert_close(out, _fresh(reference, x), rtol=0, atol=0)
        torch.testing.assert_close(conv(x), own, rtol=0, atol=0)


def test_cache_does_not_call_data_ptr(monkeypatch):
    conv, x = _layer()

    def forbidden(self):
        raise AssertionError("data_ptr() called")

    monkeypatch.setattr(torch.Tensor, "data_ptr", forbidden)
    with torch.no_grad():
        conv(x)
        conv(x)
    assert conv._cache.filled


def test_nets_built_and_run_under_inference_mode(monkeypatch):
    """Inference tensors have no version counter: compared by value, whatever the check."""
    compared = []
    original = filter_cache._same
    monkeypatch.setattr(filter_cache, "_same", lambda a, b: compared.append(1) or original(a, b))
    with torch.inference_mode():
        net = P4UNet(2, 1, 1, channels=(2, 4)).eval()
        x = torch.randn(1, 1, 8, 8)
        first = net(x)
        assert compared == []
        net.encoder[0][0][0].weight.mul_(2.0)  # inference tensors: in-place edits are allowed here
        second = net(x)
        assert compared
        net.encoder[0][0][0].weight.data.mul_(0.5)
        assert torch.equal(net(x), first)
    assert not torch.equal(first, second)
    with torch.no_grad():
        torch.testing.assert_close(net(x), first, rtol=0, atol=0)


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
    conv, x = _layer()
    _warm(conv, x)
    assert not copy.deepcopy(conv)._cache.filled
    restored = pickle.loads(pickle.dumps(conv))
    assert not restored._cache.filled
    with torch.no_grad():
        torch.testing.assert_close(restored(x), conv(x), rtol=0, atol=0)


def _steerable_unet():
    from monai_equivariant.networks.nets import SteerableUNet

    pytest.importorskip("escnn")
    return SteerableUNet(2, 1, 1, (2, 3), num_rotations=4), torch.randn(1, 1, 16, 16)


@pytest.mark.parametrize("make", [
    lambda: (LiftingConv(1, 2, "p4m"), torch.randn(1, 1, 5, 5)),
    lambda: (GroupConvTranspose(2, 2, "p4", kernel_size=2, stride=2), torch.randn(1, 8, 4, 4)),
    lambda: (SeparableGroupConv(2, 3, "p4"), torch.randn(1, 8, 5, 5)),
    _steerable_unet,
], ids=["lifting", "transposed", "separable", "steerable"])
def test_every_cache_owner_refreshes_on_eval_and_clear(make):
    layer, x = make()
    layer.eval()

    def assert_fresh():
        torch.testing.assert_close(layer(x), export(layer)(x), rtol=1e-6, atol=1e-6)

    owners = [m for m in layer.modules() if isinstance(getattr(m, "_cache", None), FilterCache)]
    cached = [p for m in owners for p in m.parameters(recurse=False)]  # what the cached banks are built from
    assert owners and cached
    with torch.no_grad():
        stale = layer(x)
        for p in cached:
            p.data.copy_(torch.randn_like(p))  # unseen by the default check
        assert torch.equal(layer(x), stale)
        assert clear_filter_caches(layer) == len(owners)
        assert_fresh()
        for p in cached:
            p.data.mul_(-1.0)
        layer.eval()
        assert_fresh()
        with filter_cache_check("values"):
            for p in cached:
                p.data.mul_(2.0)
            assert_fresh()


class _SyncCounter(TorchFunctionMode):
    """Counts calls that read a tensor's values on the host (a host sync on a GPU)."""

    SYNCS = {torch.equal, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__bool__,
             torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.cpu,
             torch.Tensor.allclose, torch.allclose, torch.Tensor.equal}

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCS:
            self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("fused", [False, True])
def test_an_eval_forward_makes_no_value_comparison_until_a_weight_changes(monkeypatch, fused):
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 4), strides=(2,)).eval()
    x = torch.randn(1, 1, 8, 8)
    names = {m: name for name, m in net.named_modules()}
    builds, lookups, compared = collections.Counter(), collections.Counter(), []
    original_get, original_same = FilterCache.get, filter_cache._same

    def counting_get(self, module, params, build):
        lookups[names[module]] += 1
        return original_get(self, module, params, lambda: builds.update([names[module]]) or build())

    monkeypatch.setattr(FilterCache, "get", counting_get)
    monkeypatch.setattr(filter_cache, "_same", lambda a, b: compared.append(1) or original_same(a, b))

    def forward():
        builds.clear(), lookups.clear(), compared.clear()
        with torch.no_grad(), _SyncCounter() as syncs:
            out = net(x)
        return out, syncs.calls

    first, _ = forward()
    cached = set(lookups)
    assert len(cached) >= 4 and builds == lookups  # the first forward builds every bank
    for _ in range(2):
        out, syncs = forward()
        assert torch.equal(out, first)
        assert builds == {} and compared == [] and syncs == {}, (builds, compared, syncs)
        assert set(lookups) == cached

    # an optimizer step on one layer (staying in eval mode): exactly that layer rebuilds
    stepped = sorted(cached)[0]
    layer = net.get_submodule(stepped)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, fused=fused)
    net(x).square().mean().backward()
    opt.step()
    out, syncs = forward()
    assert set(builds) == {stepped} and compared == [] and syncs == {}
    assert not torch.equal(out, first)
    assert_matches(out, export(net)(x), net)
    forward()
    assert builds == {}

    # a partial load_state_dict: exactly the layers it writes rebuild; a full one writes (so rebuilds) them all
    loaded = sorted(cached)[-1]
    state = {f"{loaded}.weight": torch.randn_like(net.get_submodule(loaded).weight)}
    net.load_state_dict(state, strict=False)
    forward()
    assert set(builds) == {loaded} and compared == []
    net.load_state_dict(net.state_dict())
    forward()
    assert set(builds) == cached and compared == []
    forward()
    assert builds == {}

    # the counters do count: the "values" check compares every parameter of every cached layer per forward
    with filter_cache_check("values"):
        forward()  # builds again, keeping a copy of the values
        _, syncs = forward()
    assert builds == {} and len(compared) == sum(len(list(net.get_submodule(n).parameters())) for n in cached)
    assert sum(syncs.values()) == len(compared)


def test_frozen_filters_skip_the_check_inside_and_catch_edits_on_exit(monkeypatch):
    torch.manual_seed(0)
    net = P4UNet(2, 1, 1, channels=(2, 4), strides=(2,)).eval()
    x = torch.randn(1, 1, 8, 8)
    conv = next(m for m in net.modules() if isinstance(m, GroupConv))
    with torch.no_grad():
        expected = net(x)
    checked = []
    original = filter_cache._Snapshot.matches
    monkeypatch.setattr(filter_cache._Snapshot, "matches", lambda *a: checked.append(1) or original(*a))
    with torch.no_grad(), frozen_filters(net):
        for _ in range(3):
            assert torch.equal(net(x), expected)
        assert checked == []  # no check per forward inside the block
    assert checked  # checked once on leaving

    with pytest.raises(RuntimeError, match="changed inside frozen_filters"):  # an edit the version counter sees
        with torch.no_grad(), frozen_filters(net):
            net(x)
            conv.weight.mul_(2.0)
            net(x)  # stale inside the block: reported on exit
    with torch.no_grad():
        fresh = net(x)
    assert not torch.equal(fresh, expected)  # the stale banks were dropped
    with torch.no_grad():
        conv.weight.mul_(0.5)
        assert torch.equal(net(x), expected)

    with torch.no_grad(), frozen_filters(net):  # the default check's limitation: a .data edit goes unseen
        net(x)
        conv.weight.data.mul_(2.0)
    with torch.no_grad():
        assert torch.equal(net(x), expected)  # still the old bank: refresh it
        clear_filter_caches(net)
        assert torch.equal(net(x), fresh)
        conv.weight.data.mul_(0.5)
        net.eval()

    with filter_cache_check("values"):  # the "values" check sees it on leaving
        with pytest.raises(RuntimeError, match="changed inside frozen_filters"):
            with torch.no_grad(), frozen_filters(net):
                net(x)
                conv.weight.data.mul_(2.0)
                net(x)
        with torch.no_grad():
            assert torch.equal(net(x), fresh)
            conv.weight.data.mul_(0.5)
            assert torch.equal(net(x), expected)

    with pytest.raises(ZeroDivisionError):  # an error inside the block is not masked
        with torch.no_grad(), frozen_filters(net):
            net(x)
            conv.weight.mul_(2.0)
            1 / 0
    with torch.no_grad():
        conv.weight.mul_(0.5)
    with frozen_filters(net), frozen_filters(net), torch.no_grad():  # nested blocks
        assert torch.equal(net(x), expected)
    net.train()
    with frozen_filters(net):  # training inside a block: banks are built per step, nothing is stale
        net(x).sum().backward()
        conv.weight.data.add_(1.0)
        net(x)
