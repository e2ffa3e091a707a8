"""The shared encoders and the tokenizer built from a prepared dataset's vocabulary."""

from __future__ import annotations

import pytest
import torch

from vtrbench.backbones import BackboneConfig, Backbones, TextEncoderConfig
from vtrbench.data.records import load_split
from vtrbench.pretrained import load_tokenizer


def test_vocab_tokenizer_knows_every_caption_word(smoke_data):
    tokenizer = load_tokenizer(TextEncoderConfig(), smoke_data / "vocab.txt")
    captions = load_split(smoke_data, "train").captions
    ids = tokenizer(captions)["input_ids"]
    assert len(tokenizer) > 20
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in ids)


def _backbones(**model: dict) -> Backbones:
    torch.manual_seed(0)
    cfg = BackboneConfig.from_dict({"text": {"hidden": 16, "heads": 2}, "frame": {"hidden": 16, "heads": 2}, **model})
    return Backbones(cfg, vocab_size=30, image_size=16)


def test_mean_pooled_caption_ignores_padding():
    """The caption feature is the mean of its real tokens: padding the same caption further changes nothing."""
    enc = _backbones(text={"hidden": 16, "heads": 2, "pooling": "mean"}).text.eval()
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0], [2, 7, 8, 9, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = enc(ids, mask)
        short = enc(ids[:, :5], mask[:, :5])
    torch.testing.assert_close(out.pooled, out.tokens[:, :5].mean(1))
    torch.testing.assert_close(out.pooled, short.pooled, atol=1e-5, rtol=1e-5)


def test_frame_pooling_picks_cls_or_the_patch_mean():
    frames = torch.randint(0, 256, (2, 3, 16, 16, 3), dtype=torch.uint8)
    for pooling in ("cls", "mean"):
        enc = _backbones(frame={"hidden": 16, "heads": 2, "patch_size": 8, "pooling": pooling}).frame.eval()
        with torch.no_grad():
            out = enc(frames)
            hidden = enc.vit(pixel_values=(frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5)
        hidden = hidden.last_hidden_state.view(2, 3, 5, 16)
        expected = hidden[:, :, 0] if pooling == "cls" else hidden[:, :, 1:].mean(2)
        torch.testing.assert_close(out.pooled, expected, atol=1e-5, rtol=1e-5)


def test_temporal_positions_start_at_the_configured_scale():
    for std in (0.02, 0.5):
        position = _backbones(temporal={"position_std": std}).temporal.position
        assert abs(float(position.detach().std()) - std) < 0.1 * std


@pytest.mark.parametrize("tower", ["text", "frame"])
def test_unknown_pooling_is_a_clear_error(tower):
    with pytest.raises(ValueError, match=rf"model\.{tower}\.pooling must be 'cls' or 'mean', got 'max'"):
        _backbones(**{tower: {"hidden": 16, "heads": 2, "pooling": "max"}})
