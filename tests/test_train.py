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
        assert metrics["seed"] == seed
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
