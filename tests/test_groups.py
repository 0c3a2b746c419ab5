import numpy as np
import pytest
import torch

from monai_equivariant.groups import GROUP_NAMES, Group, get_group

ORDERS = {"p4": 4, "p4m": 8, "D4": 8, "D4h": 16, "O": 24, "Oh": 48, "se2_12": 12, "se2_5": 5}
NAMES = list(ORDERS)


@pytest.mark.parametrize("name", NAMES)
def test_group_axioms(name):
    g = get_group(name)
    assert g.order == ORDERS[name]
    table = g.cayley
    n = g.order
    # identity
    assert (table[0] == np.arange(n)).all() and (table[:, 0] == np.arange(n)).all()
    # closure: every row and column is a permutation (Latin square)
    for row in range(n):
        assert sorted(table[row]) == list(range(n))
        assert sorted(table[:, row]) == list(range(n))
    # associativity
    a, b, c = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    assert (table[table[a, b], c] == table[a, table[b, c]]).all()
    # inverses
    assert (table[np.arange(n), g.inverse] == 0).all()
    # matrices are orthogonal
    m = g.matrices
    assert np.allclose(m @ m.transpose(0, 2, 1), np.eye(g.spatial_dims))


def test_cube_groups_contents():
    dets = np.linalg.det(get_group("O").matrices)
    assert np.allclose(dets, 1.0)
    assert np.allclose(np.abs(np.linalg.det(get_group("Oh").matrices)), 1.0)
    assert (np.linalg.det(get_group("Oh").matrices) < 0).sum() == 24
    assert np.allclose(np.linalg.det(get_group("D4").matrices), 1.0)


def test_unknown_group_lists_known_names():
    with pytest.raises(ValueError) as err:
        get_group("p6")
    for name in ("trivial", "p4", "p4m", "D4", "D4h", "O", "Oh"):
        assert name in str(err.value)
    assert set(GROUP_NAMES) >= {"trivial", "p4", "p4m", "D4", "D4h", "O", "Oh"}


def test_spatial_dims_mismatch():
    with pytest.raises(ValueError, match="3D"):
        get_group("O", spatial_dims=2)
    assert get_group("trivial", 3).spatial_dims == 3


@pytest.mark.parametrize("name", ["p4", "p4m", "D4h", "O", "Oh"])
@pytest.mark.parametrize("regular", [False, True])
def test_transform_is_homomorphism(name, regular):
    g = get_group(name)
    d = g.spatial_dims
    shape = (2, 3 * (g.order if regular else 1)) + ((5, 6, 7) if d == 3 else (6, 7))
    x = torch.randn(shape)
    rng = np.random.default_rng(0)
    pairs = [(a, b) for a in range(g.order) for b in range(g.order)]
    for a, b in [pairs[i] for i in rng.choice(len(pairs), size=min(len(pairs), 60), replace=False)]:
        lhs = g.transform(g.transform(x, b, regular), a, regular)
        rhs = g.transform(x, int(g.cayley[a, b]), regular)
        assert torch.equal(lhs, rhs), (a, b)
    assert torch.equal(g.transform(x, 0, regular), x)


@pytest.mark.parametrize("name", ["p4", "p4m", "D4", "D4h", "O", "Oh"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_kernel_action_matches_transform(name, k):
    """The kernel permutation table and the tensor transform are the same action."""
    g = get_group(name)
    kernel = torch.randn((1, 1) + (k,) * g.spatial_dims)
    action = g.kernel_action(k)
    assert action.is_permutation
    for e in range(g.order):
        moved = kernel.flatten()[action.index[e]].reshape(kernel.shape)
        assert torch.equal(moved, g.transform(kernel, e))


def test_se2_4_acts_like_p4():
    p4, se2 = get_group("p4"), get_group("se2_4")
    assert np.array_equal(p4.cayley, se2.cayley)
    assert torch.equal(p4.kernel_action(5).index, se2.kernel_action(5).index)
    x = torch.randn(1, 2, 8, 8)
    for e in range(4):
        assert torch.equal(p4.transform(x, e), se2.transform(x, e))


def test_se2_interpolated_action_is_stochastic_and_exact_at_quarter_turns():
    g = get_group("se2_8")
    action = g.kernel_action(5)
    assert not action.is_permutation
    assert torch.all(action.matrix >= 0)
    assert torch.all(action.matrix.sum(-1) <= 1 + 1e-6)
    for e in (0, 2, 4, 6):  # multiples of 90°: permutations
        row = action.matrix[e]
        assert torch.equal(row, row.round()) and torch.all(row.sum(-1) == 1)


def test_bad_inputs():
    g = get_group("p4")
    with pytest.raises(IndexError):
        g.transform(torch.randn(1, 1, 4, 4), 4)
    with pytest.raises(ValueError, match="spatial dims"):
        g.transform(torch.randn(1, 4, 4), 1)
    with pytest.raises(ValueError, match="C·4"):
        g.transform(torch.randn(1, 3, 4, 4), 1, regular=True)
    with pytest.raises(ValueError, match="odd"):
        get_group("se2_8").kernel_action(4)  # interpolated kernels need a centre tap (grid groups act on even grids)
    with pytest.raises(ValueError, match=r"element 2 = \[\[0, 0, -1\]"):
        get_group("O").kernel_action((1, 3, 3))  # O swaps depth with the plane: the (1, 3, 3) box is not preserved


def test_custom_group_cannot_shadow_a_builtin_name():
    """A custom "p4m" with its elements in another order used to get the built-in kernel action (same name)."""
    from monai_equivariant.groups import Group

    p4m = get_group("p4m")
    reordered = p4m.matrices[[0, 2, 1, 3, 4, 5, 6, 7]]
    with pytest.raises(ValueError, match="built-in group"):
        Group("p4m", reordered)
    with pytest.raises(ValueError, match="built-in group"):
        Group("p4", get_group("se2_8").matrices)
    assert Group("p4m", p4m.matrices).kernel_action(3).index.equal(p4m.kernel_action(3).index)  # same group: fine


def test_kernel_action_cache_is_keyed_on_the_matrices():
    """Two custom groups with one name but different elements get their own kernel actions, and built-in groups
    built afterwards are not affected."""
    from monai_equivariant.groups import Group
    from monai_equivariant.layers import GroupConv
    from monai_equivariant.utils import assert_equivariant

    p4m = get_group("p4m")
    first = Group("mine", p4m.matrices)
    order = [0, 2, 1, 3, 4, 5, 6, 7]
    second = Group("mine", p4m.matrices[order])
    assert torch.equal(second.kernel_action(3).index, p4m.kernel_action(3).index[order])
    assert torch.equal(first.kernel_action(3).index, p4m.kernel_action(3).index)
    conv = GroupConv(1, 1, second)
    x = torch.randn(1, 8, 7, 7)
    assert_equivariant(conv, second, x, "regular", "regular")
    assert_equivariant(GroupConv(1, 1, "p4m"), p4m, x, "regular", "regular")


def test_groups_modules_import_without_cycles():
    """groups/ is layered: matrices and rotate (NumPy/torch only) <- group <- catalogue; no module imports one
    that imports it back, lazily inside a function or at the top."""
    import ast
    from pathlib import Path

    import monai_equivariant.groups as groups

    folder = Path(groups.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("monai_equivariant.groups."):
                found.add(node.module.rsplit(".", 1)[1])
        imports[path.stem] = found

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in imports.get(start, ()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    assert {"matrices", "rotate", "group", "catalogue"} <= set(imports)
    assert [m for m in imports if reaches(m, m, {m})] == []


def test_group_keeps_its_kernel_actions():
    group = get_group("p4")
    assert group.kernel_action(3) is group.kernel_action(3)
    mine = Group("mine", group.matrices)
    assert mine.kernel_action(3) is not group.kernel_action(3)
    assert torch.equal(mine.kernel_action(3).index, group.kernel_action(3).index)
