"""monai_equivariant.bundle (what the bundle configs call), the run lock and the best-model state of the
checkpoint saver, without running a bundle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.inferers import SimpleInferer, SlidingWindowInferer

from monai_equivariant.bundle import (
    BundleRootLock,
    as_bool,
    augmentation,
    bundle_inferer,
    checked_group,
    equivariance_errors,
    first_samples,
    lock_bundle_root,
    print_classification_report,
    print_segmentation_report,
    resume_checkpoint,
    trained_model,
    unlock_bundle_root,
)
from monai_equivariant.handlers import AtomicCheckpointSaver

REPO = Path(__file__).resolve().parents[1]


def test_as_bool_reads_command_line_booleans_and_refuses_others():
    assert [as_bool(v) for v in (True, "True", "true", 1, "1", "yes")] == [True] * 6
    assert [as_bool(v) for v in (False, "False", 0, "0", "no", None, "")] == [False] * 7
    with pytest.raises(ValueError, match="expected a boolean.*'maybe'"):
        as_bool("maybe")


def test_checked_group_per_network_name():
    assert [checked_group(n, 2) for n in ("p4", "p4m", "se2", "steerable", "plain")] == ["p4", "p4m", "p4", "p4", "p4"]
    assert [checked_group(n, 3) for n in ("O", "Oh", "D4h", "plain")] == ["O", "Oh", "D4h", "O"]
    with pytest.raises(ValueError, match="network_name must be one of"):
        checked_group("O", 2)


def test_first_samples_is_a_prefix_and_refuses_more_than_there_are():
    items = list(range(10))
    assert first_samples(items, None) == items and first_samples(items, 0) == items
    assert first_samples(items, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="asked for 11 training samples, but there are 10"):
        first_samples(items, 11)


def test_trained_model_and_resume_checkpoint_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no trained model at .*model\.pt.*: run train\.json first"):
        trained_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    assert trained_model(tmp_path) == str(tmp_path / "model.pt")
    assert resume_checkpoint(tmp_path, "False") is None
    with pytest.raises(ValueError, match="to resume from"):
        resume_checkpoint(tmp_path, True)


def test_augmentation_none_and_rotate_in_2d_and_3d():
    assert augmentation("none", ["image", "label"]) == []
    with pytest.raises(ValueError, match="--augmentation must be one of"):
        augmentation("flip", "image")
    (rotate,) = augmentation("rotate", ["image", "label"], 2, modes=["bilinear", "nearest"])
    rotate.set_random_state(0)
    label = torch.zeros(1, 16, 16)
    label[:, 4:12, 6:10] = 1
    out = rotate({"image": torch.rand(3, 16, 16), "label": label})
    assert out["image"].shape == (3, 16, 16) and set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    assert not torch.equal(out["label"], label)  # rotated (by a random angle)
    (rotate3d,) = augmentation("rotate", "image", 3)
    assert rotate3d.rand_rotate.range_z != (0.0, 0.0) and rotate3d({"image": torch.rand(1, 8, 8, 8)})["image"].shape == (1, 8, 8, 8)


def test_bundle_inferer_passes_inferers_through_and_builds_named_ones():
    window = SlidingWindowInferer(roi_size=(16, 16))
    assert bundle_inferer(window) is window
    assert isinstance(bundle_inferer("simple"), SimpleInferer)
    with pytest.raises(ValueError, match="--inferer must be one of"):
        bundle_inferer("tta")


def test_equivariance_errors_and_reports(capsys):
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = torch.rand(2, 3, 8, 8)
    errors = equivariance_errors(net, SimpleInferer(), x, "p4")
    assert errors.shape == (4,) and errors[0] == 0 and errors[1:].max() > 1e-3 and net.training  # the mode it had (issue 20: restored)
    metrics = {"val_mean_dice": 0.5, "val_mean_iou": 0.4, "equivariance_dice": 0.9, "equivariance_iou": 0.8,
               "equivariance_mad": 0.1, "equivariance_dice_0": 1.0, "equivariance_dice_45": 0.8}
    print_segmentation_report(metrics, errors, "p4")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "test Dice 0.5 IoU 0.4" and "0:1.000 45:0.800 | mean dice 0.900 iou 0.800 mad 0.100" in out[1]
    assert out[2].startswith("equivariance max|f(g.x) - g.f(x)| / max|f| for the 90-degree rotations")
    metrics = {"val_auc": 0.9, "val_accuracy": 0.8, "froc": 0.7, "equivariance_agreement": 1.0,
               "equivariance_logit_change": 0.0, "equivariance_agreement_g1": 1.0}
    print_classification_report(metrics, torch.zeros(24), "O", by="group element")
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["test AUC 0.9 accuracy 0.8", "LUNA16 FROC 0.7"]
    assert "by group element: g1:1.00 | mean agreement 1.000 logit_change 0.000" in out[2]
    assert out[3].endswith("for the 24 cube rotations: max 0.0e+00")


# ---------------------------------------------------------------- the best model survives a resume


def _validation(saver: AtomicCheckpointSaver, scores: list[float]) -> Engine:
    """An evaluator whose key metric takes the given values, one per run, with ``saver`` attached."""
    engine = Engine(lambda e, b: None)
    values = iter(scores)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics["score"] = next(values)

    saver.attach(engine)
    return engine


def test_checkpointed_saver_state_keeps_the_best_model_unless_beaten(tmp_path):
    net = torch.nn.Linear(2, 1)

    def best_saver():
        return AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_name="score",
                                     key_metric_filename="model.pt")

    saver = best_saver()
    engine = _validation(saver, [0.8, 0.9])
    for _ in range(2):
        engine.run([0], max_epochs=1)
        with torch.no_grad():
            net.weight.add_(1)
    best = (tmp_path / "model.pt").read_bytes()
    assert saver.best_score == 0.9
    torch.save({"best_model_saver": saver.state_dict()}, tmp_path / "checkpoint.pt")

    resumed = best_saver()  # a new process: a fresh saver, its state loaded from the training checkpoint
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best_model_saver"])
    assert resumed.best_score == 0.9
    engine = _validation(resumed, [0.7, 0.95])
    engine.run([0], max_epochs=1)  # worse: the best model stays
    assert (tmp_path / "model.pt").read_bytes() == best
    engine.run([0], max_epochs=1)  # better: replaced
    assert (tmp_path / "model.pt").read_bytes() != best and resumed.best_score == 0.95
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "model.pt"]


# ---------------------------------------------------------------- one run per bundle root


# the lock module alone (it imports nothing of the package): a second process starts in a fraction of a second
_LOAD_LOCK = ("import importlib.util, sys, time; spec = importlib.util.spec_from_file_location('lock', sys.argv[2]); "
              "lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock); ")
LOCK_PY = str(REPO / "monai_equivariant" / "bundle" / "lock.py")


def test_bundle_root_lock_refuses_a_second_run_and_takes_over_a_dead_ones(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOAD_LOCK + "lock.lock_bundle_root(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(120)", str(tmp_path), LOCK_PY], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"another run is using the bundle root .*\(pid {holder.pid} on"):
            lock_bundle_root(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert BundleRootLock(tmp_path).holder()["pid"] == holder.pid  # the killed run's file is left behind...
    lock_bundle_root(tmp_path)  # ...and taken over
    try:
        assert BundleRootLock(tmp_path).holder()["pid"] == os.getpid() and BundleRootLock(tmp_path).held
        lock_bundle_root(tmp_path)  # re-entrant in one process
    finally:
        unlock_bundle_root(tmp_path)
    assert not BundleRootLock(tmp_path).held
    second = subprocess.run([sys.executable, "-c", _LOAD_LOCK + "print(lock.lock_bundle_root(sys.argv[1]))",
                             str(tmp_path), LOCK_PY], capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and second.stdout.strip().endswith(".bundle.lock"), second.stderr  # released
