"""Reliability of data sets, checkpoints and resume (issue 19, items 6, 7, 8, 12 and the data/checkpoint parts of 17):
atomic synthetic sets validated against their stamp, evaluation/inference that never write the training data, a
resume that restores the evaluator's best metric and removes its start checkpoint, unreadable checkpoints named,
no temporary files after a failed (full-disk) save, folders given as files refused by name."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.bundle import ConfigWorkflow
from monai.engines import SupervisedEvaluator
from test_bundles import copy_bundle, initialized_workflow
from PIL import Image

from monai_equivariant.bundle import resume_checkpoint, trained_model
from monai_equivariant.data import (
    find_polyp_pairs,
    histopathology_dataset,
    luna16_patches,
    nodule_mnist3d,
    nodule_mnist3d_path,
    polyp_datalist,
    read_polyp_datalist,
    write_synthetic_polyp_dataset,
)
from monai_equivariant.data.nodule_datalist import nodule_datalist
from monai_equivariant.data.synthetic import SYNTHETIC_STAMP, synthetic_set_problem
from monai_equivariant.handlers import AtomicCheckpointSaver, AtomicDiskSaver, CheckedCheckpointLoader

REPO = Path(__file__).resolve().parents[1]
POLYP_TINY = {"image_size": 32, "synthetic_samples": 12, "network_channels": [4, 8], "epochs": 2, "batch_size": 4,
              "progress": False}


def _copy_bundle(root: Path) -> Path:
    return copy_bundle("polyp_segmentation", root)


_workflow = initialized_workflow  # in-process and initialized (the caller runs it)


def _run(root: Path, configs: list[str], workflow_type: str = "train", **overrides) -> ConfigWorkflow:
    workflow = _workflow(root, configs, workflow_type, **overrides)
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def trained_polyp(tmp_path_factory) -> Path:
    """One tiny 2-epoch polyp training (synthetic default); tests copy it before changing anything."""
    root = _copy_bundle(tmp_path_factory.mktemp("polyp") / "bundle")
    _run(root, ["train.json"], **POLYP_TINY)
    return root


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha1 of the bytes, mtime_ns)} of every file under ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _raises_in_chain(pattern: str, call, *args, **kwargs) -> None:
    """``call`` raises an error whose chain (MONAI's config parser wraps errors in RuntimeError) holds a
    ValueError whose message matches ``pattern``."""
    with pytest.raises(Exception) as caught:
        call(*args, **kwargs)
    error, chain = caught.value, []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    messages = [str(e) for e in chain if isinstance(e, ValueError)]
    assert any(re.search(pattern, m, re.S) for m in messages), [repr(e)[:300] for e in chain]


def _pairs_and_sizes(root: Path) -> tuple[int, set[tuple[int, int]]]:
    _, pairs = find_polyp_pairs(root)
    return len(pairs), {Image.open(p["image"]).size for p in pairs} | {Image.open(p["label"]).size for p in pairs}


# ---------------------------------------------------------------- item 7: atomic synthetic sets, validated on reuse


def test_synthetic_set_interrupted_while_regenerated_keeps_a_complete_set(tmp_path, monkeypatch):
    """The generator raises midway through writing another set over an existing one (what a crash does in-process):
    before, the old stamp stayed over a mix of deleted and new files, and the next run reused it silently."""
    import monai_equivariant.data.synthetic as synthetic

    root = write_synthetic_polyp_dataset(tmp_path / "synthetic_polyp", num_samples=8, size=32)
    original, calls = synthetic.synthetic_polyp, []

    def failing(rng, size):
        calls.append(size)
        if len(calls) > 5:
            raise RuntimeError("killed midway")
        return original(rng, size)

    monkeypatch.setattr(synthetic, "synthetic_polyp", failing)
    with pytest.raises(RuntimeError, match="killed midway"):
        write_synthetic_polyp_dataset(root, num_samples=151, size=16)
    monkeypatch.setattr(synthetic, "synthetic_polyp", original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_polyp"]  # no temporary folder left
    assert _pairs_and_sizes(write_synthetic_polyp_dataset(root, num_samples=8, size=32)) == (8, {(32, 32)})
    assert _pairs_and_sizes(write_synthetic_polyp_dataset(root, num_samples=12, size=16)) == (12, {(16, 16)})


# the synthetic module alone (a bare package shell instead of the package's torch-importing __init__), so the
# writer starts in a fraction of a second and is killed while it writes
_WRITER = (
    "import sys, types; repo = sys.argv[1]\n"
    "for name, path in (('monai_equivariant', 'monai_equivariant'), ('monai_equivariant.data', 'monai_equivariant/data')):\n"
    "    module = types.ModuleType(name); module.__path__ = [repo + '/' + path]; sys.modules[name] = module\n"
    "from monai_equivariant.data.synthetic import write_synthetic_polyp_dataset\n"
    "write_synthetic_polyp_dataset(sys.argv[2], num_samples=5000, size=16)\n"
)


def test_synthetic_set_killed_by_sigkill_while_regenerated_keeps_a_complete_set(tmp_path):
    root = write_synthetic_polyp_dataset(tmp_path / "synthetic_polyp", num_samples=8, size=32)
    started = time.time_ns()
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(REPO), str(root)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and writer.poll() is None:  # wait until it has written 40 new files
            if sum(p.stat().st_mtime_ns > started for p in tmp_path.rglob("*.png")) >= 40:
                break
            time.sleep(0.02)
        assert writer.poll() is None, "the writer finished before it could be killed"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert synthetic_set_problem(root, 8, 32) is None  # the old set is intact: the new one was never mixed in
    assert _pairs_and_sizes(write_synthetic_polyp_dataset(root, num_samples=8, size=32)) == (8, {(32, 32)})
    assert _pairs_and_sizes(write_synthetic_polyp_dataset(root, num_samples=20, size=16)) == (20, {(16, 16)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_polyp"]  # the killed run's folder removed


@pytest.mark.parametrize("damage", ["truncate-image", "delete-mask", "add-image"])
def test_synthetic_set_that_does_not_match_its_stamp_is_written_again(tmp_path, damage):
    root = write_synthetic_polyp_dataset(tmp_path / "set", num_samples=8, size=32)
    image = root / "images" / "synthetic_0003.png"
    if damage == "truncate-image":
        image.write_bytes(image.read_bytes()[:50])
    elif damage == "delete-mask":
        (root / "masks" / "synthetic_0003.png").unlink()
    else:
        shutil.copy(image, root / "images" / "extra.png")
        shutil.copy(root / "masks" / "synthetic_0003.png", root / "masks" / "extra.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_synthetic_polyp_dataset(root, num_samples=8, size=32)  # before: reused as its stamp matched
    assert _pairs_and_sizes(root) == (8, {(32, 32)}) and synthetic_set_problem(root, 8, 32) is None
    assert [str(w.message) for w in caught if "does not hold the files its stamp promises" in str(w.message)
            and "writing it again" in str(w.message)]


def test_synthetic_set_never_replaces_a_folder_that_is_not_one(tmp_path):
    (tmp_path / "mine" / "images").mkdir(parents=True)
    (tmp_path / "mine" / "images" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"'.*mine' exists and is not a synthetic polyp set .*holiday\.jpg.*refusing"):
        write_synthetic_polyp_dataset(tmp_path / "mine", num_samples=3, size=16)
    assert (tmp_path / "mine" / "images" / "holiday.jpg").read_bytes() == b"not ours"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"'.*file' is a file, not a folder"):
        write_synthetic_polyp_dataset(tmp_path / "file", num_samples=3, size=16)


def test_histopathology_and_nodule_synthetic_sets_are_made_in_memory(tmp_path, monkeypatch):
    """Their synthetic defaults write nothing to disk, so there is no set to tear: shown by running them in an
    empty working directory."""
    monkeypatch.chdir(tmp_path)
    assert len(histopathology_dataset(None, "training", synthetic_samples=4, synthetic_size=16)) == 4
    assert len(nodule_datalist(None, "training", synthetic_samples=4, patch_size=8)) == 4
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- item 8: evaluation and inference never touch training data


def test_polyp_evaluate_and_inference_with_another_image_size_leave_the_training_data_alone(trained_polyp, tmp_path):
    """Before: inference.json (and evaluate.json) called the training data's writer with their own --image_size,
    which deleted and rewrote ``data/synthetic_polyp`` and ``data/datalist.json``."""
    root = tmp_path / "bundle"
    shutil.copytree(trained_polyp, root)
    before = _snapshot(root / "data")
    trained_test = sorted(Path(i["image"]).name for i in json.loads((root / "data" / "datalist.json").read_text())["test"])
    evaluate = _workflow(root, ["train.json", "evaluate.json"], **dict(POLYP_TINY, image_size=64))
    try:
        evaluated = evaluate.parser.get_parsed_content("datalist")["test"]
    finally:
        evaluate.finalize()
    assert sorted(Path(i["image"]).name for i in evaluated) == trained_test  # the training run's held-out split
    assert all(Path(i["image"]).parent == root / "data" / "synthetic_polyp" / "images" for i in evaluated)
    _run(root, ["inference.json"], "infer", **dict(POLYP_TINY, image_size=64, synthetic_samples=60))
    masks = sorted((root / "predictions").glob("*_mask.png"))
    assert [m.name.replace("_mask", "") for m in masks] == trained_test
    assert {Image.open(m).size for m in masks} == {(32, 32)}  # the frames' own size, as the transforms invert
    assert _snapshot(root / "data") == before  # not one byte or time stamp of the training data changed


def test_read_polyp_datalist_writes_nothing_of_the_training_run(tmp_path):
    kvasir = write_synthetic_polyp_dataset(tmp_path / "kvasir", num_samples=7, size=16)  # a real-layout folder
    lists = tmp_path / "data"
    trained = polyp_datalist(None, lists, synthetic_samples=12, synthetic_size=16)
    before = _snapshot(lists)
    assert read_polyp_datalist(None, lists, synthetic_size=32) == trained  # the training run's split, read
    on_kvasir = read_polyp_datalist(kvasir, lists)  # another data set: split in memory, datalist.json untouched
    assert sum(len(v) for v in on_kvasir.values()) == 7 and _snapshot(lists) == before
    shutil.rmtree(lists / "synthetic_polyp")  # no training set to read: a held-out set of its own, beside it
    held_out = read_polyp_datalist(None, lists, synthetic_samples=6, synthetic_size=16)
    assert all("synthetic_polyp_held_out" in item["image"] for part in held_out.values() for item in part)
    assert json.loads((lists / "datalist.json").read_text())["test"] == trained["test"]


# ---------------------------------------------------------------- items 6 and 17: a resume keeps the best and its folder tidy


def test_polyp_resume_restores_the_evaluators_best_metric_and_removes_its_start_checkpoint(trained_polyp, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(trained_polyp, root)
    saved = torch.load(root / "models" / "checkpoint_epoch=2.pt", weights_only=True)
    best = saved["best_model_saver"]
    assert best["best_metric"] == best["_saved"][0][0] and best["best_metric_epoch"] in (1, 2)
    # a bad resumed model (no polyp predicted: Dice 0), so the resumed epoch cannot be a new best
    saved["model"] = {k: torch.full_like(v, -10.0) if k.endswith("bias") else torch.zeros_like(v)
                      for k, v in saved["model"].items()}
    torch.save(saved, root / "models" / "checkpoint_epoch=2.pt")
    workflow = _run(root, ["train.json"], **dict(POLYP_TINY, epochs=3, resume=True))
    state = workflow.parser.get_parsed_content("validate#evaluator").state
    assert state.metrics["val_mean_dice"] < best["best_metric"]
    # before: best_metric was epoch 3's worse Dice and best_metric_epoch 3 ("Got new best metric" in the log)
    assert (state.best_metric, state.best_metric_epoch) == (best["best_metric"], best["best_metric_epoch"])
    # before: checkpoint_epoch=2.pt (the start of the resume) stayed beside checkpoint_epoch=3.pt
    assert sorted(p.name for p in (root / "models").iterdir()) == ["checkpoint_epoch=3.pt", "model.pt"]
    resumed = torch.load(root / "models" / "checkpoint_epoch=3.pt", weights_only=True)["best_model_saver"]
    assert (resumed["best_metric"], resumed["best_metric_epoch"]) == (best["best_metric"], best["best_metric_epoch"])


class _Scripted(Metric):
    """A key metric that takes the next of the given values at each validation run."""

    def __init__(self, values: list[float]) -> None:
        self.values = iter(values)
        super().__init__()

    def reset(self) -> None:
        pass

    def update(self, output) -> None:
        pass

    def compute(self) -> float:
        return next(self.values)


def _evaluator(saver: AtomicCheckpointSaver, scores: list[float]) -> SupervisedEvaluator:
    batch = {"image": torch.zeros(1, 1), "label": torch.zeros(1, 1)}
    return SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[batch], network=torch.nn.Identity(),
                               key_val_metric={"score": _Scripted(scores)}, val_handlers=[saver])


def test_saver_state_restores_the_monai_evaluators_best_metric_which_a_better_score_still_beats(tmp_path):
    net = torch.nn.Linear(2, 1)

    def saver():
        return AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="model.pt")

    first = saver()
    evaluator = _evaluator(first, [0.8, 0.9])
    for epoch in (1, 2):
        evaluator.run(global_epoch=epoch)
    state = first.state_dict()
    assert state["_saved"][0][0] == 0.9 and (state["best_metric"], state["best_metric_epoch"]) == (0.9, 2)
    torch.save({"best_model_saver": state}, tmp_path / "checkpoint.pt")
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best_model_saver"]

    resumed = saver()
    resumed.load_state_dict(loaded)  # loaded before it is attached: applied when the evaluator attaches it
    evaluator = _evaluator(resumed, [0.7, 0.95])
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.9, 2)
    evaluator.run(global_epoch=3)  # worse: still the best of epoch 2
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.9, 2)
    evaluator.run(global_epoch=4)  # better: a new best, as MONAI's comparison decides
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (0.95, 4)

    older = saver()  # a checkpoint written before the best metric was saved: the key-metric list only
    evaluator = _evaluator(older, [0.5])
    older.load_state_dict({"_saved": state["_saved"]})
    assert older.best_score == 0.9 and evaluator.state.best_metric_epoch == -1


def test_interval_saver_of_a_resumed_run_removes_the_checkpoint_it_started_from(tmp_path):
    net = torch.nn.Linear(2, 1)
    save_dict = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}

    def trainer(max_epochs: int) -> Engine:
        engine = Engine(lambda e, b: None)
        AtomicCheckpointSaver(str(tmp_path), save_dict, file_prefix="", save_interval=1, n_saved=1,
                              epoch_level=True).attach(engine)  # as the bundles configure it
        return engine

    trainer(2).run([0], max_epochs=2)
    (tmp_path / "checkpoint_epoch=1.pt").write_bytes(b"left over from another run")  # not the start: kept
    engine = trainer(4)
    engine.load_state_dict({"epoch": 2, "epoch_length": 1, "max_epochs": 4})  # what the resume loader does
    engine.run([0], max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=4.pt"]


# ---------------------------------------------------------------- item 12: unreadable checkpoints are named


def _truncated_copy(source: Path, target: Path, keep: float = 0.5) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])


def _load(path: Path, net: torch.nn.Module, **load_dict) -> None:
    engine = Engine(lambda e, b: None)
    CheckedCheckpointLoader(str(path), {"model": net, **load_dict}).attach(engine)
    engine.run([0], max_epochs=1)


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_unreadable_checkpoints_are_named_with_what_to_do(tmp_path, keep):
    net = torch.nn.Linear(2, 1)
    torch.save({"model": net.state_dict()}, tmp_path / "good.pt")
    _truncated_copy(tmp_path / "good.pt", tmp_path / "checkpoint_epoch=3.pt", keep)
    with pytest.raises(ValueError, match=r"cannot read checkpoint '.*checkpoint_epoch=3\.pt' \(\d+ bytes; .*truncated "
                                         r"or corrupt.*No other epoch checkpoint .* loads: train again without --resume"):
        _load(tmp_path / "checkpoint_epoch=3.pt", net)
    shutil.copy(tmp_path / "good.pt", tmp_path / "checkpoint_epoch=2.pt")
    os.utime(tmp_path / "checkpoint_epoch=2.pt", ns=(1, 1))  # older than the bad one
    with pytest.raises(ValueError, match=r"checkpoint_epoch=3\.pt.*The previous checkpoint '.*checkpoint_epoch=2\.pt' "
                                         r"loads: move the bad file away"):
        _load(tmp_path / "checkpoint_epoch=3.pt", net)
    _truncated_copy(tmp_path / "good.pt", tmp_path / "model.pt", keep)
    with pytest.raises(ValueError, match=r"cannot read checkpoint '.*model\.pt'.*Train again"):
        _load(tmp_path / "model.pt", net)
    with pytest.raises(RuntimeError, match="size mismatch"):  # a readable file's other errors pass through as they are
        _load(tmp_path / "good.pt", torch.nn.Linear(3, 1))


def test_polyp_resume_and_inference_from_a_truncated_file_name_it(trained_polyp, tmp_path):
    """Before: ``RuntimeError: PytorchStreamReader failed reading zip archive`` (or ``OSError: [Errno 22]``),
    naming no file."""
    root = tmp_path / "bundle"
    shutil.copytree(trained_polyp, root)
    _truncated_copy(root / "models" / "checkpoint_epoch=2.pt", root / "models" / "checkpoint_epoch=2.pt")
    _raises_in_chain(r"cannot read checkpoint '.*checkpoint_epoch=2\.pt'.*train again without", _run, root,
                     ["train.json"], **dict(POLYP_TINY, epochs=3, resume=True))
    _truncated_copy(root / "models" / "model.pt", root / "models" / "model.pt")
    _raises_in_chain(r"cannot read checkpoint '.*model\.pt'.*Train again", _run, root, ["inference.json"], "infer",
                     **POLYP_TINY)


# ---------------------------------------------------------------- item 17: full disk, folders that are files, corrupt npz


@pytest.mark.parametrize("fails_in", ["the-flush-on-close", "a-write"])
def test_a_save_that_fails_on_a_full_disk_leaves_no_temporary_file(tmp_path, fails_in):
    """A file-size limit makes the writes fail as a full disk does (EFBIG instead of ENOSPC, same code path). When
    the last buffered bytes fail in the flush on close, ignite's atomic save left its ``tmp*`` file behind (two: the
    save on completion and MONAI's save on the exception); it removed it only when the write itself raised."""
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    before = (tmp_path / "model.pt").read_bytes()
    big = torch.nn.Linear(256, 256)
    serialized = io.BytesIO()
    torch.save(big.state_dict(), serialized)
    size = len(serialized.getvalue())  # 265 kB; the last ~1 kB sits in the file buffer until it is closed
    limit = size - 1000 if fails_in == "the-flush-on-close" else 64 * 1024
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": big}, save_final=True, final_filename="model.pt").attach(engine)
    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limits[1]))
    try:
        with pytest.raises((OSError, RuntimeError)):  # EFBIG, raised by the write, the flush or torch's writer
            engine.run([0], max_epochs=1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert (tmp_path / "model.pt").read_bytes() == before


def test_folders_given_as_files_are_refused_by_name(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("x")
    is_a_file = r"'.*a_file' is a file, not a folder"
    with pytest.raises(ValueError, match="dataset_dir " + is_a_file):
        polyp_datalist(file, tmp_path / "data")
    with pytest.raises(ValueError, match="datalist_dir " + is_a_file):
        polyp_datalist(None, file)
    with pytest.raises(ValueError, match="datalist_dir " + is_a_file):
        read_polyp_datalist(None, file)
    with pytest.raises(ValueError, match="dataset_dir " + is_a_file):
        histopathology_dataset(file, "training")
    with pytest.raises(ValueError, match="dataset_dir " + is_a_file):
        nodule_datalist(file, "training")
    with pytest.raises(ValueError, match="root_dir " + is_a_file):
        nodule_mnist3d_path(file, download=True)
    with pytest.raises(ValueError, match="root_dir " + is_a_file):
        luna16_patches(file)
    with pytest.raises(ValueError, match="ckpt_dir " + is_a_file):
        trained_model(file)
    with pytest.raises(ValueError, match="ckpt_dir " + is_a_file):
        resume_checkpoint(file, True)
    with pytest.raises(ValueError, match="checkpoint folder " + is_a_file):
        AtomicDiskSaver(str(file))


def test_polyp_bundle_with_a_file_as_datalist_dir_names_it(tmp_path):
    root = _copy_bundle(tmp_path / "bundle")
    (tmp_path / "a_file").write_text("x")
    _raises_in_chain(r"datalist_dir '.*a_file' is a file, not a folder", _run, root, ["train.json"],
                     **dict(POLYP_TINY, datalist_dir=str(tmp_path / "a_file")))
    assert not (root / "models").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte", "not-an-npz"])
def test_corrupt_nodule_mnist3d_npz_is_named(tmp_path, damage):
    arrays = {f"{split}_images": np.zeros((2, 28, 28, 28), np.uint8) for split in ("train", "val", "test")}
    arrays.update({f"{split}_labels": np.array([[0], [1]]) for split in ("train", "val", "test")})
    np.savez_compressed(tmp_path / "nodulemnist3d.npz", **arrays)
    data = (tmp_path / "nodulemnist3d.npz").read_bytes()
    corrupt = {"truncated": data[: len(data) // 2], "not-an-npz": b"<html>error page</html>",
               "flipped-byte": data[:200] + bytes([data[200] ^ 0xFF]) + data[201:]}[damage]
    (tmp_path / "nodulemnist3d.npz").write_bytes(corrupt)
    with pytest.raises(ValueError, match=r"cannot read NoduleMNIST3D file '.*nodulemnist3d\.npz'.*truncated or corrupt; "
                                         r"delete it and download it again"):
        nodule_mnist3d(tmp_path, "train")


def _luna16(root: Path) -> Path:
    """One 24³ scan with two candidates in the LUNA16 layout."""
    (root / "subset0").mkdir(parents=True)
    np.random.default_rng(0).normal(-800, 50, (24, 24, 24)).astype(np.int16).tofile(root / "subset0" / "1.2.raw")
    (root / "subset0" / "1.2.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nElementSpacing = 1 1 1\n"
        "DimSize = 24 24 24\nElementType = MET_SHORT\nElementDataFile = 1.2.raw\n")
    (root / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n1.2,8,8,8,1\n1.2,16,16,16,0\n")
    return root


def test_luna16_patch_cache_is_written_atomically_and_a_torn_file_is_recomputed(tmp_path, monkeypatch):
    root, cache = _luna16(tmp_path / "luna"), tmp_path / "cache"
    expected = np.stack([p["image"] for p in luna16_patches(root, patch_size=8)])
    luna16_patches(root, patch_size=8, cache_dir=cache)
    (cached,) = list(cache.iterdir())
    cached.write_bytes(cached.read_bytes()[:100])  # torn, as a run killed inside np.save left it before
    with pytest.warns(UserWarning, match=r"LUNA16 patch cache '.*\.npy' is unreadable.*computing its patches again"):
        again = np.stack([p["image"] for p in luna16_patches(root, patch_size=8, cache_dir=cache)])
    np.testing.assert_array_equal(again, expected)
    cached.unlink()

    def failing_save(file, array, *args, **kwargs):
        file.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        luna16_patches(root, patch_size=8, cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither a torn cache file nor a temporary one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing stale to warn about
        monkeypatch.undo()
        assert len(luna16_patches(root, patch_size=8, cache_dir=cache)) == 2
