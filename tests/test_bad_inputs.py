"""Each bad input of docs/failure-modes.md through the public entry points: exit status 2, one actionable line on
stderr, no traceback (or, below the CLI, a clear exception)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from vtrbench.cli import main

SMOKE = str(REPO / "config" / "smoke.yaml")


def _error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, expect status 2 and return its error: the last stderr line (after any progress bar)."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"vtrbench {args[0]}: error: ")
    return line


def _train(data: Path, out: Path, *sets: str, method: str = "cret") -> list[str]:
    overrides = [x for s in sets for x in ("--set", s)]
    run = ["--method", method, "--seed", "0", "--data", str(data), "--out", str(out)]
    return ["train", "--config", SMOKE, *overrides, *run]


def _evaluate(data: Path, model: Path, *sets: str, method: str = "cret") -> list[str]:
    overrides = [x for s in sets for x in ("--set", s)]
    run = ["--method", method, "--seed", "0", "--data", str(data), "--out", str(model.parent / "eval")]
    return ["evaluate", "--config", SMOKE, *overrides, *run, "--model", str(model)]


@pytest.fixture(scope="module")
def trained(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.pt of a smoke cret run (seed 0)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(_train(smoke_data, out)) == 0
    return out / "model.pt"


# --- malformed config values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batch_size=-1", "config error at train.batch_size: -1 is less than the minimum of 2"),
        ("train.frames=0", "config error at train.frames: 0 is less than the minimum of 1"),
        ("eval.frames=0", "config error at eval.frames: 0 is less than the minimum of 1"),
        ("train.frames=99", "config error at train.frames: cannot sample 99 frames from the dataset.frames=4"),
        ("train.steps=0", "config error at train.steps: 0 is less than the minimum of 1"),
        ("train.on_nonfinite=ignore", "config error at train.on_nonfinite: 'ignore' is not one of ['stop', 'skip']"),
        (
            "methods.cret.global_loss=focal",
            "config error at methods.cret: cret: global_loss must be 'gees' or 'nce', got 'focal'",
        ),
        ("methods.cret.dimm=8", "config error at methods.cret: unknown option(s) dimm; allowed:"),
    ],
)
def test_malformed_config_value(capsys, smoke_data, tmp_path, override, expected):
    assert expected in _error(capsys, _train(smoke_data, tmp_path / "run", override))
    assert not (tmp_path / "run").exists()  # refused before anything is written


# --- data -----------------------------------------------------------------------------------------------------------


def _copy_dataset(smoke_data: Path, dest: Path, edit: dict[str, object]) -> Path:
    """A copy of the prepared smoke dataset; ``edit[split]`` is "no videos" or a caption text for caption #0."""
    from datasets import load_from_disk

    from vtrbench.data import records

    for split in records.SPLITS:
        videos = load_from_disk(str(smoke_data / split / "videos"))
        captions = load_from_disk(str(smoke_data / split / "captions")).to_dict()
        features = videos.features
        if edit.get(split) == "no videos":
            videos, captions = {name: [] for name in features}, {"video_id": [], "text": []}
        elif split in edit:
            captions["text"][0] = edit[split]
        records.write_split(dest, split, videos, captions, features)
    (dest / "vocab.txt").write_text((smoke_data / "vocab.txt").read_text())
    return dest


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_with_no_videos(capsys, smoke_data, trained, tmp_path, split):
    data = _copy_dataset(smoke_data, tmp_path / "data", {split: "no videos"})
    args = _train(data, tmp_path / "run") if split == "train" else _evaluate(data, trained)
    line = _error(capsys, args)
    assert f"split '{split}' in {data} has no videos: check the dataset config and problems.csv" in line


@pytest.mark.parametrize("caption", ["", "   ", "[PAD] [PAD]", "[CLS] [SEP]"])
def test_caption_empty_or_only_padding(capsys, smoke_data, tmp_path, caption):
    data = _copy_dataset(smoke_data, tmp_path / "data", {"train": caption})
    line = _error(capsys, _train(data, tmp_path / "run"))
    assert f"1 caption(s) are empty or only padding/special tokens, e.g. caption #0 {caption!r}" in line
    assert "fix the annotation file or drop these captions" in line


def test_caption_of_unknown_words_is_kept(smoke_data):
    """Out-of-vocabulary words are content ([UNK]), not padding: such a caption is a valid (hard) query."""
    from vtrbench.data.batches import tokenize
    from vtrbench.pretrained import load_tokenizer

    class Cfg:
        pretrained = None

    tokens = tokenize(load_tokenizer(Cfg(), smoke_data / "vocab.txt"), ["zyzzyva quux", "a red circle"], 16)
    assert tokens.attention_mask.sum(1).tolist()[0] == 4  # [CLS] [UNK] [UNK] [SEP]


def test_missing_prepared_dataset(capsys, tmp_path):
    line = _error(capsys, _train(tmp_path / "nowhere", tmp_path / "run"))
    assert f"vocabulary file {tmp_path / 'nowhere' / 'vocab.txt'} not found" in line and "prepared dataset" in line


# --- checkpoints ----------------------------------------------------------------------------------------------------


def test_checkpoint_of_another_method(capsys, smoke_data, trained):
    line = _error(capsys, _evaluate(smoke_data, trained, method="dual_mean"))
    assert f"checkpoint {trained} was written for a different method, method_config (method 'cret')" in line
    assert "use another output folder" in line


def test_checkpoint_of_another_config(capsys, smoke_data, trained):
    line = _error(capsys, _evaluate(smoke_data, trained, "train.steps=5"))
    assert f"checkpoint {trained} was written for a different train (method 'cret')" in line


def test_resume_with_a_changed_config_is_refused(capsys, smoke_data, trained):
    """Rerunning training into a run folder whose last.pt came from another config: refuse, never mix."""
    line = _error(capsys, _train(smoke_data, trained.parent, "train.lr=0.01"))
    assert f"checkpoint {trained.parent / 'checkpoint' / 'last.pt'} was written for a different train" in line


def test_truncated_checkpoint(capsys, smoke_data, trained, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "last.pt").write_bytes(trained.read_bytes()[:1000])  # a copy cut short
    line = _error(capsys, _train(smoke_data, run))
    assert f"cannot read checkpoint {run / 'checkpoint' / 'last.pt'}:" in line and "delete it to start over" in line


def test_file_that_is_not_a_checkpoint(capsys, smoke_data, tmp_path):
    model = tmp_path / "model.pt"
    torch.save({"weights": 1}, model)
    line = _error(capsys, _evaluate(smoke_data, model))
    assert f"{model} is not a vtrbench checkpoint" in line


# --- a method whose query and gallery vectors differ in width -------------------------------------------------------


def test_gallery_and_query_of_mismatched_dimensions():
    from vtrbench.methods import EmbeddingMethod

    class Mismatched(EmbeddingMethod):
        def query_vectors(self, queries):
            return queries["text"]

        def gallery_vectors(self, gallery):
            return gallery["video"]

    method = Mismatched(None, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Mismatched: query vectors \(3, 16\) and gallery vectors \(5, 12\) must"):
        method.score({"text": torch.zeros(3, 16)}, {"video": torch.zeros(5, 12)})
    assert method.score({"text": torch.zeros(3, 8)}, {"video": torch.zeros(5, 8)}).shape == (3, 5)


def test_scores_of_the_wrong_shape():
    from vtrbench.methods import check_scores

    with pytest.raises(ValueError, match=r"method 'm': scores must be \[n_text, n_video\] = \(3, 5\), got \(5, 3\)"):
        check_scores(torch.zeros(5, 3), 3, 5, "m")


# --- result files handed to the report ------------------------------------------------------------------------------

GOOD = {
    "method": "m",
    "seed": 0,
    "t2v": {"R@1": 1.0, "R@5": 2.0, "R@10": 3.0, "MdR": 4.0, "MnR": 5.0},
    "v2t": {"R@1": 1.0, "R@5": 2.0, "R@10": 3.0, "MdR": 4.0, "MnR": 5.0},
    "pairwise": {"reversal": {"accuracy": 50.0, "comparisons": 4}},
}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**GOOD, "seed": "zero"}, "field 'seed' missing or not a int"),
        ({k: v for k, v in GOOD.items() if k != "method"}, "field 'method' missing or not a str"),
        ({**GOOD, "t2v": {**GOOD["t2v"], "R@1": "12%"}}, "field 't2v.R@1' missing or not a finite number"),
        ({**GOOD, "v2t": {**GOOD["v2t"], "MdR": float("nan")}}, "field 'v2t.MdR' missing or not a finite number"),
        ({**GOOD, "pairwise": {"reversal": 50.0}}, "field 'pairwise.reversal' must be an object with a numeric"),
        ([GOOD], "must hold a JSON object with fields method, seed, t2v, v2t"),
        ("{not json", "not readable JSON"),
    ],
)
def test_result_file_with_a_wrong_schema(capsys, tmp_path, payload, field):
    good, bad = tmp_path / "good" / "metrics.json", tmp_path / "bad" / "metrics.json"
    for path, content in ((good, GOOD), (bad, payload)):
        path.parent.mkdir()
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    line = _error(capsys, ["aggregate", "--metrics", str(good), str(bad), "--out", str(tmp_path / "tables")])
    assert line.startswith(f"vtrbench aggregate: error: {bad}: ") and field in line
    assert not (tmp_path / "tables").exists()  # nothing half-written


def test_result_file_missing(capsys, tmp_path):
    line = _error(capsys, ["aggregate", "--metrics", str(tmp_path / "metrics.json"), "--out", str(tmp_path / "t")])
    assert f"{tmp_path / 'metrics.json'}: not readable JSON" in line
