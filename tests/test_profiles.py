"""Cluster profiles: `snakemake -n` with the SLURM and Kubernetes workflow profiles (dry runs, no cluster needed),
and the train rule's launcher: python for one process, torchrun --nproc_per_node N for a job holding N GPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_workflow

PROFILES = REPO / "workflow" / "profiles"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow (the package itself is installed), so dry runs leave no .snakemake/ in the repo."""
    return copy_workflow(tmp_path)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake ARGS --configfile config/smoke.yaml`` in ``workdir`` (its stdout and stderr captured)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    cmd = [SNAKEMAKE, *args, "--configfile", "config/smoke.yaml"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)


def dry_run(workdir: Path, *args: str) -> str:
    out = snakemake(workdir, "-n", "-p", *args)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "This was a dry-run" in text
    return text


def train_commands(text: str) -> list[str]:
    return re.findall(r"^(.*) train --config ", text, flags=re.M)


def test_slurm_profile_dry_run(workdir: Path) -> None:
    text = dry_run(workdir, "--workflow-profile", "workflow/profiles/slurm")
    assert "Using workflow specific profile workflow/profiles/slurm" in text
    commands = train_commands(text)
    assert commands and all(c.endswith("python -m vtrbench.cli") for c in commands)  # gpu: 1 -> one process
    # the profile's GPU count reaches the launcher: 2 GPUs per job -> torchrun with 2 processes
    profile = workdir / "workflow" / "profiles" / "slurm" / "config.v8+.yaml"
    settings = yaml.safe_load(profile.read_text())
    settings["set-resources"]["train"]["gpu"] = 2
    profile.write_text(yaml.safe_dump(settings))
    commands = train_commands(dry_run(workdir, "--workflow-profile", "workflow/profiles/slurm", "--forceall"))
    assert commands and all("torchrun --standalone --nproc_per_node 2 -m vtrbench.cli" in c for c in commands)


def test_kubernetes_profile_dry_run(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The profile's S3 bucket needs credentials even for a dry run; the fs storage plugin stands in for it here.
    remote = tmp_path_factory.mktemp("remote")
    text = dry_run(
        workdir,
        "--workflow-profile",
        "workflow/profiles/kubernetes",
        "--default-storage-provider",
        "fs",
        "--default-storage-prefix",
        str(remote),
    )
    assert "Using workflow specific profile workflow/profiles/kubernetes" in text
    assert train_commands(text)


def _profile(name: str) -> dict:
    path = PROFILES / name / ("config.yaml" if name == "default" else "config.v8+.yaml")
    return yaml.safe_load(path.read_text())


def test_profiles_set_resources_and_threads_of_rules_the_workflow_defines(workdir: Path) -> None:
    """A misspelt rule name in set-resources is silently ignored by Snakemake: the job would run without its GPU."""
    listed = snakemake(workdir, "--list-rules")
    assert listed.returncode == 0, listed.stderr[-3000:]
    rules = set(listed.stdout.split())
    assert {"train", "evaluate", "prepare"} <= rules
    for name in ("default", "slurm", "kubernetes"):
        settings = _profile(name)
        named = set(settings.get("set-resources", {})) | set(settings.get("set-threads", {}))
        assert named <= rules, f"{name} profile names rules the workflow does not define: {named - rules}"


class _Resources(dict):
    """A job's resources as the SLURM plugin reads them (``.get`` and attribute access)."""

    __getattr__ = dict.get


def test_slurm_profile_gpus_become_sbatch_gpus_through_the_plugin() -> None:
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    def gres(resources: dict) -> str:
        return set_gres_string(type("Job", (), {"resources": _Resources(resources)})()).strip()

    slurm = _profile("slurm")
    jobs = {
        rule: {**slurm["default-resources"], **slurm["set-resources"].get(rule, {})} for rule in slurm["set-resources"]
    }
    assert gres(jobs["train"]) == "--gpus=1" and gres(jobs["evaluate"]) == "--gpus=1"
    assert gres(jobs["prepare"]) == ""  # CPU-only: no GPU requested
    assert gres({**jobs["train"], "gpu": 4, "gpu_model": "a100"}) == "--gpus=a100:4"  # as the profile's comment says


def test_local_launcher_and_gpu_resource(workdir: Path) -> None:
    text = dry_run(workdir)  # the CPU default path: one process, no gpu resource
    assert all(c.endswith("python -m vtrbench.cli") for c in train_commands(text))
    cfg = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    cfg["train"].update(device="cuda", gpus=2)
    (workdir / "config" / "smoke.yaml").write_text(yaml.safe_dump(cfg))
    text = dry_run(workdir, "--forceall")
    commands = train_commands(text)
    assert commands and all("torchrun --standalone --nproc_per_node 2" in c for c in commands)


def test_disabled_latency_and_throughput_schedule_no_jobs(workdir: Path) -> None:
    """`latency: {enabled: false}` (config/ablation.yaml) must not be pulled back in by the report's inputs."""
    cfg = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    cfg["latency"] = {**cfg.get("latency", {}), "enabled": False}
    cfg["throughput"] = {**cfg.get("throughput", {}), "enabled": False}
    (workdir / "config" / "smoke.yaml").write_text(yaml.safe_dump(cfg))
    stats = dry_run(workdir).split("Job stats:", 1)[1].split("total", 1)[0]  # "rule  count" rows
    rules = set(re.findall(r"^(\w+)\s+\d+\s*$", stats, flags=re.M))
    assert {"train", "evaluate", "report"} <= rules
    assert not rules & {"latency", "tradeoff", "throughput", "throughput_losses", "throughput_aggregate"}, rules
