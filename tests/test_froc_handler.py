"""LUNA16FROCHandler: MONAI's IgniteMetricHandler over the Cumulative LUNA16FROCMetric."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.distributed as dist
from ignite.engine import Engine
from monai.handlers import MetricsSaver

from monai_equivariant.handlers import LUNA16FROCHandler
from monai_equivariant.metrics import LUNA16FROCMetric, luna16_froc

PROBS = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.4, 0.1]
LABELS = [1, 1, 1, 0, 0, 0, 0, 0]
SCANS = ["a", "a", "b", "a", "b", "b", "c", "c"]


def _items(indices, with_scan: bool = True) -> tuple[list[dict], list[dict]]:
    """A decollated evaluator batch and output: one-hot labels, softmax-like (2,) predictions."""
    batch, output = [], []
    for i in indices:
        item = {"image": torch.zeros(1, 2, 2, 2), "label": torch.eye(2)[LABELS[i]]}
        if with_scan:
            item["seriesuid"] = SCANS[i]
        batch.append(item)
        output.append({"pred": torch.tensor([1 - PROBS[i], PROBS[i]]), "label": item["label"]})
    return batch, output


def _step(engine: Engine, batch_and_output):
    engine.state.batch, output = batch_and_output  # as a SupervisedEvaluator leaves them: decollated lists
    return output


def _run(batches, *handlers, max_epochs: int = 1) -> Engine:
    engine = Engine(_step)
    for handler in handlers:
        handler.attach(engine)
    engine.run(batches, max_epochs=max_epochs)
    return engine


def test_froc_handler_matches_luna16_froc_and_fills_metric_details(tmp_path):
    batches = [_items(range(0, 3)), _items(range(3, 8))]
    saver = MetricsSaver(str(tmp_path), metrics=["froc", "froc_1"], metric_details=["froc"])
    handler = LUNA16FROCHandler()
    engine = _run(batches, handler, saver, max_epochs=2)  # each epoch starts from empty buffers
    expected = luna16_froc(PROBS, LABELS, num_scans=3)
    assert engine.state.metrics["froc"] == pytest.approx(expected["score"])
    for rate, sensitivity in zip(expected["fp_rates"], expected["sensitivities"]):
        assert engine.state.metrics[f"froc_{rate:g}"] == pytest.approx(sensitivity)
    details = engine.state.metric_details["froc"]
    assert details.shape == (8, 2) and details[:, 1].tolist() == [float(v) for v in LABELS]
    assert torch.allclose(details[:, 0], torch.tensor(PROBS))
    with open(tmp_path / "froc_raw.csv") as f:  # MONAI's MetricsSaver writes the per-candidate details
        assert len(list(csv.DictReader(f))) == 8
    assert "froc," in (tmp_path / "metrics.csv").read_text()


def test_froc_handler_writes_nothing_without_scans():
    engine = _run([_items(range(8), with_scan=False)], LUNA16FROCHandler())
    assert not any(k.startswith("froc") for k in engine.state.metrics)
    batch, output = _items(range(4))
    del batch[1]["seriesuid"]
    with pytest.raises(ValueError, match="seriesuid"):
        _run([(batch, output)], LUNA16FROCHandler())


def test_froc_metric_counts_distinct_scans_and_checks_input():
    metric = LUNA16FROCMetric()
    metric(torch.tensor(PROBS), torch.tensor(LABELS), scans=SCANS)
    assert metric.aggregate()["score"] == pytest.approx(luna16_froc(PROBS, LABELS, num_scans=3)["score"])
    with pytest.raises(ValueError, match="scan ids"):
        LUNA16FROCMetric()(torch.tensor(PROBS), torch.tensor(LABELS), scans=SCANS[:3])
    with pytest.raises(RuntimeError, match="no candidates"):
        LUNA16FROCMetric().aggregate()


def _gather_worker(rank: int, store: str, world_size: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        half = range(0, 4) if rank == 0 else range(4, 8)
        engine = _run([_items(half)], LUNA16FROCHandler())
        queue.put((rank, engine.state.metrics["froc"], tuple(engine.state.metric_details["froc"].shape)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~10 s idle, about a minute on a loaded machine
def test_froc_handler_gathers_candidates_across_ranks(tmp_path):
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.spawn(_gather_worker, args=(str(tmp_path / "store"), 2, queue), nprocs=2, join=True)
    results = sorted(queue.get() for _ in range(2))
    expected = luna16_froc(PROBS, LABELS, num_scans=3)["score"]
    assert [r[0] for r in results] == [0, 1]
    assert all(r[1] == pytest.approx(expected) and r[2] == (8, 2) for r in results)  # every rank saw all 8
