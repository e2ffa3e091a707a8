"""Reliability: a SIGKILLed training process resumes to the same numbers, seeds are deterministic on CPU, and a
non-finite loss or score never reaches the result files silently (docs/failure-modes.md).

The interruption and determinism tests run real ``python -m vtrbench.cli`` processes, each in a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, copy_workflow
from vtrbench import config, plan
from vtrbench.cli import main

SMOKE = str(REPO / "config" / "smoke.yaml")
STEPS, EVAL_EVERY = 40, 10  # four checkpoints; the kill lands after the first one
LONGER = ["--set", f"train.steps={STEPS}", "--set", f"train.eval_every={EVAL_EVERY}"]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}

# Train then evaluate in one fresh interpreter (one start-up instead of two). The optional throttle sleeps before
# each step from `slow_from` on, which changes only the timing (the batch at step s is a pure function of (seed, s))
# and gives the test a wide window to SIGKILL the process between two checkpoints.
DRIVER = """
import sys, time
slow_from = int(sys.argv[1])
if slow_from >= 0:
    from vtrbench.data import batches
    call = batches.TrainBatches.__call__
    def throttled(self, step):
        if step >= slow_from:
            time.sleep(0.1)
        return call(self, step)
    batches.TrainBatches.__call__ = throttled
from vtrbench.cli import main
train_args = sys.argv[2:]
code = main(train_args)
if code == 0:
    out = train_args[train_args.index("--out") + 1]
    code = main(["evaluate", *train_args[1:], "--model", out + "/model.pt"])
sys.exit(code)
"""


def _train_args(data: Path, out: Path, seed: int = 0) -> list[str]:
    run = ["--method", "cret", "--seed", str(seed), "--data", str(data), "--out", str(out)]
    return ["train", "--config", SMOKE, *LONGER, *run]


def _run(data: Path, out: Path, seed: int = 0, slow_from: int = -1) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", DRIVER, str(slow_from), *_train_args(data, out, seed)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _checkpoint_step(path: Path) -> int | None:
    """Step of ``last.pt`` or None; writes are atomic (tmp + rename), so a file that exists is whole."""
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


@pytest.fixture(scope="module")
def reference_run(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted seed-0 run (train + evaluate) of the longer smoke config, in a fresh process."""
    out = tmp_path_factory.mktemp("reference") / "run"
    _run(smoke_data, out)
    return out


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_equals_uninterrupted_run(smoke_data, reference_run, tmp_path):
    out = tmp_path / "run"
    last = out / "checkpoint" / "last.pt"
    cmd = [sys.executable, "-c", DRIVER, str(EVAL_EVERY), *_train_args(smoke_data, out)]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    try:
        while (_checkpoint_step(last) or 0) < EVAL_EVERY:
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the real thing: no handler runs, files are left as they are
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpoint_step(last)
    assert killed_at is not None and EVAL_EVERY <= killed_at < STEPS
    assert not (out / "model.pt").exists(), "a killed run must not look complete"
    assert not (out / "metrics.json").exists()

    resumed = _run(smoke_data, out)  # the same command again, as the workflow's rerun would issue
    assert re.search(rf"resuming cret seed 0 from .*last\.pt at step {killed_at}\b", resumed.stdout + resumed.stderr)

    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, STEPS + 1))  # no step lost or repeated
    reference_log = pd.read_csv(reference_run / "train_log.csv")
    assert log.loss.tolist() == reference_log.loss.tolist()
    ours = torch.load(out / "model.pt", weights_only=False)
    theirs = torch.load(reference_run / "model.pt", weights_only=False)
    assert ours["step"] == theirs["step"]
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key
    assert (out / "metrics.json").read_text() == (reference_run / "metrics.json").read_text()


@pytest.mark.slow
def test_same_seed_same_metrics_json_other_seed_differs(smoke_data, reference_run, tmp_path):
    """Fresh processes on CPU: identical metrics.json (byte for byte) for the same seed; another seed differs."""
    _run(smoke_data, tmp_path / "again", seed=0)
    _run(smoke_data, tmp_path / "seed1", seed=1)
    reference = (reference_run / "metrics.json").read_text()
    assert (tmp_path / "again" / "metrics.json").read_text() == reference
    other = json.loads((tmp_path / "seed1" / "metrics.json").read_text())
    assert other["seed"] == 1
    losses = [pd.read_csv(d / "train_log.csv").loss.tolist() for d in (reference_run, tmp_path / "seed1")]
    assert losses[0] != losses[1]


# --- the workflow: Snakemake itself is SIGKILLed while a training job runs, then the documented recovery ----------


@pytest.mark.slow
def test_killed_workflow_resumes_from_checkpoint_on_rerun(tmp_path):
    copy_workflow(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["methods"] = {"cret": cfg["methods"]["cret"]}
    cfg["train"].update(steps=STEPS, eval_every=EVAL_EVERY)
    cfg["run_name"] = "long"
    (tmp_path / "config" / "long.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "results" / "long" / "runs" / "cret" / plan.run_unit(config.validate(cfg), "cret").fp / "seed0"
    target = str(run_dir.relative_to(tmp_path) / "model.pt")
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1"]
    configfile = ["--configfile", "config/long.yaml"]  # last: it takes several values
    throttle = tmp_path / "throttle"  # sitecustomize: slows steps >= EVAL_EVERY of the training job only
    throttle.mkdir()
    (throttle / "sitecustomize.py").write_text(
        "import sys\n"
        "if 'vtrbench.cli' in ' '.join(sys.orig_argv) and 'train' in sys.orig_argv:\n"
        "    import time\n"
        "    from vtrbench.data import batches\n"
        "    call = batches.TrainBatches.__call__\n"
        f"    slow = lambda self, s: (s >= {EVAL_EVERY} and time.sleep(0.1), call(self, s))[1]\n"
        "    batches.TrainBatches.__call__ = slow\n"
    )
    env = {**ENV, "PYTHONPATH": f"{throttle}{os.pathsep}{REPO}"}
    first_log = tmp_path / "first_run.log"
    with first_log.open("w") as sink:
        proc = subprocess.Popen(
            [*snakemake, target, *configfile],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 400
    try:
        while (_checkpoint_step(run_dir / "checkpoint" / "last.pt") or 0) < EVAL_EVERY:
            assert proc.poll() is None, f"the workflow ended before it could be killed: {first_log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 400 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):  # Snakemake and its training job, as a lost terminal would
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = _checkpoint_step(run_dir / "checkpoint" / "last.pt")
    assert not (run_dir / "model.pt").exists()

    # Snakemake's lock survives a SIGKILL: the documented recovery is --unlock, then the same command again (the
    # default profile's rerun-incomplete deletes the incomplete declared outputs, not checkpoint/: training resumes)
    locked = subprocess.run([*snakemake, target, *configfile], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert locked.returncode != 0  # never takes the half-written train_log.csv / val_log.csv as done
    assert "Incomplete files" in locked.stderr or "--unlock" in locked.stderr
    subprocess.run([*snakemake, "--unlock", *configfile], cwd=tmp_path, env=ENV, capture_output=True, check=True)
    rerun = subprocess.run([*snakemake, target, *configfile], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "results/long/logs/train" / f"cret-{run_dir.parent.name}-seed0.log").read_text()
    assert f"at step {killed_at}" in log and "resuming cret seed 0" in log
    assert pd.read_csv(run_dir / "train_log.csv").step.tolist() == list(range(1, STEPS + 1))


# --- numerical faults ----------------------------------------------------------------------------------------------


def _nan_loss_at(monkeypatch: pytest.MonkeyPatch, bad_step: int) -> None:
    """Make CRET's loss NaN at the ``bad_step``-th call (0-based: the step counter in the trainer's loop)."""
    from cret.model import CRET

    real, calls = CRET.loss, {"n": 0}

    def loss(self, batch):
        terms = real(self, batch)
        calls["n"] += 1
        if calls["n"] - 1 == bad_step:
            return {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(CRET, "loss", loss)


def _cli_train(smoke_data: Path, out: Path, *sets: str) -> list[str]:
    args = ["train", "--config", SMOKE, "--set", "train.steps=8", "--set", "train.eval_every=2"]
    run = ["--method", "cret", "--seed", "0", "--data", str(smoke_data), "--out", str(out)]
    return [*args, *(x for s in sets for x in ("--set", s)), *run]


def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(smoke_data, tmp_path, monkeypatch, capsys):
    _nan_loss_at(monkeypatch, 5)
    out = tmp_path / "run"
    assert main(_cli_train(smoke_data, out)) == 2
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]  # after the progress bar: the error is the last line, with no traceback
    assert "Traceback" not in stderr
    last = out / "checkpoint" / "last.pt"
    assert err.startswith("vtrbench train: error: non-finite loss at step 5 ")
    assert f"last good checkpoint: {last} (step 4)" in err and "train.on_nonfinite: skip" in err
    assert not (out / "model.pt").exists()  # nothing downstream can evaluate it


def test_nan_loss_skipped_when_configured(smoke_data, tmp_path, monkeypatch, capsys):
    _nan_loss_at(monkeypatch, 5)
    out = tmp_path / "run"
    assert main(_cli_train(smoke_data, out, "train.on_nonfinite=skip")) == 0
    assert "step 5: non-finite loss skipped" in capsys.readouterr().out
    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, 9))
    assert log.loss.isna().tolist() == [s == 6 for s in range(1, 9)]  # row of step index 5 (logged as step 6)
    model = torch.load(out / "model.pt", weights_only=False)["model"]
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


def test_evaluation_refuses_a_nan_model(smoke_config, smoke_data, tmp_path, capsys):
    from vtrbench.methods import check_scores

    with pytest.raises(FloatingPointError, match="non-finite scores"):
        check_scores(torch.tensor([[0.0, float("nan")]]), 1, 2, "m")
    out = tmp_path / "run"
    run = ["--config", SMOKE, "--method", "dual_mean", "--seed", "0", "--data", str(smoke_data), "--out", str(out)]
    assert main(["train", *run]) == 0
    ckpt = torch.load(out / "model.pt", weights_only=False)
    ckpt["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, out / "model.pt")
    capsys.readouterr()
    code = main(["evaluate", *run, "--model", str(out / "model.pt")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "method 'dual_mean' produced non-finite scores (NaN/Inf)" in err
    assert not (out / "metrics.json").exists()
