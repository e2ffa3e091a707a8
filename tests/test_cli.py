"""The CLI turns user mistakes into one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from vtrbench.cli import main

SMOKE = str(REPO / "config" / "smoke.yaml")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _train(method: str, data, out) -> int:
    return main(["train", "--config", SMOKE, "--method", method, "--seed", "0", "--data", str(data), "--out", str(out)])


def test_unknown_method(capsys, smoke_data, tmp_path):
    code = _train("cret2", smoke_data, tmp_path)
    assert code == 2
    assert "unknown method 'cret2'; the config defines: dual_mean, cret" in _one_error_line(capsys)


def test_malformed_config_value(capsys, tmp_path):
    code = main(["prepare", "--config", SMOKE, "--set", "train.batch_size=-1", "--out", str(tmp_path)])
    assert code == 2
    assert "config error at train.batch_size" in _one_error_line(capsys)


def test_set_reads_exponent_numbers_as_numbers():
    """YAML 1.1 reads 3e-3 as a string; --set train.lr=3e-3 must still be the number 0.003."""
    from vtrbench.cli import _parse_set

    parsed = _parse_set(["train.lr=3e-3", "train.steps=20", "run_name=1e3x", "train.warmup=.5E-1"])
    assert parsed == {"train": {"lr": 0.003, "steps": 20, "warmup": 0.05}, "run_name": "1e3x"}


def test_empty_split(capsys, smoke_data, tmp_path):
    from datasets import load_from_disk

    from vtrbench.data import records

    data = tmp_path / "data"
    for split in records.SPLITS:
        videos = load_from_disk(str(smoke_data / split / "videos"))
        captions = load_from_disk(str(smoke_data / split / "captions"))
        if split == "val":
            videos = {name: [] for name in videos.features}
            captions = {"video_id": [], "text": []}
        records.write_split(data, split, videos, captions, load_from_disk(str(smoke_data / split / "videos")).features)
    (data / "vocab.txt").write_text((smoke_data / "vocab.txt").read_text())
    capsys.readouterr()
    code = _train("cret", data, tmp_path / "run")
    assert code == 2
    line = _one_error_line(capsys)
    assert "split 'val'" in line and "has no videos" in line
