"""Every bundle run is a function of its seed: the network's initial weights, the data order and augmentation, and
so the trained weights, are the same for the same ``--seed`` whatever the process's random state was before.

The defect this guards against: each config's ``initialize`` list checked the network (``@network_def``) before
``set_determinism(seed=@seed)``, and MONAI's config parser builds a referenced component once and keeps it, so the
trained net was initialised from an unseeded generator (the main job's P4UNet + augmentation run reached validation
Dice 0.87 in one run and collapsed to 0.00 in the next).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bundles import BUNDLE_NAMES, BUNDLES, POLYP_TINY, TINY, copy_bundle, initialized_workflow, run_workflow

CONFIGS = sorted(p for p in BUNDLES.glob("*/configs/*.json") if "initialize" in json.loads(p.read_text()))


def _scramble_global_random_state(seed: int) -> None:
    """Put Python's, NumPy's and torch's global generators in a state that differs from run to run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _initial_weights(root: Path, name: str, scramble: int) -> list[torch.Tensor]:
    _scramble_global_random_state(scramble)
    workflow = initialized_workflow(root, ["train.json"], **TINY[name])
    try:
        return [p.detach().clone() for p in workflow.parser.get_parsed_content("network").parameters()]
    finally:
        workflow.finalize()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_every_config_seeds_before_it_builds_anything(config):
    """``set_determinism`` comes first in every ``initialize`` list: an entry before it may build the network."""
    initialize = json.loads(config.read_text())["initialize"]
    assert "set_determinism(seed=@seed)" in initialize[0], (
        f"{config}: the first initialize entry must seed (set_determinism), got {initialize[0]!r}")


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_initial_weights_depend_on_the_seed_only(name, tmp_path):
    root = copy_bundle(name, tmp_path / "bundle")
    first = _initial_weights(root, name, scramble=1)
    second = _initial_weights(root, name, scramble=2)
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert torch.equal(a, b), f"{name}: the network's initial weights changed with the global random state"


def test_same_seed_trains_the_same_weights(tmp_path):
    """Two whole polyp training runs with rotation augmentation (data order, augmentation, init): equal weights."""
    trained = []
    for run, scramble in enumerate((3, 4)):
        root = copy_bundle("polyp_segmentation", tmp_path / f"run{run}")
        _scramble_global_random_state(scramble)
        workflow = run_workflow(root, ["train.json"], **POLYP_TINY, augmentation="rotate")
        trained.append([p.detach().clone() for p in workflow.parser.get_parsed_content("network").parameters()])
    for a, b in zip(*trained):
        assert torch.equal(a, b), "two polyp training runs with the same seed ended with different weights"
