"""SubgroupPool and GroupCNN's ``invariance`` option: the coset rule exact on every element at two sizes, the
rotation-invariant head of p4m, the old fully invariant head kept by an argument, argument validation."""

from __future__ import annotations

import pytest
import torch

from monai_equivariant.groups import get_group
from monai_equivariant.layers import GroupPool, SubgroupPool
from monai_equivariant.layers.subgroup_pool import rotation_subgroup, subgroup_cosets
from monai_equivariant.networks.nets import GroupCNN, SE2CNN
from monai_equivariant.utils import export

from helpers import assert_matches, trained_briefly


def _coset_transform(y: torch.Tensor, pool: SubgroupPool, group, g: int) -> torch.Tensor:
    """g·y for a pooled tensor (B, C·n, *spatial): cosets permuted by the pool's rule, space transformed."""
    perm = torch.tensor(pool.coset_permutation(g))
    fields = y.unflatten(1, (-1, pool.num_cosets))[:, :, perm]
    return group.spatial_transform(fields.flatten(1, 2), g)


@pytest.mark.parametrize("name,subgroup,sizes", [
    ("p4m", "rotations", [(6, 6), (5, 7)]),
    ("p4m", [0, 4], [(6, 6), (5, 7)]),  # a reflection and the identity: not normal, 4 left cosets
    ("D4h", "rotations", [(4, 4, 4), (3, 5, 4)]),
])
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_subgroup_pool_rule_exact_on_every_element(name, subgroup, sizes, mode):
    group = get_group(name)
    if not isinstance(subgroup, str):
        subgroup = [0, next(g for g in range(group.order) if g not in rotation_subgroup(group)
                            and group.cayley[g, g] == 0)]
    pool = SubgroupPool(group, subgroup, mode)
    assert pool.num_cosets * pool.subgroup_size == group.order
    for size in sizes:
        x = torch.randn((2, 3 * group.order) + size)
        y = pool(x)
        assert y.shape == (2, 3 * pool.num_cosets) + size
        for g in range(group.order):
            assert_matches(pool(group.transform(x, g, regular=True)), _coset_transform(y, pool, group, g),
                           depth=1, fan_in=1, msg=f"{name} element {g}")


def test_rotation_cosets_of_p4m_swap_under_reflections_only():
    group = get_group("p4m")
    pool = SubgroupPool(group)
    assert pool.num_cosets == 2 and sorted(subgroup_cosets(group, "rotations")[0]) == list(rotation_subgroup(group))
    for g in range(group.order):
        assert pool.coset_permutation(g) == ([0, 1] if g in rotation_subgroup(group) else [1, 0])


def test_whole_group_as_subgroup_is_group_pooling():
    group = get_group("p4m")
    x = torch.randn(2, 3 * 8, 5, 5)
    torch.testing.assert_close(SubgroupPool(group, list(range(8)))(x), GroupPool(8)(x), rtol=0, atol=0)


def test_subgroup_pool_exports_and_scripts():
    pool = SubgroupPool("p4m")
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(pool.to_plain()(x), pool(x), rtol=0, atol=0)
    torch.testing.assert_close(torch.jit.script(pool)(x), pool(x), rtol=0, atol=0)


def test_subgroup_pool_arguments_are_validated():
    with pytest.raises(ValueError, match="subgroup must be 'rotations'"):
        SubgroupPool("p4m", "mirrors")
    with pytest.raises(TypeError, match="subgroup must be 'rotations' or a list of element indices"):
        SubgroupPool("p4m", [0, 1.5])
    with pytest.raises(ValueError, match="must contain the identity"):
        SubgroupPool("p4m", [1, 2])
    with pytest.raises(ValueError, match="distinct element indices 0..7"):
        SubgroupPool("p4m", [0, 9])
    with pytest.raises(ValueError, match="not closed under composition"):
        SubgroupPool("p4m", [0, 1])  # a 90° rotation without its powers
    with pytest.raises(ValueError, match="mode must be 'max' or 'mean'"):
        SubgroupPool("p4m", mode="sum")
    with pytest.raises(ValueError, match=r"expects a \(B, C\*8, \*spatial\)"):
        SubgroupPool("p4m")(torch.randn(1, 12, 4, 4))


# ------------------------------------------------------------------------------------------ GroupCNN's head


def test_p4m_default_head_is_rotation_invariant_and_swaps_features_under_reflections():
    net = trained_briefly(GroupCNN(2, 1, 3, (2, 3), group="p4m"), (8, 8))
    group = net.group
    assert net.invariance == "rotation" and net.num_cosets == 2 and net.head.in_features == 6
    rotations = rotation_subgroup(group)
    for size in [(8, 8), (6, 10)]:
        x = torch.randn((2, 1) + size)
        logits, features = net(x), net.features(x)
        swapped = features.unflatten(1, (-1, 2)).flip(2).flatten(1)
        for g in range(group.order):
            gx = group.transform(x, g)
            if g in rotations:
                assert_matches(net(gx), logits, net, msg=f"rotation {g}")
                assert_matches(net.features(gx), features, net, msg=f"rotation {g}")
            else:
                assert_matches(net.features(gx), swapped, net, msg=f"reflection {g}")
                assert (net(gx) - logits).abs().max() > 1e-3 * logits.abs().max()  # mirror images told apart


def test_invariance_group_keeps_the_old_p4m_net():
    net = trained_briefly(GroupCNN(2, 1, 3, (2, 3), group="p4m", invariance="group"), (8, 8))
    assert isinstance(net.project, GroupPool) and net.num_cosets == 1 and net.head.in_features == 3
    for size in [(8, 8), (6, 10)]:
        x = torch.randn((2, 1) + size)
        for g in range(8):
            assert_matches(net(net.group.transform(x, g)), net(x), net, msg=f"element {g}")


def test_rotation_head_state_dict_keys_match_the_group_heads():
    new, old = GroupCNN(2, 1, 3, (2, 3), group="p4m"), GroupCNN(2, 1, 3, (2, 3), group="p4m", invariance="group")
    assert new.state_dict().keys() == old.state_dict().keys()
    old_again = GroupCNN(2, 1, 3, (2, 3), group="p4m", invariance="group")
    old_again.load_state_dict(old.state_dict())  # checkpoints of the old head load where built the old way


@pytest.mark.parametrize("group", ["p4", "O", "trivial", "se2_8"])
def test_rotation_head_is_the_group_head_without_reflections(group):
    dims = 3 if group == "O" else 2
    net = GroupCNN(dims, 1, 2, (2,), group=group, invariance="rotation")
    assert isinstance(net.project, GroupPool) and net.num_cosets == 1


def test_3d_groups_with_reflections_keep_the_invariant_head_by_default():
    assert GroupCNN(3, 1, 2, (2,), group="Oh").invariance == "group"
    assert GroupCNN(3, 1, 2, (2,), group="D4h", invariance="rotation").num_cosets == 2


def test_p4m_rotation_head_exports_and_scripts():
    net = trained_briefly(GroupCNN(2, 1, 3, (2, 3), group="p4m"), (8, 8)).eval()
    x = torch.randn(2, 1, 8, 8)
    assert_matches(export(net)(x), net(x), net)
    assert_matches(torch.jit.script(net)(x), net(x), net)


def test_invariance_argument_is_validated():
    with pytest.raises(ValueError, match=r"invariance must be one of \('group', 'rotation'\)"):
        GroupCNN(2, 1, 2, (2,), group="p4m", invariance="reflection")
    with pytest.raises(ValueError, match="invariance must be one of"):
        GroupCNN(2, 1, 2, (2,), group="p4m", invariance=True)


# ------------------------------------------------------------------------------------------ kernel defaults


def test_interpolated_groups_default_to_5x5_kernels():
    assert GroupCNN(2, 1, 2, (2,), group="se2_8").kernel_size == 5
    assert GroupCNN(2, 1, 2, (2,), group="p4").kernel_size == 3
    assert GroupCNN(2, 1, 2, (2,), group="p4m").kernel_size == 3
    assert SE2CNN(channels=(2,)).kernel_size == 5
    old = GroupCNN(2, 1, 2, (2,), group="se2_8", kernel_size=3)
    assert old.stem.conv.weight.shape[-2:] == (3, 3)
    GroupCNN(2, 1, 2, (2,), group="se2_8", kernel_size=3).load_state_dict(old.state_dict())


def test_se2_default_net_is_exactly_invariant_at_90_degrees():
    net = trained_briefly(GroupCNN(2, 1, 3, (2, 3), group="se2_8"), (8, 8))
    group = net.group
    for size in [(8, 8), (12, 12)]:
        x = torch.randn((2, 1) + size)
        for g in (0, 2, 4, 6):  # the multiples of 90°
            assert_matches(net(group.transform(x, g)), net(x), net, msg=f"element {g}")
