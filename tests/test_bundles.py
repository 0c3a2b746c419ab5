"""The MONAI bundles under bundles/, run for real on CPU on their synthetic defaults with tiny overrides."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_matches
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from monai_equivariant.data import find_polyp_pairs, polyp_datalist
from monai_equivariant.handlers import AtomicCheckpointSaver, latest_checkpoint
from monai_equivariant.networks.registry import network_names

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = BUNDLES / "schema" / "meta_schema.json"
POLYP_TINY = {
    "image_size": 32,
    "synthetic_samples": 12,
    "network_channels": [4, 8],
    "epochs": 2,
    "batch_size": 4,
    "progress": False,
}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _cli_overrides(overrides: dict) -> list[str]:
    return [item for key, value in overrides.items() for item in (f"--{key}", repr(value))]


def copy_bundle(name: str, root: Path) -> Path:
    """The bundle's configs/docs copied to ``root`` (outputs then land in ``root``, never in the repo)."""
    outputs = shutil.ignore_patterns("models", "eval", "data", "predictions", "runs")
    shutil.copytree(BUNDLES / name, root, ignore=outputs)
    return root


def initialized_workflow(root: Path, configs: list[str], workflow_type: str = "train", **overrides) -> ConfigWorkflow:
    """What ``python -m monai.bundle run`` builds, in-process and initialized (the caller runs and finalizes it)."""
    workflow = ConfigWorkflow(
        config_file=[str(root / "configs" / c) for c in configs],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    return workflow


def run_workflow(root: Path, configs: list[str], workflow_type: str = "train", **overrides) -> ConfigWorkflow:
    """What ``python -m monai.bundle run`` does, in-process (saves the interpreter start-up per run)."""
    workflow = initialized_workflow(root, configs, workflow_type, **overrides)
    workflow.run()
    workflow.finalize()
    return workflow


HISTO_TINY = {"synthetic_samples": 16, "network_channels": [4, 8], "epochs": 2, "batch_size": 8, "progress": False}
NODULE_TINY = {"synthetic_samples": 8, "patch_size": 16, "network_channels": [2, 4], "epochs": 2, "batch_size": 4,
               "progress": False}
# MONAI's DynUNet (the organ bundle's plain net): crops of a multiple of its strides' product (2, 4, 4) (z, y, x)
ORGAN_TINY = {"network_name": "dynunet", "roi_size": [8, 16, 16], "volume_size": [12, 24, 24], "synthetic_samples": 8,
              "network_channels": [2, 4, 8], "epochs": 2, "batch_size": 2, "progress": False}
TINY = {"polyp_segmentation": POLYP_TINY, "histopathology_classification": HISTO_TINY,
        "nodule_classification": NODULE_TINY, "organ_segmentation": ORGAN_TINY}
EXAMPLE_INPUT = {"polyp_segmentation": (2, 3, 32, 32), "histopathology_classification": (2, 3, 32, 32),
                 "nodule_classification": (2, 1, 16, 16, 16), "organ_segmentation": (2, 1, 8, 16, 16)}
# the group each bundle's evaluation is checked against (organ: the rotations of D4h, which keep left and right)
# and its order; the organ bundle's plain net is named after the MONAI net it is
CHECKED_GROUP = {"polyp_segmentation": ("p4", 4), "histopathology_classification": ("p4", 4),
                 "nodule_classification": ("O", 24), "organ_segmentation": ("D4", 8)}
PLAIN = {"organ_segmentation": "dynunet"}
BUNDLE_NAMES = list(TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(name)``: the bundle root of one tiny training run per bundle, shared by the tests below."""
    roots: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in roots:
            roots[name] = copy_bundle(name, tmp_path_factory.mktemp(name) / "bundle")
            run_workflow(roots[name], ["train.json"], **TINY[name])
        return roots[name]

    return get


@pytest.fixture(scope="module")
def polyp(trained) -> Path:
    return trained("polyp_segmentation")


# ---------------------------------------------------------------- every bundle: train / evaluate / infer


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_train_writes_model_and_checkpoint(trained, name):
    root = trained(name)
    assert (root / "models" / "model.pt").is_file()
    assert latest_checkpoint(root / "models").endswith("checkpoint_epoch=2.pt")
    weights = torch.load(root / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())  # a flat state dict of the network


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_evaluate_loads_model_and_writes_metrics(trained, name, capsys):
    root = trained(name)
    workflow = run_workflow(root, ["train.json", "evaluate.json"], **TINY[name])
    metrics = dict(line.split(",") for line in (root / "eval" / "metrics.csv").read_text().splitlines())
    expected = {"polyp_segmentation": {"val_mean_dice", "val_mean_iou", "equivariance_dice", "equivariance_iou",
                                       "equivariance_mad"},
                "histopathology_classification": {"val_auc", "val_accuracy", "equivariance_agreement",
                                                  "equivariance_logit_change"},
                "nodule_classification": {"val_auc", "val_accuracy", "equivariance_agreement",
                                          "equivariance_logit_change"},
                "organ_segmentation": {"val_mean_dice", "val_mean_iou", "equivariance_dice", "equivariance_iou",
                                       "equivariance_mad"}}[name]
    assert set(metrics) == expected and all(0.0 <= float(v) for v in metrics.values())
    assert all(float(metrics[k]) <= 1.0 for k in metrics if "mad" not in k and "logit" not in k)
    for figure in ("equivariance_curve.png", "equivariance_boxplot.png", "equivariance_per_angle.csv"):
        assert (root / "eval" / figure).is_file()  # the issue-7 handler's curve over 0..90 degrees
    errors = workflow.parser.get_parsed_content("equivariance_errors")
    # P4UNet / SE2CNN(8): exact under the 4 rotations by 90 degrees; GroupCNN(O): under all 24 cube rotations
    assert errors.shape == (CHECKED_GROUP[name][1],)
    if TINY[name].get("network_name") != PLAIN.get(name):  # the organ bundle's tiny run trains MONAI's DynUNet
        assert errors.max() < 1e-4
    assert "variance max|f(g.x)" in capsys.readouterr().out  # printed for the main job


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_baselines_augmentation_train_samples_and_group_ensemble(tmp_path, name):
    """The plain net with --augmentation rotate / group and --train_samples trains; --inferer group_ensemble
    makes it exactly equivariant (invariant) in evaluation, and inference runs through the ensemble.
    (The group transform and inferer packages land separately: their parts run once they are installed.)"""
    tiny = dict(TINY[name], epochs=1, network_name=PLAIN.get(name, "plain"))
    group, order = CHECKED_GROUP[name]
    augmentations = ["rotate"] + (["group"] if _available("monai_equivariant.transforms") else [])
    for augmentation in augmentations:
        root = copy_bundle(name, tmp_path / augmentation)
        workflow = run_workflow(root, ["train.json"], augmentation=augmentation, train_samples=4, **tiny)
        assert len(workflow.parser.get_parsed_content("train#dataset")) == 4
        kinds = [type(t).__name__ for t in workflow.parser.get_parsed_content("train#preprocessing").transforms]
        assert kinds[-1] == {"rotate": "RandRotated", "group": "RandGroupElementd"}[augmentation]
    if not _available("monai_equivariant.inferers"):
        return
    one_image = {"validate#handlers#1#num_images": 1,  # the equivariance handler: |G| x |G| forwards per image
                 "equivariance_images": "$next(iter(@validate#dataloader))['image'][:2].to(@device)"}
    evaluated = run_workflow(root, ["train.json", "evaluate.json"], inferer="group_ensemble", **one_image, **tiny)
    assert type(evaluated.parser.get_parsed_content("validate#inferer")).__name__ == "GroupEnsembleInferer"
    errors = evaluated.parser.get_parsed_content("equivariance_errors")
    assert errors.shape == (order,) and errors.max() < 1e-4  # the plain net, made exact
    inferred = run_workflow(root, ["inference.json"], workflow_type="infer", inferer="group_ensemble",
                            output_dir=str(tmp_path / "predictions"), **tiny)
    assert inferred.parser.get_parsed_content("evaluator").inferer.group.name == group
    assert any((tmp_path / "predictions").iterdir())


def test_polyp_train_split_70_15_15(polyp):
    datalist = json.loads((polyp / "data" / "datalist.json").read_text())
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [8, 2, 2]


def test_polyp_inference_writes_png_masks(polyp):
    run_workflow(polyp, ["inference.json"], workflow_type="infer", **POLYP_TINY)
    masks = sorted((polyp / "predictions").glob("*_mask.png"))
    assert len(masks) == 2
    for mask in masks:
        values = np.asarray(Image.open(mask))
        assert values.shape == (32, 32) and set(np.unique(values)) <= {0, 255}


@pytest.mark.parametrize("name", ["histopathology_classification", "nodule_classification"])
def test_classification_inference_writes_probability_csv(trained, name):
    root = trained(name)
    run_workflow(root, ["inference.json"], workflow_type="infer", **TINY[name])
    rows = [line.split(",") for line in (root / "predictions" / "predictions.csv").read_text().splitlines()]
    assert len(rows) == TINY[name]["synthetic_samples"] and rows[0][0] == "synthetic_test_00000"
    probabilities = np.array([[float(v) for v in row[1:]] for row in rows])
    assert probabilities.shape == (len(rows), 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_polyp_inference_on_kvasir_layout_restores_the_original_size(polyp, tmp_path):
    dataset = _write_kvasir(tmp_path / "kvasir", count=6, shape=(40, 56))
    run_workflow(polyp, ["inference.json"], workflow_type="infer", dataset_dir=str(dataset),
                 output_dir=str(tmp_path / "out"), datalist_dir=str(tmp_path / "lists"), **POLYP_TINY)
    masks = sorted((tmp_path / "out").glob("*_mask.png"))
    assert len(masks) == 1 and np.asarray(Image.open(masks[0])).shape == (40, 56)


# ---------------------------------------------------------------- every bundle: bundle checks


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_verify_metadata_offline_and_rejects_missing_fields(tmp_path, name):
    meta = BUNDLES / name / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta), filepath=str(SCHEMA))  # the file exists: no download is attempted
    broken = json.loads(meta.read_text())
    del broken["network_data_format"]["outputs"]["pred"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="pred"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA))


NETWORK_NAMES = {"polyp_segmentation": ["p4", "p4m", "se2", "steerable", "plain", "p4_separable", "basicunet_p4",
                                        "segresnet_p4"],
                 "histopathology_classification": ["se2", "p4", "plain", "resnet_p4", "resnet"],
                 "nodule_classification": ["O", "Oh", "D4h", "plain", "O_separable"],
                 # metadata.json states the D4h DynUNet's sizes (odd); MONAI's DynUNet: tests/test_organ_bundle.py
                 "organ_segmentation": [n for n in network_names("segmentation", 3) if n != "dynunet"]}


@pytest.mark.parametrize("name, network_name", [(b, n) for b, names in NETWORK_NAMES.items() for n in names])
def test_bundle_verify_net_in_out_for_every_network_name(name, network_name):
    # at the declared minimum shape (n=1): every --network_name must take it (the plain nets' instance norm
    # needs more than one value per channel at the deepest level)
    configs = BUNDLES / name / "configs"
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "inference.json"), device="cpu", network_name=network_name)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_large_files_name_the_model_and_download_large_files_reads_them(tmp_path, name, monkeypatch):
    import monai.bundle.scripts as scripts
    from monai.bundle import ConfigParser, download_large_files

    entries = ConfigParser.load_config_file(str(BUNDLES / name / "large_files.yml"))["large_files"]
    assert [e["path"] for e in entries] == ["models/model.pt"] and entries[0]["url"].startswith("https://")
    calls = []
    monkeypatch.setattr(scripts, "download_url", lambda **kwargs: calls.append(kwargs))
    download_large_files(bundle_path=str(BUNDLES / name))
    assert calls and calls[0]["filepath"].endswith("models/model.pt")


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_ckpt_export_is_plain_torch_and_matches(trained, name):
    from monai.bundle import ConfigParser

    root = trained(name)
    configs = root / "configs"
    target = root / "models" / "model.ts"
    overrides = {k: v for k, v in TINY[name].items() if k in ("network_channels", "network_name")}
    ckpt_export(net_id="network_def", filepath=str(target), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
                bundle_root=str(root), **overrides)
    scripted = torch.jit.load(str(target))
    kinds = {m.original_name for m in scripted.modules()}
    conv = "Conv3d" if len(EXAMPLE_INPUT[name]) == 5 else "Conv2d"
    assert "LiftingConv" not in kinds and "GroupConv" not in kinds and conv in kinds
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    parser.update(overrides)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    x = torch.rand(*EXAMPLE_INPUT[name])
    assert_matches(scripted(x), net.eval()(x), net)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
@pytest.mark.parametrize("configs, kind", [(["train.json"], "train"), (["inference.json"], "infer")])
def test_bundle_check_properties(trained, name, configs, kind):
    root = trained(name)
    workflow = ConfigWorkflow(config_file=[str(root / "configs" / c) for c in configs],
                              meta_file=str(root / "configs" / "metadata.json"), workflow_type=kind,
                              bundle_root=str(root), **TINY[name])
    workflow.initialize()
    assert workflow.check_properties() == []


# ---------------------------------------------------------------- polyp: multi-process, resume, atomic saves


def test_polyp_torchrun_two_processes_gloo_checkpoint_loads_in_evaluate(tmp_path):
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
               "--bundle_root", str(root), *_cli_overrides(POLYP_TINY)]
    done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    weights = torch.load(root / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)  # DDP wrapper stripped
    workflow = run_workflow(root, ["train.json", "evaluate.json"], **POLYP_TINY)
    assert 0.0 <= workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"] <= 1.0


def test_polyp_killed_training_resumes_from_last_checkpoint(tmp_path):
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    base = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
            "--bundle_root", str(root)]
    long_run = dict(POLYP_TINY, epochs=500)
    process = subprocess.Popen(base + _cli_overrides(long_run), cwd=root, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300  # a fresh machine compiles every module on first import
        while time.time() < deadline and not list((root / "models").glob("checkpoint_epoch=*.pt")):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    saved = latest_checkpoint(root / "models")
    epoch = int(Path(saved).stem.rsplit("=", 1)[-1])
    assert 1 <= epoch < 500
    state = torch.load(saved, weights_only=True)  # atomic saves: whatever is on disk is complete
    assert state["trainer"]["iteration"] == epoch * state["trainer"]["epoch_length"]
    resumed = subprocess.run(base + _cli_overrides(dict(POLYP_TINY, epochs=epoch + 2, resume=True)), cwd=root,
                             env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"Restored all variables from {saved}" in log
    trained = [int(n) for n in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", log)]
    assert trained == [epoch + 1, epoch + 2]  # continues from the saved epoch, not from 1
    assert latest_checkpoint(root / "models").endswith(f"checkpoint_epoch={epoch + 2}.pt")


def test_polyp_resume_keeps_the_best_model_unless_beaten(polyp, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(polyp, root)
    best = (root / "models" / "model.pt").read_bytes()
    saved = torch.load(root / "models" / "checkpoint_epoch=2.pt", weights_only=True)
    (best_score, _), = saved["best_model_saver"]["_saved"]  # the best validation Dice so far, in the checkpoint
    # make the resumed model bad: zero weights and a very negative output bias predict no polyp (Dice 0)
    saved["model"] = {k: torch.full_like(v, -10.0) if k.endswith("bias") else torch.zeros_like(v)
                      for k, v in saved["model"].items()}
    torch.save(saved, root / "models" / "checkpoint_epoch=2.pt")
    workflow = run_workflow(root, ["train.json"], **dict(POLYP_TINY, epochs=3, resume=True))
    metrics = workflow.parser.get_parsed_content("validate#evaluator").state.metrics
    assert metrics["val_mean_dice"] <= best_score
    assert (root / "models" / "model.pt").read_bytes() == best  # not replaced by the worse epoch-3 model
    resumed = torch.load(root / "models" / "checkpoint_epoch=3.pt", weights_only=True)
    assert resumed["best_model_saver"]["_saved"][0][0] == best_score


def test_atomic_checkpoint_saver_keeps_old_file_when_a_save_fails(tmp_path, monkeypatch):
    from ignite.engine import Engine

    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    before = (tmp_path / "model.pt").read_bytes()
    assert oct((tmp_path / "model.pt").stat().st_mode & 0o777) != "0o600"

    def broken_save(obj, f, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        net.weight.add_(1)
    engine2 = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt").attach(engine2)
    with pytest.raises(OSError, match="disk full"):
        engine2.run([0], max_epochs=1)  # fails on completion, and again in MONAI's on-exception save
    assert (tmp_path / "model.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_epoch_checkpoints_never_leave_a_moment_without_one(tmp_path, monkeypatch):
    """ignite's Checkpoint (n_saved=1) removes checkpoint_epoch=N.pt before it writes N+1: a run killed in between
    had no checkpoint left (the killed-training test failed that way). The removal now waits for the new file."""
    from ignite.engine import Engine

    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    save_dict = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}  # several: "checkpoint_"
    AtomicCheckpointSaver(str(tmp_path), save_dict, file_prefix="", save_interval=1, n_saved=1,
                          epoch_level=True).attach(engine)  # as the bundles configure it
    seen_before_each_write = []
    original = torch.save

    def watching_save(obj, f, **kwargs):
        seen_before_each_write.append(sorted(p.name for p in tmp_path.glob("checkpoint_epoch=*.pt")))
        return original(obj, f, **kwargs)

    monkeypatch.setattr(torch, "save", watching_save)
    engine.run([0], max_epochs=3)
    assert seen_before_each_write == [[], ["checkpoint_epoch=1.pt"], ["checkpoint_epoch=2.pt"]]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_epoch=3.pt"]  # n_saved=1 still holds

    def broken_save(obj, f, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        engine.run([0], max_epochs=4)  # epoch 4's save fails: epoch 3's file stays
    assert (tmp_path / "checkpoint_epoch=3.pt").exists()


# ---------------------------------------------------------------- polyp data: real layouts and bad input


def _write_kvasir(root: Path, count: int, shape=(40, 48)) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(root / "images" / f"cju{i}.jpg")
        mask = np.zeros((*shape, 3), np.uint8)
        mask[5:20, 8:30] = 255
        Image.fromarray(mask).save(root / "masks" / f"cju{i}.jpg")  # RGB JPEG mask, as Kvasir ships it
    return root


def _write_cvc(root: Path, count: int) -> Path:
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for i in range(1, count + 1):
        Image.fromarray(np.full((36, 44, 3), 100, np.uint8)).save(root / "Original" / f"{i}.tif")
        Image.fromarray(np.full((36, 44), 255, np.uint8)).save(root / "Ground Truth" / f"{i}.tif")
    return root


def test_polyp_loaders_detect_layouts_and_split_70_15_15(tmp_path):
    kvasir = _write_kvasir(tmp_path / "download" / "Kvasir-SEG", 20)  # the extracted zip's sub-folder works too
    layout, pairs = find_polyp_pairs(tmp_path / "download")
    assert layout == "Kvasir-SEG" and len(pairs) == 20 and Path(pairs[0]["label"]).parent.name == "masks"
    split = polyp_datalist(kvasir, tmp_path / "out", seed=3)
    assert [len(split[k]) for k in ("training", "validation", "test")] == [14, 3, 3]
    assert split == polyp_datalist(kvasir, tmp_path / "out2", seed=3)
    assert split != polyp_datalist(kvasir, tmp_path / "out3", seed=4)
    assert json.loads((tmp_path / "out" / "datalist.json").read_text())["layout"] == "Kvasir-SEG"
    layout, pairs = find_polyp_pairs(_write_cvc(tmp_path / "cvc", 5))
    assert layout == "CVC-ClinicDB" and pairs[0]["label"].endswith("Ground Truth/1.tif")


def test_polyp_bundle_transforms_binarise_kvasir_and_cvc_masks(tmp_path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "polyp_segmentation" / "configs" / "train.json"))
    parser["image_size"] = 32
    transform = parser.get_parsed_content("validate#preprocessing")
    for root in (_write_kvasir(tmp_path / "k", 3), _write_cvc(tmp_path / "c", 3)):
        item = transform(find_polyp_pairs(root)[1][0])
        assert item["image"].shape == (3, 32, 32) and 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["label"].shape == (1, 32, 32) and set(torch.unique(item["label"]).tolist()) <= {0.0, 1.0}
        assert item["label"].sum() > 0


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda root: root, "does not exist"),
        (lambda root: (root / "scans").mkdir(parents=True) or root, "wrong layout"),
        (lambda root: (_write_kvasir(root, 4), (root / "masks" / "cju2.jpg").unlink())[0], "no mask"),
        (lambda root: (_write_kvasir(root, 4), (root / "images" / "cju1.jpg").write_bytes(b"not a jpeg"))[0],
         "cannot read"),
        (lambda root: (_write_kvasir(root, 4), _truncate(root / "images" / "cju3.jpg"))[0], "cannot read"),
    ],
    ids=["missing", "wrong-layout", "image-without-mask", "unreadable", "truncated-jpeg"],
)
def test_polyp_bad_dataset_dir_names_path_and_layout_and_keeps_outputs(polyp, tmp_path, make, expected):
    bad = make(tmp_path / "dataset")
    with pytest.raises(ValueError, match=expected) as error:
        find_polyp_pairs(bad)
    assert str(bad) in str(error.value) and ("Kvasir-SEG" in str(error.value) or "JPEG" in str(error.value))
    if expected == "cannot read":
        assert "cju" in str(error.value)  # the file is named
    kept = {p: p.read_bytes() for p in (polyp / "models").iterdir()} | {
        polyp / "data" / "datalist.json": (polyp / "data" / "datalist.json").read_bytes()}
    with pytest.raises(RuntimeError) as error:
        run_workflow(polyp, ["train.json"], dataset_dir=str(bad), **POLYP_TINY)
    assert expected in repr(error.value.__cause__)
    assert {p: p.read_bytes() for p in kept} == kept


def _truncate(path: Path) -> None:
    """Cut a JPEG in half: PIL's ``verify()`` accepts it, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_polyp_truncated_jpeg_passes_verify_but_is_refused_by_name(tmp_path):
    from PIL import Image

    root = _write_kvasir(tmp_path / "kvasir", 4, shape=(64, 64))
    _truncate(root / "images" / "cju2.jpg")
    with Image.open(root / "images" / "cju2.jpg") as image:
        image.verify()  # what the old check did: passes
    with pytest.raises(ValueError, match=r"cannot read image file .*images/cju2\.jpg.*truncated"):
        find_polyp_pairs(root)
    with pytest.raises(ValueError, match="cannot read"):
        polyp_datalist(root, tmp_path / "lists")
    assert not (tmp_path / "lists").exists()  # nothing written before the data is validated


def test_polyp_mask_of_another_size_and_16_bit_images_are_refused_naming_the_files(tmp_path):
    from PIL import Image

    root = _write_kvasir(tmp_path / "kvasir", 4)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "masks" / "cju1.jpg")
    with pytest.raises(ValueError, match=r"mask .*masks/cju1\.jpg' is 40x40 but its image .*images/cju1\.jpg' is 48x40"):
        find_polyp_pairs(root)
    cvc = _write_cvc(tmp_path / "cvc", 3)
    Image.fromarray(np.full((36, 44), 1000, np.uint16)).save(cvc / "Original" / "2.tif")
    with pytest.raises(ValueError, match=r"Original/2\.tif' has PIL mode 'I;16'"):
        find_polyp_pairs(cvc)


def test_polyp_grayscale_frame_among_rgb_ones_is_read_as_rgb(tmp_path):
    from monai.bundle import ConfigParser

    root = _write_kvasir(tmp_path / "kvasir", 4)
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(root / "images" / "cju0.jpg")  # one grayscale JPEG
    cvc = _write_cvc(tmp_path / "cvc", 2)
    Image.fromarray(np.full((36, 44), 60, np.uint8)).save(cvc / "Original" / "1.tif")  # one grayscale TIFF
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "polyp_segmentation" / "configs" / "train.json"))
    parser["image_size"] = 32
    transform = parser.get_parsed_content("validate#preprocessing")
    for pairs in (find_polyp_pairs(root)[1], find_polyp_pairs(cvc)[1]):
        items = [transform(pair) for pair in pairs]
        assert all(item["image"].shape == (3, 32, 32) and item["label"].shape == (1, 32, 32) for item in items)
        gray = items[0]["image"]
        assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # three equal channels
        torch.utils.data.default_collate(items)  # stacks (failed with a size mismatch before)


_LOCK_HOLDER = ("import importlib.util, sys, time; spec = importlib.util.spec_from_file_location('lock', sys.argv[2]); "
                "lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock); "
                "lock.lock_bundle_root(sys.argv[1]); print('locked', flush=True); time.sleep(120)")


def test_bundle_refuses_a_second_run_in_one_bundle_root_and_refuses_to_evaluate_untrained(tmp_path):
    root = copy_bundle("polyp_segmentation", tmp_path / "bundle")
    for configs, kind in ((["train.json", "evaluate.json"], "train"), (["inference.json"], "infer")):
        with pytest.raises(RuntimeError) as error:
            run_workflow(root, configs, workflow_type=kind, **POLYP_TINY)
        assert f"no trained model at {str(root / 'models' / 'model.pt')!r}: run train.json first" in repr(error.value.__cause__)
    assert not (root / "data").exists() and not (root / "eval").exists()  # refused before anything is written
    from monai_equivariant.bundle import unlock_bundle_root

    unlock_bundle_root(root)  # a failed workflow keeps the lock until finalize or the end of its process
    holder = subprocess.Popen([sys.executable, "-c", _LOCK_HOLDER, str(root),
                               str(REPO / "monai_equivariant" / "bundle" / "lock.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # another training holds this bundle root
        with pytest.raises(RuntimeError) as error:
            run_workflow(root, ["train.json"], **POLYP_TINY)
        assert f"another run is using the bundle root {str(root)!r} (pid {holder.pid}" in repr(error.value.__cause__)
        assert not (root / "data").exists() and not (root / "models").exists()
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- histopathology data: PCam HDF5 and bad input


def _write_pcam(root: Path, count: int = 6, splits=("train", "valid", "test")) -> Path:
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in splits:
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = rng.integers(0, 255, (count, 96, 96, 3), dtype=np.uint8)
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = (np.arange(count) % 2).astype(np.uint8).reshape(count, 1, 1, 1)
    return root


def test_pcam_patches_read_lazily_in_the_bundle_format(tmp_path):
    from monai_equivariant.data import PCamPatches, histopathology_dataset

    root = _write_pcam(tmp_path / "pcam")
    data = histopathology_dataset(root, "validation", max_samples=4)
    assert isinstance(data, PCamPatches) and len(data) == 4
    item = data[3]
    assert item["image"].shape == (3, 96, 96) and item["image"].dtype == np.float32 and item["image"].max() <= 1
    assert item["label"].tolist() == [0.0, 1.0] and item["id"] == "pcam_valid_000003"
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4, num_workers=1)))  # handles reopen per worker
    assert batch["image"].shape == (4, 3, 96, 96) and batch["label"].argmax(1).tolist() == [0, 1, 0, 1]
    synthetic = histopathology_dataset(None, "training", synthetic_samples=6, synthetic_size=32)
    assert len(synthetic) == 6 and synthetic[1]["image"].shape == (3, 32, 32) and synthetic[1]["label"].tolist() == [0, 1]


def test_pcam_bad_input_names_path_and_layout(tmp_path):
    from monai_equivariant.data import histopathology_dataset

    with pytest.raises(ValueError, match="does not exist.*camelyonpatch_level_2_split"):
        histopathology_dataset(tmp_path / "nowhere", "training")
    root = _write_pcam(tmp_path / "pcam", splits=("train",))
    with pytest.raises(ValueError, match="missing PCam file .*split_test_x.h5"):
        histopathology_dataset(root, "test")
    (root / "camelyonpatch_level_2_split_valid_x.h5.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="gunzip"):
        histopathology_dataset(root, "validation")
    (root / "camelyonpatch_level_2_split_train_x.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="cannot read PCam files"):
        histopathology_dataset(root, "training")
    with pytest.raises(ValueError, match="split must be one of"):
        histopathology_dataset(None, "holdout")


@pytest.mark.parametrize("network_name, group_order", [("p4", 4), ("p4m", 8), ("se2", 12), ("plain", 1), ("steerable", 8)])
def test_polyp_network_name_override_builds_only_that_net(network_name, group_order):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "polyp_segmentation" / "configs" / "train.json"))
    parser.update({"network_name": network_name, "network_channels": [4, 8]})
    net = parser.get_parsed_content("network_def")
    assert (net.group.order if hasattr(net, "group") else net.num_rotations) == group_order
    x = torch.rand(1, 3, 16, 16)
    assert net.eval()(x).shape == (1, 1, 16, 16)
    scripted = torch.jit.script(net)  # the factory marks every net scriptable (plain-torch export)
    assert_matches(scripted(x), net(x), net)


def test_network_factories_reject_unknown_names():
    from monai_equivariant.networks.factory import classification_network, segmentation_network

    with pytest.raises(ValueError, match="network_name must be one of"):
        segmentation_network("resnet")
    with pytest.raises(ValueError, match="not one of"):
        classification_network("O", spatial_dims=2)


# ---------------------------------------------------------------- nodule data: LUNA16 layout, FROC, bad input


def _write_luna16(root: Path, scans: int = 3, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    (root / "subset0").mkdir(parents=True)
    rows = ["seriesuid,coordX,coordY,coordZ,class"]
    for s in range(scans):
        uid = f"1.3.6.1.4.1.14519.5.2.1.{s}"
        volume = rng.normal(-800, 50, (size, size, size)).astype(np.int16)
        zz, yy, xx = np.mgrid[0:size, 0:size, 0:size]
        for k, (x, y, z) in enumerate([(12, 12, 12), (28, 28, 28), (12, 28, 20), (28, 12, 20)]):
            if k % 2 == 0:  # a bright sphere at the positive candidates
                volume[(xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2 < 16] = 40
            rows.append(f"{uid},{x + 0.0},{y + 0.0},{z + 0.0},{1 - k % 2}")
        volume.tofile(root / "subset0" / f"{uid}.raw")
        (root / "subset0" / f"{uid}.mhd").write_text(
            "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
            "CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\nElementSpacing = 1 1 1\n"
            f"DimSize = {size} {size} {size}\nElementType = MET_SHORT\nElementDataFile = {uid}.raw\n"
        )
    (root / "candidates.csv").write_text("\n".join(rows) + "\n")
    return root


def test_nodule_bundle_on_luna16_layout_reports_froc(trained, tmp_path):
    from monai_equivariant.data.nodule_datalist import nodule_data_kind, nodule_datalist

    luna = _write_luna16(tmp_path / "luna16")
    assert nodule_data_kind(luna) == "luna16"
    splits = {s: nodule_datalist(luna, s, patch_size=16) for s in ("training", "validation", "test")}
    scans = [{item["seriesuid"] for item in items} for items in splits.values()]
    assert [len(s) for s in scans] == [1, 1, 1] and not set.intersection(*scans)  # split by scan
    root = trained("nodule_classification")
    overrides = dict(NODULE_TINY, dataset_dir=str(luna), output_dir=str(tmp_path / "eval"),
                     cache_dir=str(tmp_path / "cache"))
    workflow = run_workflow(root, ["train.json", "evaluate.json"], **overrides)
    metrics = workflow.parser.get_parsed_content("validate#evaluator").state.metrics
    assert 0.0 <= metrics["froc"] <= 1.0 and "froc_0.125" in metrics and "froc_8" in metrics
    assert "froc" in (tmp_path / "eval" / "metrics.csv").read_text()


def test_nodule_bad_dataset_dir_names_path_and_layouts(tmp_path):
    from monai_equivariant.data.nodule_datalist import nodule_datalist

    with pytest.raises(ValueError, match="does not exist.*NoduleMNIST3D.*LUNA16"):
        nodule_datalist(tmp_path / "nowhere", "training")
    (tmp_path / "scans").mkdir()
    with pytest.raises(ValueError, match="wrong layout.*nodulemnist3d.npz"):
        nodule_datalist(tmp_path / "scans", "training")
