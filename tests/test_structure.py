"""Structure of the package (issue 20): one network registry, MONAI factories and ADN in the blocks, a layered
core (networks never import monai_equivariant.utils), plain exports that hold no package classes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monai_equivariant import layers
from monai_equivariant.networks import blocks, registry

PACKAGE = Path(__file__).resolve().parents[1] / "monai_equivariant"


@pytest.fixture
def extra_network():
    """A network registered for the test only (one registry entry), removed afterwards."""

    def build(channels, num_rotations, **kwargs):
        from monai_equivariant.networks.nets import GroupUNet

        return GroupUNet(channels=channels, group="p4", **kwargs)

    entry = registry.register(registry.NetworkEntry(
        "p4-extra", "segmentation", 2, build, lambda channels, n: tuple(2 * c for c in channels), "p4", "p4",
        "a test network"))
    try:
        yield entry
    finally:
        del registry.NETWORKS[("segmentation", 2, "p4-extra")]


def test_one_registry_entry_adds_a_network_to_the_factory_and_the_bundles(extra_network):
    from monai_equivariant.bundle import checked_group
    from monai_equivariant.bundle.overrides import BUNDLE_SPECS, check_overrides
    from monai_equivariant.bundle.weights import bundle_network, network_groups
    from monai_equivariant.networks.factory import SEGMENTATION_NETWORKS, segmentation_network

    assert SEGMENTATION_NETWORKS["p4-extra"] == "a test network"
    net = segmentation_network("p4-extra", in_channels=1, channels=(2, 3))
    assert net.channels == (4, 6) and net.group.name == "p4"  # the channel rule applied
    assert "p4-extra" in BUNDLE_SPECS["polyp_segmentation"].network_names
    assert check_overrides({"network_name": "p4-extra"}, "polyp_segmentation")["network_name"] == "p4-extra"
    assert checked_group("p4-extra", 2) == "p4"
    assert network_groups("segmentation", 2)["p4-extra"] == ("p4", 4)
    assert bundle_network("segmentation", "p4-extra", 2, in_channels=1, channels=(2, 3)).channels == (4, 6)
    assert "p4-extra" not in BUNDLE_SPECS["histopathology_classification"].network_names


def test_registry_names_are_unique_and_checked_groups_agree_across_tasks():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.lookup("segmentation", "p4", 2))
    for dims in (2, 3):
        checked: dict[str, set[str]] = {}
        for entry in registry.network_entries(spatial_dims=dims):
            checked.setdefault(entry.name, set()).add(entry.checked_group)
        assert all(len(groups) == 1 for groups in checked.values()), checked


def test_the_bundles_offer_the_registry_names_in_order():
    from monai_equivariant.bundle.overrides import BUNDLE_SPECS

    assert BUNDLE_SPECS["polyp_segmentation"].network_names == ("p4", "p4m", "se2", "steerable", "plain",
                                                                    "p4_separable", "basicunet_p4", "segresnet_p4")
    assert BUNDLE_SPECS["histopathology_classification"].network_names == ("se2", "p4", "plain", "resnet_p4",
                                                                               "resnet")
    assert BUNDLE_SPECS["nodule_classification"].network_names == ("O", "Oh", "D4h", "plain", "O_separable")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against the package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_networks_never_import_utils():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.startswith("monai_equivariant.utils"))
        for path in (PACKAGE / "networks").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_layers_are_in_monais_factories():
    import torch
    from monai.networks.layers.factories import Conv, Norm, Pool

    from monai_equivariant.layers import GroupBatchNorm, GroupConv, GroupPool, LiftingConv

    lift = Conv["lifting", 3](1, 2, "O")
    assert isinstance(lift, LiftingConv) and lift.spatial_dims == 3
    assert isinstance(Conv["groupconv", 2](2, 3, "p4", 5), GroupConv)
    assert isinstance(Pool["group", 2](4), GroupPool)
    assert isinstance(Norm["groupbatch", 2](num_features=8, group_size=4), GroupBatchNorm)
    assert Pool["group", 3](4, mode="mean")(torch.ones(1, 8, 2, 2, 2)).shape == (1, 2, 2, 2, 2)


def test_adn_ordering_follows_monai_letters():
    import torch.nn as nn

    from monai_equivariant.networks.blocks import GroupConvBlock
    from monai_equivariant.networks.nets import SE2CNN, GroupCNN, GroupUNet, SE2UNet

    default = GroupConvBlock(1, 2, "p4", dropout=0.1)
    assert default.layout == "CNDA"  # MONAI's "NDA": norm, dropout, act
    assert [type(m) for m in default][1:] == [type(default.norm), nn.Dropout, nn.ReLU]
    act_first = GroupConvBlock(1, 2, "p4", dropout=0.1, adn_ordering="ADN")
    assert act_first.layout == "CADN" and isinstance(act_first[1], nn.ReLU) and act_first.norm is act_first[3]
    for net in (GroupUNet(2, 1, 1, (2, 2), adn_ordering="AN"), SE2UNet(2, 1, 1, (1, 1), 4, adn_ordering="AN"),
                GroupCNN(2, 1, 2, (2,), adn_ordering="AN"), SE2CNN(2, 1, 2, (2,), 4, adn_ordering="AN")):
        assert net.adn_ordering == "AN"
        assert {b.layout for b in net.modules() if isinstance(b, GroupConvBlock) and b.act is not None} == {"CAN"}
    with pytest.raises(ValueError, match="adn_ordering must be a string of the letters N"):
        GroupConvBlock(1, 2, "p4", adn_ordering="NAX")


def _package_modules(module):
    return sorted({type(m).__module__ + "." + type(m).__name__ for m in module.modules()
                   if type(m).__module__.startswith("monai_equivariant")})


@pytest.mark.parametrize("build", [
    lambda: layers.GroupInstanceNorm(2, 4, affine=True),
    lambda: layers.GroupInstanceNorm(2, 4, track_running_stats=True),
    lambda: layers.GroupBatchNorm(2, 4),
    lambda: layers.GroupPool(4),
    lambda: layers.GroupPool(4, "mean"),
    lambda: blocks.GroupConvBlock(2, 2, "p4", norm="instance"),
    lambda: blocks.GroupDoubleConv(2, 2, "p4"),
], ids=["instance-affine", "instance-running", "batch", "pool-max", "pool-mean", "block", "double"])
def test_plain_export_of_layers_holds_no_package_classes(build):
    import torch

    from monai_equivariant.utils.export import export

    torch.manual_seed(0)
    layer = build()
    x = torch.randn(3, 8, 6, 6)
    layer.train()(x)  # running statistics
    for p in layer.parameters():
        torch.nn.init.uniform_(p, 0.5, 1.5)
    plain = export(layer)
    assert _package_modules(plain) == []
    with torch.no_grad():
        torch.testing.assert_close(plain(x), layer.eval()(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.jit.script(plain)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_plain_export_of_a_net_holds_no_package_layers():
    from monai_equivariant.networks.nets import GroupCNN, GroupUNet
    from monai_equivariant.utils.export import export

    for net in (GroupUNet(2, 1, 1, (2, 2), norm="instance"), GroupCNN(3, 1, 2, (2,), "O", norm="instance")):
        # only the networks' own traversal classes remain: their forwards only compose plain children
        left = _package_modules(export(net))
        assert not [n for n in left if ".layers." in n or ".blocks.conv_block." in n], left


def test_group_conv_pickled_before_the_renames_still_loads():
    """``reduce_index`` is now ``inverse_index`` and ``in_group_size`` ``in_group_order``: both non-persistent or
    plain attributes (never in a state dict); a layer pickled with the old names is migrated on loading."""
    import pickle

    import torch

    conv = layers.GroupConv(2, 3, "p4")
    assert set(conv.state_dict()) == {"weight", "bias"}
    state = conv.__getstate__() if hasattr(conv, "__getstate__") else dict(conv.__dict__)
    state = dict(state)
    state["_buffers"] = {("reduce_index" if k == "inverse_index" else k): v for k, v in state["_buffers"].items()}
    state["in_group_size"] = state.pop("in_group_order")
    old = layers.GroupConv.__new__(layers.GroupConv)
    old.__setstate__(state)
    loaded = pickle.loads(pickle.dumps(old))
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(loaded(x), conv(x), rtol=0, atol=0)
    assert loaded.in_group_order == 4 and "reduce_index" not in dict(loaded.named_buffers())


def test_steerable_code_is_one_subpackage_with_explicit_escnn_patches():
    import monai_equivariant.steerable as steerable
    from monai_equivariant.networks.nets import SteerableUNet

    assert SteerableUNet is steerable.SteerableUNet
    source = (PACKAGE / "layers" / "steerable.py").read_text()
    assert "__hash__ =" not in source and "randomized_svd" not in source  # the patches live in escnn_compat
    pytest.importorskip("escnn")
    escnn = steerable.import_escnn()
    from escnn.group import _numerical
    from escnn.nn.modules import basismanager

    assert escnn.nn is not None and getattr(_numerical, "randomized_svd", None) is None
    assert basismanager.BlocksBasisExpansion.__hash__ is __import__("torch").nn.Module.__hash__


def test_conv_block_pickled_before_adn_still_reads_its_layers():
    import pickle

    import torch.nn as nn

    block = blocks.GroupConvBlock(1, 2, "p4", dropout=0.1)
    state = dict(block.__dict__)
    del state["layout"], state["adn_ordering"]
    modules = list(block)
    state["_modules"] = {str(i): m for i, m in enumerate([modules[0], modules[1], modules[3], modules[2]])}  # N A D
    old = blocks.GroupConvBlock.__new__(blocks.GroupConvBlock)
    old.__setstate__(state)
    old = pickle.loads(pickle.dumps(old))
    assert old.layout == "CNAD" and isinstance(old.act, nn.ReLU) and isinstance(old.dropout, nn.Dropout)


@pytest.mark.parametrize("dims,group", [(2, "p4m"), (3, "O")])
def test_group_conv_scripts_through_the_one_conv_dispatch(dims, group):
    import torch

    conv = layers.GroupConv(2, 3, group)
    x = torch.randn(1, 2 * conv.group_order, *([5] * dims))
    torch.testing.assert_close(torch.jit.script(conv)(x), conv(x))


LAYERS = {  # package layer -> the package modules it may import (besides itself)
    "groups": (),
    "layers": ("monai_equivariant.groups", "monai_equivariant.steerable.escnn_compat"),
    "networks": ("monai_equivariant.groups", "monai_equivariant.layers", "monai_equivariant.steerable"),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_the_core_is_layered(layer):
    """groups -> layers -> networks: no module imports a layer above its own (nor utils, bundle, metrics...)."""
    allowed = (f"monai_equivariant.{layer}",) + LAYERS[layer]
    wrong = {}
    for path in (PACKAGE / layer).rglob("*.py"):
        names = [n for n in _imports(path) if n.startswith("monai_equivariant.") or n == "monai_equivariant"]
        bad = sorted(n for n in names if not any(n == a or n.startswith(a + ".") for a in allowed))
        if bad:
            wrong[str(path.relative_to(PACKAGE))] = bad
    assert wrong == {}
