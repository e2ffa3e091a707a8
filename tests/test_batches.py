"""Training inputs built fast, byte for byte as before: the frame gather against the 5-D ``take_along_axis`` it
replaced (both frame stores), and the token cache against a fresh tokenisation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vtrbench import runs
from vtrbench.data import records
from vtrbench.data.batches import tokenize
from vtrbench.data.records import load_split


@pytest.mark.parametrize("in_memory", [True, False])
def test_frame_gather_equals_take_along_axis(smoke_data, monkeypatch, in_memory):
    if not in_memory:
        monkeypatch.setattr(records, "IN_MEMORY_BYTES", 0)  # the memory-mapped path of large splits
    split = load_split(smoke_data, "train")
    assert (split.frames._array is not None) == in_memory
    rng = np.random.default_rng(0)
    videos = rng.choice(split.num_videos, 6, replace=False)
    frame_idx = rng.integers(0, split.frames.shape[1], (6, 3))  # repeats and any order, as sampling may give
    reference = np.take_along_axis(split.frames[videos], frame_idx[:, :, None, None, None], axis=1)
    gathered = split.frames.gather(videos, frame_idx)
    assert gathered.dtype == np.uint8 and gathered.shape == reference.shape
    assert np.array_equal(gathered, reference)


def test_the_tokenize_jobs_tokens_equal_a_fresh_tokenisation(smoke_config, smoke_data, tmp_path, monkeypatch):
    data = shutil.copytree(smoke_data, tmp_path / "data")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    tokens_dir = tmp_path / "tokens"
    files = runs.write_tokens(smoke_config, data, tokens_dir)
    assert len(files) == 3 and (tokens_dir / "tokens.json").is_file()
    setup = runs.build(smoke_config, "cret", data, tokens_dir)
    split = load_split(data, "val")
    fresh = tokenize(setup.tokenizer, split.captions, smoke_config["model"]["text"]["max_length"])

    def no_tokenising(*args, **kwargs):
        raise AssertionError("tokenised again although the tokens folder holds these captions")

    monkeypatch.setattr(runs, "tokenize", no_tokenising)
    read = runs.split_tokens(setup, split)  # read from the tokenize job's folder
    monkeypatch.undo()
    untokenised = runs.split_tokens(runs.build(smoke_config, "cret", data), split)  # no folder: tokenised here
    for tokens in (read, untokenised):
        assert torch.equal(tokens.input_ids, fresh.input_ids)
        assert torch.equal(tokens.attention_mask, fresh.attention_mask)
    other = dict(
        smoke_config, model={**smoke_config["model"], "text": {**smoke_config["model"]["text"], "max_length": 12}}
    )
    shorter = runs.split_tokens(runs.build(other, "cret", data, tokens_dir), split)  # another length: another key
    assert shorter.input_ids.shape[1] == 12
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written beside the data
