import copy
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


@pytest.mark.parametrize("dims,group,norm_class", [(2, "p4", GroupBatchNorm), (3, "O", GroupBatchNorm),
                                                    (2, "p4m", GroupInstanceNorm), (3, "D4h", GroupInstanceNorm)])
def test_norms_view_channels_last_tensors_without_a_copy(dims, group, norm_class):
    """The field view (B, C, |G|, *spatial) that the shared-over-group norms normalise is a view of contiguous and
    of channels-last tensors (what inductor's CPU layout optimisation makes of conv outputs; the copy of the
    (B, C, -1) reshape before cost compiled P4UNet training 9-17 %), and the norm's outputs, running statistics
    and input gradients are the same in both layouts (float32 round-off of a mean over the batch's
    B·|G|·prod(spatial) entries)."""
    g = get_group(group)
    torch.manual_seed(0)
    norm = norm_class(3, g.order, spatial_dims=dims, affine=True, track_running_stats=True)
    x = torch.randn((2, 3 * g.order) + (5,) * dims) * 2 + 1
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    x_cl = x.contiguous(memory_format=layout)
    for tensor in (x, x_cl):
        view = norm.fields_view(tensor)
        assert view.shape == (2, 3, g.order) + (5,) * dims and view.data_ptr() == tensor.data_ptr()
        assert view._base is tensor or view._base is tensor._base, "the field view copied the tensor"
    twin = copy.deepcopy(norm)
    a, b = x.clone().requires_grad_(), x_cl.clone().requires_grad_()
    ya, yb = norm.train()(a), twin.train()(b)
    weight = torch.randn_like(ya)
    (ya * weight).sum().backward(), (yb * weight).sum().backward()
    fan_in = 2 * g.order * 5 ** dims
    assert_matches(yb, ya, depth=2, fan_in=fan_in, scale=ya.abs().max())
    assert_matches(b.grad, a.grad, depth=4, fan_in=fan_in, scale=a.grad.abs().max())
    assert_matches(twin.norm.running_var, norm.norm.running_var, depth=2, fan_in=fan_in)


def test_norms_load_the_state_dicts_of_their_one_dimensional_versions():
    """Before the field view the norms held ``nn.BatchNorm1d``/``nn.InstanceNorm1d``: today's have the same
    parameter and buffer names and shapes, so those checkpoints load and give the same eval outputs."""
    torch.manual_seed(0)
    old = torch.nn.BatchNorm1d(3)
    old.train()(torch.randn(4, 3, 40) * 2 + 1)
    old.weight.data.uniform_(0.5, 1.5), old.bias.data.uniform_(-1, 1)
    bn = GroupBatchNorm(3, 4)
    bn.load_state_dict({"norm." + k: v for k, v in old.state_dict().items()})
    x = torch.randn(2, 12, 5, 5)
    expected = old.eval()(x.reshape(2, 3, -1)).reshape(x.shape)
    assert_matches(bn.eval()(x), expected, depth=1, scale=expected.abs().max())


@pytest.mark.parametrize("momentum,affine", [(0.1, True), (None, False)])
def test_batch_norm_written_for_compile_equals_the_native_kernel(momentum, affine):
    """Under ``torch.compile`` a training batch norm runs ``batch_statistics_norm``: statistics per channel combined per
    field by the law of total variance, its own backward, an output that is not a view (``layers/compiled_norm.py`` and
    tests/test_compile.py say why). Called directly here, on channels whose means differ within a field, in both
    layouts, it gives the native kernel's outputs, input and affine gradients and running statistics (cumulative average
    when momentum is None), in 2D and 3D (round-off of means over B·|G|·prod(spatial) entries)."""
    from monai_equivariant.layers.compiled_norm import batch_statistics_norm

    for dims, group in ((2, "p4m"), (3, "O")):
        g = get_group(group)
        torch.manual_seed(0)
        native = GroupBatchNorm(3, g.order, spatial_dims=dims, momentum=momentum, affine=affine).train()
        if affine:
            native.norm.weight.data.uniform_(0.5, 1.5), native.norm.bias.data.uniform_(-1, 1)
        written = copy.deepcopy(native)
        fan_in = 2 * g.order * 5 ** dims
        offsets = torch.linspace(-4, 4, 3 * g.order).view((1, -1) + (1,) * dims)  # channel means differ in a field
        layout = torch.channels_last if dims == 2 else torch.channels_last_3d
        for step in range(2):
            x = torch.randn((2, 3 * g.order) + (5,) * dims) * 2 + step + offsets
            if step == 1:  # what inductor's layout optimisation makes of conv outputs
                x = x.contiguous(memory_format=layout)
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = native(a), batch_statistics_norm(b, written.norm, g.order)
            assert yb._base is None, "the output must not be a view"
            weight = torch.randn_like(ya)
            (ya * weight).sum().backward(), (yb * weight).sum().backward()
            assert_matches(yb, ya, depth=2, fan_in=fan_in, scale=ya.abs().max())
            assert_matches(b.grad, a.grad, depth=4, fan_in=fan_in, scale=a.grad.abs().max())
            for name in ("running_mean", "running_var"):
                expected = getattr(native.norm, name)
                assert_matches(getattr(written.norm, name), expected, depth=2, fan_in=fan_in, msg=name)
            assert int(written.norm.num_batches_tracked) == step + 1
        if affine:
            for name in ("weight", "bias"):
                expected = getattr(native.norm, name).grad
                assert_matches(getattr(written.norm, name).grad, expected, depth=4, fan_in=fan_in, msg=name)


@pytest.mark.parametrize("norm_class,track", [(GroupBatchNorm, True), (GroupBatchNorm, False),
                                              (GroupInstanceNorm, False), (GroupInstanceNorm, True)])
def test_norms_for_compile_equal_the_native_kernel_on_the_field_view(norm_class, track):
    """Under ``torch.compile`` the norms run ``forward_for_compile``: eval with running statistics
    (``frozen_statistics_norm``: each field's statistics and affine read per channel), instance norm without them
    (``group_norm``, one group per field) and batch statistics (``batch_statistics_norm``). Each gives the eager
    forward's outputs (the native kernel on the field view), a tensor that is not a view where the mode allows it, in
    training and eval, and eval changes no buffer."""
    g = get_group("p4m")
    torch.manual_seed(0)
    norm = norm_class(3, g.order, affine=True, track_running_stats=track)
    norm.norm.weight.data.uniform_(0.5, 1.5), norm.norm.bias.data.uniform_(-1, 1)
    x = torch.randn(4, 3 * g.order, 6, 6) * 2 + 1
    norm.train()(x)  # running statistics, if tracked
    for mode in (True, False):
        norm.train(mode)
        expected = norm(x)
        before = {k: v.clone() for k, v in norm.state_dict().items()}
        actual = norm.forward_for_compile(x)
        if not (mode and track and norm_class is GroupInstanceNorm):  # that one updates running statistics natively
            assert actual._base is None, f"training={mode}: the output must not be a view"
        assert_matches(actual, expected, depth=2, fan_in=4 * g.order * 36, scale=expected.abs().max())
        if not mode:
            for k, v in norm.state_dict().items():
                torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=f"eval changed {k}")


def test_repeat_per_field_is_a_well_formed_operator():
    """``repeat_per_field`` (the compiled norms' per-field to per-channel step, an operator so that inductor reads its
    output per channel): each value repeated |G| times, field-major, a fresh tensor (also for a trivial group or a
    single field: an operator's output may not alias its input, which GroupUNet-trivial and -3d-O hit under inductor),
    its gradient the sum over the |G| copies, and torch's operator checks (schema, fake tensor, autograd registration)
    pass."""
    from monai_equivariant.layers.compiled_norm import repeat_per_field

    for fields, group_size in ((5, 4), (5, 1), (1, 24)):  # trivial group, one field: views if not written with care
        values = torch.randn(3, fields, dtype=torch.float64, requires_grad=True)
        out = repeat_per_field(values, group_size)
        assert torch.equal(out, values.repeat_interleave(group_size, dim=-1))
        assert out.data_ptr() != values.data_ptr()
        torch.autograd.gradcheck(lambda v, n=group_size: repeat_per_field(v, n), (values,))
        torch.library.opcheck(torch.ops.monai_equivariant.repeat_per_field.default, (values, group_size))


def test_exported_eval_batch_norm_holds_only_torch_ops():
    """Inside ``torch.export`` the eval-mode group batch norm is ``batch_norm`` with the statistics repeated |G|
    times (the plain export's op): no operator of ours in the exported program, which then runs without this
    package, with the eager outputs."""
    g = get_group("p4")
    torch.manual_seed(0)
    norm = GroupBatchNorm(3, g.order)
    norm.train()(torch.randn(4, 3 * g.order, 6, 6) * 2 + 1)
    norm.eval()
    x = torch.randn(2, 3 * g.order, 6, 6)
    program = torch.export.export(norm, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("monai_equivariant" in t for t in targets), targets
    expected = norm(x)
    assert_matches(program.module()(x), expected, depth=1, scale=expected.abs().max())
