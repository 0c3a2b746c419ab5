"""Bundle overrides are checked before anything is written (issue 19, items 5, 13-16, 18): one strict parser of
sample counts, every override of every bundle refused by name with the bundle root left as it was, groups of
the wrong dimension refused up front, checkpoints of another network named by their group, and inference /
evaluation workflows that initialize on a fresh bundle (the trained model is needed at run)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export
from test_bundles import copy_bundle

from monai_equivariant.bundle import bundle_network, first_samples, integer, sample_count, training_samples

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
BUNDLE_FILES = {"LICENSE", "configs", "docs", "large_files.yml"}  # what copy_bundle puts in a bundle root
TINY = {
    "polyp_segmentation": {"image_size": 32, "synthetic_samples": 12, "network_channels": [4, 8], "epochs": 1,
                           "batch_size": 4, "progress": False},
    "histopathology_classification": {"synthetic_samples": 16, "network_channels": [4, 8], "epochs": 1,
                                      "batch_size": 8, "progress": False},
    "nodule_classification": {"synthetic_samples": 8, "patch_size": 16, "network_channels": [2, 4], "epochs": 1,
                              "batch_size": 4, "progress": False},
    "organ_segmentation": {"network_name": "dynunet", "roi_size": [8, 16, 16], "volume_size": [12, 24, 24],
                           "synthetic_samples": 8, "network_channels": [2, 4, 8], "epochs": 1, "batch_size": 2,
                           "progress": False},
}


def workflow(root: Path, configs: list[str], workflow_type: str = "train", **overrides) -> ConfigWorkflow:
    return ConfigWorkflow(config_file=[str(root / "configs" / c) for c in configs],
                          meta_file=str(root / "configs" / "metadata.json"), workflow_type=workflow_type,
                          bundle_root=str(root), **overrides)


def messages(error: BaseException) -> str:
    """The error and its causes (MONAI wraps a failing config expression in a RuntimeError)."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def written(root: Path) -> set[str]:
    """Everything in ``root`` the bundle wrote (data/, models/, eval/, datalist.json, events, the lock...)."""
    return {str(p.relative_to(root)) for p in root.iterdir() if p.name not in BUNDLE_FILES}


# ---------------------------------------------------------------- item 5: one strict parser of sample counts


def test_sample_counts_refuse_booleans_fractions_words_and_negatives():
    items = list(range(10))
    assert first_samples(items, 3.0) == [0, 1, 2] and first_samples(items, "4") == [0, 1, 2, 3]
    assert first_samples(items, None) == first_samples(items, 0) == first_samples(items, "null") == items
    for bad in (2.5, True, False, -1, "2.5", "many", [3], float("nan")):
        with pytest.raises(ValueError, match="--train_samples"):
            first_samples(items, bad)  # before: 2.5 -> 2 samples, True -> 1, -1 -> all but the last
    with pytest.raises(ValueError, match="asked for 11 training samples, but there are 10: use a number from 1 to 10"):
        first_samples(items, 11)
    assert sample_count(7, "max_samples") == 7 and training_samples(None, 5) == 5 and training_samples(3, 5) == 3
    assert training_samples(0, None) is None  # 0 means all, in every bundle
    with pytest.raises(ValueError, match="--seed must be an integer ≥ 0, got the boolean True"):
        integer(True, "seed", 0)


# ---------------------------------------------------------------- item 14/15: refused before anything is written

NEGATIVE_COUNT = r"--train_samples must be a positive integer \(or 0 / null for all\), got -1"
BAD_OVERRIDES = [
    # (bundle, override, value, what the message must say)
    ("polyp_segmentation", "augmentation", "bogus", r"--augmentation must be one of \['group', 'none', 'rotate'\]"),
    ("polyp_segmentation", "inferer", "bogus", r"--inferer must be one of \['group_ensemble', 'simple'\]"),
    ("polyp_segmentation", "train_samples", 2.5, r"--train_samples must be .*got 2.5"),
    ("polyp_segmentation", "train_samples", True, r"--train_samples must be .*got True"),
    ("polyp_segmentation", "train_samples", 9, r"--train_samples: asked for 9 training samples, but there are 8"),
    ("polyp_segmentation", "image_size", 30, r"--image_size 30 is not a multiple of 16, the product of the network's"),
    ("polyp_segmentation", "augmentation_group", "O", r"--augmentation_group 'O' is not a group of 2D images"),
    ("polyp_segmentation", "ensemble_group", "Oh", r"--ensemble_group 'Oh' is not a group of 2D images"),
    ("polyp_segmentation", "augmentation_group", "se2_12", r"--augmentation_group 'se2_12' is not a grid group"),
    ("polyp_segmentation", "network_name", "O",
     r"--network_name must be one of \['p4', 'p4m', 'se2', 'steerable', 'plain', 'p4_separable', 'basicunet_p4', "
     r"'segresnet_p4'\]"),
    ("polyp_segmentation", "network_channels", [4], r"--network_channels needs at least 2 levels"),
    ("polyp_segmentation", "network_norm", "layer", r"--network_norm must be one of"),
    ("polyp_segmentation", "epochs", 0, r"--epochs must be an integer ≥ 1, got 0"),
    ("polyp_segmentation", "batch_size", "eight", r"--batch_size must be an integer ≥ 1, got 'eight'"),
    ("polyp_segmentation", "learning_rate", -0.1, r"--learning_rate must be a positive finite number"),
    ("polyp_segmentation", "resume", "maybe", r"--resume: expected a boolean"),
    ("polyp_segmentation", "seed", -1, r"--seed must be an integer ≥ 0"),
    ("polyp_segmentation", "synthetic_samples", 2, r"--synthetic_samples must be an integer ≥ 3"),
    ("polyp_segmentation", "dataset_dir", "/nonexistent/kvasir", r"--dataset_dir '/nonexistent/kvasir' does not exist"),
    ("polyp_segmentation", "device", "gpu0", r"--device must be a torch device"),
    ("histopathology_classification", "train_samples", 1000,
     r"--train_samples: asked for 1000 training samples, but there are 16"),
    ("histopathology_classification", "train_samples", -1, NEGATIVE_COUNT),
    ("histopathology_classification", "max_samples", 2.5, r"--max_samples must be"),
    ("histopathology_classification", "num_rotations", 0, r"--num_rotations must be an integer ≥ 1"),
    ("histopathology_classification", "image_size", 30, r"--image_size 30 is not a multiple of 4"),
    ("histopathology_classification", "inferer", 3, r"--inferer must be one of"),
    ("histopathology_classification", "augmentation_group", "O",
     r"--augmentation_group 'O' is not a group of 2D images"),
    ("nodule_classification", "train_samples", 1000,
     r"--train_samples: asked for 1000 training samples, but there are 8"),
    ("nodule_classification", "train_samples", -1, NEGATIVE_COUNT),
    ("nodule_classification", "ensemble_group", "p4", r"--ensemble_group 'p4' is not a group of 3D images"),
    ("nodule_classification", "augmentation_group", "p4m", r"--augmentation_group 'p4m' is not a group of 3D images"),
    ("nodule_classification", "patch_size", 18, r"--patch_size 18 is not a multiple of 4"),
    ("nodule_classification", "max_samples", "all but one", r"--max_samples must be"),
    ("nodule_classification", "network_name", "p4",
     r"--network_name must be one of \['O', 'Oh', 'D4h', 'plain', 'O_separable'\]"),
    ("organ_segmentation", "roi_size", [9, 17, 17], r"--roi_size \[9, 17, 17\] does not fit MONAI's DynUNet with "
     r"strides \[\[1, 1, 1\], \[1, 2, 2\], \[2, 2, 2\]\]: .*\[2, 4, 4\] \(z, y, x\).*use e.g. \[10, 20, 20\]"),
    ("organ_segmentation", "roi_size", [2, 4, 4], r"more than one voxel at the deepest level; use e.g. \[2, 4, 8\]"),
    ("organ_segmentation", "roi_size", [8, 16], r"--roi_size must be a list of 3 integers ≥ 1 \(z, y, x\)"),
    ("organ_segmentation", "volume_size", [4, 24, 24], r"--volume_size must be an integer ≥ 8, got 4"),
    ("organ_segmentation", "ensemble_group", "p4", r"--ensemble_group 'p4' is not a group of 3D images"),
    ("organ_segmentation", "label_permutation", [0, 1, 1, 3], r"--label_permutation must hold every class index "
     r"0..C-1 once and swap pairs"),
    ("organ_segmentation", "label_permutation", "left", r"--label_permutation must be null or a list of class"),
    ("organ_segmentation", "strides", [[1, 1, 1], [1, 2, 2]],
     r"--strides has 2 entries, but --network_channels \[2, 4, 8\] has 3 levels: give 3"),
    ("organ_segmentation", "kernel_size", [[1, 3], [3, 3, 3], [3, 3, 3]], r"--kernel_size: each level needs 1 or 3"),
    ("organ_segmentation", "pixdim", [1.0, 1.0], r"--pixdim must be null \(keep the spacing\) or 3 positive numbers"),
    ("organ_segmentation", "pixdim", [2.5, 0, 1], r"--pixdim must be a positive finite number, got 0"),
    ("organ_segmentation", "dataset_dir", "/nonexistent/Task09_Spleen",
     r"dataset_dir '/nonexistent/Task09_Spleen' does not exist; expected a folder holding dataset\.json"),
    ("organ_segmentation", "network_name", "p4", r"--network_name must be one of \[.*'dynunet'.*\] for this bundle"),
    ("organ_segmentation", "train_samples", 100, r"--train_samples: asked for 100 training samples, but there are 6"),
    ("organ_segmentation", "sw_batch_size", 0, r"--sw_batch_size must be an integer ≥ 1, got 0"),
    ("organ_segmentation", "intensity_range", [250, -175], r"--intensity_range must be null .* low < high"),
]


# the size checks need a net whose multiple the size misses (the tiny nets' multiple is 2)
LARGER_NETS = {("polyp_segmentation", "image_size"): {"network_channels": [8, 16, 32, 64, 128]},
               ("histopathology_classification", "image_size"): {"network_channels": [4, 8, 16]},
               ("nodule_classification", "patch_size"): {"network_channels": [2, 4, 8]}}


@pytest.mark.parametrize("name, option, value, match", BAD_OVERRIDES,
                         ids=[f"{b.split('_')[0]}-{o}-{v!r}" for b, o, v, _ in BAD_OVERRIDES])
def test_bad_override_is_refused_by_name_before_anything_is_written(tmp_path, name, option, value, match):
    root = copy_bundle(name, tmp_path / "bundle")
    overrides = {**TINY[name], **LARGER_NETS.get((name, option), {}), option: value}
    with pytest.raises(Exception) as error:
        workflow(root, ["train.json"], **overrides).initialize()
    assert re.search(match, messages(error.value)), messages(error.value)[-2000:]
    assert written(root) == set()  # no data/, models/, eval/, datalist.json, TensorBoard events, lock file


@pytest.mark.parametrize("name", list(TINY))
def test_every_config_checks_its_overrides_first(name):
    """evaluate / inference / multi-GPU start with the same checks as train, right after the seed (which comes
    first: the network check builds the network; see tests/test_bundle_determinism.py)."""
    from monai.bundle import ConfigParser

    for config in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json"):
        steps = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / config))["initialize"]
        assert steps[0] == "$monai.utils.set_determinism(seed=@seed)", config
        steps = steps[1:]
        assert steps[0].startswith("$monai_equivariant.bundle.check_overrides(@bundle_overrides, "), config
        assert steps[1].startswith(("$monai_equivariant.bundle.check_network_input(@network_def, ",
                                    "$monai_equivariant.bundle.overrides.check_roi_size(@network_def, ")), config
        assert not any("trained_model" in step for step in steps), config  # item 18: checked at run


# top-level config keys that are wiring, not overrides (input_files: inference's inputs, an expression that reads
# the data list, so it is resolved where the data are read, not among the checks)
WIRING = {"imports", "network_def", "network", "loss", "optimizer", "lr_scheduler", "base_transforms", "train",
          "validate", "initialize", "run", "finalize", "bundle_overrides", "datalist", "input_files",
          "preprocessing", "postprocessing", "dataset", "dataloader", "handlers", "evaluator", "checked_group",
          # the organ bundle: its inferer's sliding window, the channels its data (dataset.json) fix, and the
          # validation crops of the equivariance handler
          "sliding_window", "in_channels", "num_classes", "equivariance_images", "intensity_window"}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("config", ["train.json", "inference.json"])
def test_every_override_of_a_config_is_declared_and_checked(name, config):
    from monai.bundle import ConfigParser

    from monai_equivariant.bundle.overrides import _checks

    content = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / config))
    declared = content["bundle_overrides"]
    assert set(content) - WIRING == set(declared)  # a new top-level override must be added to the checks
    assert all(value == f"@{key}" for key, value in declared.items())
    assert set(declared) <= set(_checks(name))


def test_plain_net_at_the_smallest_multiple_is_refused_for_its_norm(tmp_path):
    """A plain U-Net keeps one value per channel at its deepest level when image_size equals its multiple:
    instance norm fails at the first training step, after data and events were written (before: exactly that)."""
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    with pytest.raises(Exception) as error:
        workflow(root, ["train.json"], **{**TINY["polyp_segmentation"], "network_name": "plain",
                                          "image_size": 2}).initialize()
    assert "--image_size 2: this network (|G|=1) with instance norm keeps 1 value per channel" in messages(error.value)
    assert written(root) == set()


# ---------------------------------------------------------------- item 13: histopathology 0 / -1


def test_histopathology_train_samples_zero_means_all_and_minus_one_is_refused(tmp_path):
    root = copy_bundle("histopathology_classification", tmp_path / "bundle")
    flow = workflow(root, ["train.json"], **{**TINY["histopathology_classification"], "train_samples": 0})
    flow.initialize()  # before: a dataset of 0 samples, and a crash inside the sampler at run
    try:
        assert len(flow.parser.get_parsed_content("train#dataset")) == 16
    finally:
        flow.finalize()


# ---------------------------------------------------------------- item 16: checkpoints of another network


def _net(name: str, **kwargs) -> torch.nn.Module:
    return bundle_network("segmentation", name, 2, in_channels=3, out_channels=1, channels=(4, 8), **kwargs)


@pytest.mark.parametrize("trained, built, match", [
    ("p4", "p4m", r"checkpoint was trained with network_name=p4 or basicunet_p4 or segresnet_p4 \(group p4, "
                  r"\|G\|=4\); this bundle builds "
                  r"network_name=p4m \(group p4m, \|G\|=8\): run with --network_name p4"),
    ("p4", "plain", r"trained with network_name=p4 or basicunet_p4 or segresnet_p4 \(group p4, \|G\|=4\); this "
                    r"bundle builds network_name=plain "
                    r"\(group trivial, \|G\|=1\)"),
    ("steerable", "se2", r"trained with network_name=steerable \(group steerable\); this bundle builds "
                         r"network_name=se2 \(group se2_12, \|G\|=12\)"),
    # the same group, full vs separable convs: told apart by the weights (not "other --network_channels?")
    ("p4", "p4_separable", r"trained with network_name=p4 or basicunet_p4 or segresnet_p4 \(group p4, \|G\|=4\); "
                           r"this bundle builds "
                           r"network_name=p4_separable \(group p4, \|G\|=4\): run with --network_name p4,"),
    ("p4_separable", "p4", r"trained with network_name=p4_separable \(group p4, \|G\|=4\); this bundle builds "
                           r"network_name=p4 \(group p4, \|G\|=4\): run with --network_name p4_separable,"),
])
def test_checkpoint_of_another_network_names_both_groups(trained, built, match):
    weights = _net(trained).state_dict()
    with pytest.raises(ValueError, match=match):
        _net(built).load_state_dict(weights)  # before: 1.6 kB of size mismatches naming no group


def test_checkpoint_of_the_same_group_with_other_channels_points_at_network_channels():
    weights = bundle_network("segmentation", "p4", 2, in_channels=3, out_channels=1, channels=(4, 16)).state_dict()
    with pytest.raises(ValueError, match=r"network_name=p4 or basicunet_p4 or segresnet_p4 \(group p4, \|G\|=4\) "
                                         r"network like this bundle's.*--network_channels"):
        _net("p4").load_state_dict(weights)
    _net("p4").load_state_dict(_net("p4").state_dict())  # matching weights load as before


def test_bundle_evaluate_names_the_group_of_a_checkpoint_of_another_network(tmp_path):
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    (root / "models").mkdir()
    torch.save(_net("p4").state_dict(), root / "models" / "model.pt")  # as a p4 training writes it
    flow = workflow(root, ["train.json", "evaluate.json"], **{**TINY["polyp_segmentation"], "network_name": "p4m"})
    flow.initialize()
    try:
        with pytest.raises(Exception) as error:
            flow.run()
        expected = ("trained with network_name=p4 or basicunet_p4 or segresnet_p4 (group p4, |G|=4); this bundle "
                    "builds network_name=p4m")
        assert expected in messages(error.value)
    finally:
        flow.finalize()


def test_ckpt_export_of_a_training_checkpoint_points_at_key_in_ckpt(tmp_path):
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    (root / "models").mkdir()
    net = _net("p4")
    training = {"model": net.state_dict(), "optimizer": torch.optim.Adam(net.parameters()).state_dict(),
                "trainer": {"epoch": 1, "iteration": 3}, "lr_scheduler": {}}
    torch.save(training, root / "models" / "checkpoint_epoch=1.pt")
    with pytest.raises(ValueError, match=r"training checkpoint .*: pass --key_in_ckpt model"):
        ckpt_export(net_id="network_def", filepath=str(root / "models" / "model.ts"),
                    ckpt_file=str(root / "models" / "checkpoint_epoch=1.pt"),
                    meta_file=str(root / "configs" / "metadata.json"),
                    config_file=str(root / "configs" / "inference.json"), bundle_root=str(root),
                    network_channels=[4, 8])
    assert not (root / "models" / "model.ts").exists()


# ---------------------------------------------------------------- item 18: initialize on a fresh bundle


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("configs, kind", [(["inference.json"], "infer"), (["train.json", "evaluate.json"], "eval")])
def test_fresh_bundle_initializes_and_refuses_at_run_before_preparing_data(tmp_path, name, configs, kind):
    root = copy_bundle(name, tmp_path / "bundle")
    flow = workflow(root, configs, kind, **TINY[name])
    flow.initialize()  # before: "no trained model" from a config expression in initialize
    try:
        with pytest.raises(RuntimeError) as error:
            flow.run()
        expected = f"no trained model at {str(root / 'models' / 'model.pt')!r}: run train.json first"
        assert expected in messages(error.value)
        assert written(root) <= {".bundle.lock"}  # refused before any data are prepared
    finally:
        flow.finalize()


@pytest.mark.parametrize("name", list(TINY))
def test_fresh_bundle_inference_passes_check_properties(tmp_path, name):
    """What the model-zoo checks do on a bundle as published (no models/model.pt): initialize, then
    check_properties (which builds every property: the loader, the dataset, the evaluator)."""
    root = copy_bundle(name, tmp_path / "bundle")
    flow = workflow(root, ["inference.json"], "infer", **TINY[name])
    flow.initialize()
    try:
        assert flow.check_properties() == []
    finally:
        flow.finalize()


# ---------------------------------------------------------------- item 13: verify_net_in_out --n 0


@pytest.mark.parametrize("factor", [{"n": 0}, {"n": -1}, {"p": 1.5}, {"any": True}])
def test_verify_net_in_out_refuses_shape_factors_by_name(factor):
    from monai_equivariant.bundle.overrides import verify_net_in_out

    configs = BUNDLES / "polyp_segmentation" / "configs"
    (name, value), = factor.items()
    with pytest.raises(ValueError, match=f"--{name} must be an integer ≥ 1, got"):
        verify_net_in_out("network_def", meta_file=str(configs / "metadata.json"),
                          config_file=str(configs / "inference.json"), device="cpu", **factor)
    verify_net_in_out("network_def", meta_file=str(configs / "metadata.json"),  # n=1 (the declared minimum) passes
                      config_file=str(configs / "inference.json"), device="cpu", n=1)
