"""The shared encoders and the tokenizer built from a prepared dataset's vocabulary."""

from __future__ import annotations

from vtrbench.backbones import TextEncoderConfig, load_tokenizer
from vtrbench.data.records import load_split


def test_vocab_tokenizer_knows_every_caption_word(smoke_data):
    tokenizer = load_tokenizer(TextEncoderConfig(), smoke_data / "vocab.txt")
    captions = load_split(smoke_data, "train").captions
    ids = tokenizer(captions)["input_ids"]
    assert len(tokenizer) > 20
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in ids)
