"""Structure of the package (issue 20): one network registry, MONAI factories and ADN in the blocks, a layered
core (networks never import monai_equivariant.utils), plain exports that hold no package classes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monai_equivariant.networks import registry

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

    assert BUNDLE_SPECS["polyp_segmentation"].network_names == ("p4", "p4m", "se2", "steerable", "plain")
    assert BUNDLE_SPECS["histopathology_classification"].network_names == ("se2", "p4", "plain")
    assert BUNDLE_SPECS["nodule_classification"].network_names == ("O", "Oh", "D4h", "plain")


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
