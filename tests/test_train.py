"""The trainer: schedule, outputs, best-on-val selection, resume and determinism (in-process)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from vtrbench.data.batches import TrainBatches
from vtrbench.evaluate import evaluate_checkpoint
from vtrbench.train import learning_rate, train


def test_learning_rate_schedule():
    # 10 steps, 20% warm-up -> 2 warm-up steps: 0.5, 1.0 x peak; then cosine from peak to 0 over 8 steps
    lrs = [learning_rate(s, 10, 0.2, 1.0) for s in range(11)]
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[6] == pytest.approx(0.5)  # half-way through the decay
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(0, 10, 0.0, 2.0) == pytest.approx(2.0)


def _train(cfg, data, out, method="cret", seed=0):
    return train(cfg, method, seed, data, out)


def test_train_writes_logs_and_selects_on_val(smoke_config, smoke_data, tmp_path):
    model = _train(smoke_config, smoke_data, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    val = pd.read_csv(tmp_path / "run" / "val_log.csv")
    assert list(log.step) == [1, 2, 3, 4]
    assert {"gees_loss", "ccm_loss", "samples_per_s", "train_seconds"} <= set(log.columns)
    assert list(val.step) == [2, 4]
    ckpt = torch.load(model, weights_only=False)
    assert ckpt["val"] == val.val.max() and ckpt["step"] == int(val.step[val.val.idxmax()])


def test_same_seed_same_metrics_and_other_seed_differs(smoke_config, smoke_data, tmp_path):
    results = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / run
        model = _train(smoke_config, smoke_data, out, seed=seed)
        metrics = evaluate_checkpoint(smoke_config, "cret", seed, smoke_data, model, out)
        results.append(json.loads((out / "metrics.json").read_text()))
        assert metrics["seed"] == seed and results[-1]["design"] == "centres"  # the report's design class
    logs = [pd.read_csv(tmp_path / r / "train_log.csv").loss.tolist() for r in "abc"]
    assert logs[0] == logs[1] and logs[0] != logs[2]
    assert results[0]["t2v"] == results[1]["t2v"]


def test_resume_continues_from_last_checkpoint(smoke_config, smoke_data, tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    _train(smoke_config, smoke_data, full)

    real_call = TrainBatches.__call__

    def crash_at_step_2(self, step):  # after the step-2 checkpoint, as a killed job would
        if step == 2:
            raise KeyboardInterrupt
        return real_call(self, step)

    monkeypatch.setattr(TrainBatches, "__call__", crash_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        _train(smoke_config, smoke_data, part)
    assert not (part / "model.pt").exists()  # an interrupted run never looks complete
    monkeypatch.setattr(TrainBatches, "__call__", real_call)
    _train(smoke_config, smoke_data, part)
    assert pd.read_csv(part / "train_log.csv").step.tolist() == [1, 2, 3, 4]
    resumed = torch.load(part / "model.pt", weights_only=False)["model"]
    uninterrupted = torch.load(full / "model.pt", weights_only=False)["model"]
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_checkpoint_of_another_method_is_refused(smoke_config, smoke_data, tmp_path):
    _train(smoke_config, smoke_data, tmp_path / "run", method="dual_mean")
    with pytest.raises(RuntimeError, match=r"written for a different method.*'dual_mean'"):
        evaluate_checkpoint(smoke_config, "cret", 0, smoke_data, tmp_path / "run" / "model.pt", tmp_path)


def test_patience_stops_a_run_whose_val_stops_improving_and_a_resume_stays_stopped(
    smoke_config, smoke_data, tmp_path, monkeypatch
):
    """val per validation 1, 2, 2, 1, ...: with patience 2 the two after the best at step 2 end the run at step 4."""
    from vtrbench import train as trainer

    scores = iter([1.0, 2.0, 2.0, 1.0] + [0.5] * 20)
    monkeypatch.setattr(
        trainer, "_validate", lambda *args: {"val": next(scores), "metrics": {"t2v": {"R@1": 0.0}, "pairwise": {}}}
    )
    smoke_config["train"].update(steps=10, eval_every=1, patience=2)
    out = tmp_path / "run"
    model = _train(smoke_config, smoke_data, out, method="dual_mean")
    assert pd.read_csv(out / "train_log.csv").step.tolist() == [1, 2, 3, 4]
    assert pd.read_csv(out / "val_log.csv").val.tolist() == [1.0, 2.0, 2.0, 1.0]
    assert torch.load(model, weights_only=False)["step"] == 2  # the best on val is still what is selected
    last = torch.load(out / "checkpoint" / "last.pt", weights_only=False)
    assert last["stopped"] and last["step"] == 4
    (model).unlink()  # killed after last.pt, before model.pt: the rerun resumes from last.pt
    _train(smoke_config, smoke_data, out, method="dual_mean")
    assert pd.read_csv(out / "train_log.csv").step.tolist() == [1, 2, 3, 4]  # no step after the stop
    assert torch.load(model, weights_only=False)["step"] == 2


def test_without_patience_the_same_val_sequence_trains_every_step(smoke_config, smoke_data, tmp_path, monkeypatch):
    from vtrbench import train as trainer

    scores = iter([1.0, 2.0, 2.0, 1.0] + [0.5] * 20)
    monkeypatch.setattr(
        trainer, "_validate", lambda *args: {"val": next(scores), "metrics": {"t2v": {"R@1": 0.0}, "pairwise": {}}}
    )
    smoke_config["train"].update(steps=6, eval_every=1, patience=None)
    _train(smoke_config, smoke_data, tmp_path / "run", method="dual_mean")
    assert pd.read_csv(tmp_path / "run" / "train_log.csv").step.tolist() == [1, 2, 3, 4, 5, 6]


def test_batches_built_by_worker_processes_equal_those_built_in_process(smoke_config, smoke_data):
    import functools

    from vtrbench import distributed, runs
    from vtrbench.data.records import load_split

    setup = runs.build(smoke_config, "cret", smoke_data)
    split = load_split(smoke_data, "train")
    batches = TrainBatches(split, runs.split_tokens(setup, split), 8, 4, 0, False)
    make = functools.partial(distributed.rank_batch, batches, 1, 0, len(batches.units[0]))
    in_process = list(distributed.step_batches(make, 1, 6, 0, False))
    by_workers = list(distributed.step_batches(make, 1, 6, 2, False))
    assert len(in_process) == len(by_workers) == 5
    for ours, theirs in zip(in_process, by_workers, strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    assert not torch.equal(in_process[0]["frames"], in_process[1]["frames"])  # the steps' batches differ


def test_training_with_workers_gives_the_losses_and_weights_of_workers_0(smoke_config, smoke_data, tmp_path):
    for workers in (0, 2):
        smoke_config["train"]["workers"] = workers
        _train(smoke_config, smoke_data, tmp_path / f"w{workers}", method="dual_mean")
    logs = [pd.read_csv(tmp_path / f"w{w}" / "train_log.csv").loss.tolist() for w in (0, 2)]
    assert logs[0] == logs[1]
    weights = [torch.load(tmp_path / f"w{w}" / "model.pt", weights_only=False)["model"] for w in (0, 2)]
    for key, value in weights[0].items():
        assert torch.equal(weights[1][key], value), key
