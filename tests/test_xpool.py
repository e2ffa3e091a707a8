"""X-Pool (baselines/xpool.py): the text-conditioned pooling against a hand-written one, full scoring against
candidate scoring, the loss against the scores, gradients into the towers, the options' refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.xpool import XPool
from tests.conftest import method_batch, tiny_backbones
from vtrbench.losses import symmetric_cross_entropy
from vtrbench.methods import PairMethod, build_method, gallery_floats_per_video

CLASS = "baselines.xpool:XPool"
B, M, L, DIM = 4, 4, 12, 16


def _method(**options) -> XPool:
    torch.manual_seed(0)
    backbones = tiny_backbones()
    method = build_method(backbones, {"class": CLASS, "dim": DIM, **options})
    assert isinstance(method, XPool) and isinstance(method, PairMethod)
    return method


def _batch(n_text: int = B) -> dict[str, torch.Tensor]:
    return method_batch(B, M, L, seed=1, padded={1: 5}, n_text=n_text)


def _randomise_pool(method: XPool) -> None:
    """Move the pooling away from its identity init, so the hand computation below checks every layer."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in method.pool.parameters():
            p.copy_(p + 0.3 * torch.randn(p.shape, generator=g))
        method.nce.logit_scale.fill_(math.log(7.0))


def _by_hand(method: XPool, text: torch.Tensor, frames: torch.Tensor) -> float:
    """X-Pool's score of one caption [D] and one video's frame embeddings [M, D], one head and frame at a time
    (modules/transformer.py:92-111 and :21-62; modules/metrics.py:7-28)."""
    pool, heads = method.pool, method.opts.heads
    D = text.shape[0]
    hd = D // heads

    def linear(layer, x):
        return layer.weight @ x + layer.bias

    def norm(layer, x):
        return F.layer_norm(x, (D,), layer.weight, layer.bias, layer.eps)

    q = linear(pool.q_proj, norm(pool.layer_norm1, text))
    keys = [linear(pool.k_proj, norm(pool.layer_norm1, f)) for f in frames]
    values = [linear(pool.v_proj, norm(pool.layer_norm1, f)) for f in frames]
    per_head = []
    for h in range(heads):
        part = slice(h * hd, (h + 1) * hd)
        logits = torch.stack([torch.dot(q[part], k[part]) / math.sqrt(hd) for k in keys])
        weights = torch.exp(logits - logits.max())
        weights = weights / weights.sum()
        per_head.append(sum(w * v[part] for w, v in zip(weights, values, strict=True)))
    attn = norm(pool.layer_norm2, linear(pool.out_proj, torch.cat(per_head)))
    pooled = norm(pool.layer_norm3, attn + linear(pool.linear_proj, attn))  # eval: dropout is the identity
    cosine = torch.dot(text, pooled) / (text.norm() * pooled.norm())
    return float(method.nce.scale() * cosine)


@pytest.mark.parametrize("heads", [1, 2])
def test_score_matches_the_pooling_by_hand(heads):
    method = _method(heads=heads).eval()
    _randomise_pool(method)
    batch = _batch(n_text=3)
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        gallery = method.encode_videos(batch["frames"])
        scores = method.score(queries, gallery)  # [3, B]
        frames = method.frame_features(batch["frames"])  # [B, M, D]
        for t in range(3):
            for v in range(B):
                assert scores[t, v].item() == pytest.approx(_by_hand(method, queries["text"][t], frames[v]), abs=1e-5)


def test_full_scoring_equals_candidate_scoring_in_any_order_and_chunking():
    method = _method(heads=2).eval()
    _randomise_pool(method)
    batch = _batch()
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        gallery = method.encode_videos(batch["frames"])
        full = method.score(queries, gallery)
        every = torch.stack([torch.randperm(B, generator=torch.Generator().manual_seed(i)) for i in range(B)])
        method.opts.pair_chunk = 3  # blocks of at most 3 pairs: rows and columns split
        chunked = method.score_candidates(queries, gallery, every)
    assert full.shape == (B, B)
    torch.testing.assert_close(chunked, full.gather(1, every))
    assert gallery_floats_per_video(gallery) == 2 * M * DIM  # keys and values of every frame


def test_loss_is_the_cross_entropy_of_the_scores_and_reaches_every_tower():
    method = _method(temporal=True).eval()  # eval: no dropout, so the loss is a function of the scores
    batch = _batch()
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        scores = method.score(queries, method.encode_videos(batch["frames"]))
        expected = symmetric_cross_entropy(scores)
    method.train()
    method.pool.dropout.p = 0.0
    terms = method.loss(batch)
    assert set(terms) == {"nce_loss"} and torch.isfinite(terms["nce_loss"])
    torch.testing.assert_close(terms["nce_loss"].detach(), expected)
    terms["nce_loss"].backward()
    for part in (method.backbones.text, method.backbones.frame, method.backbones.temporal, method.pool, method.nce):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), type(part).__name__
        assert any(g.abs().sum() > 0 for g in grads), type(part).__name__


def test_default_pooling_is_blind_to_frame_order():
    """As in X-Pool (no frame positions): a reversed video scores the same; ``temporal: true`` sees order."""
    batch = _batch()
    for temporal, blind in ((False, True), (True, False)):
        method = _method(temporal=temporal).eval()
        with torch.no_grad():
            queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
            forward = method.score(queries, method.encode_videos(batch["frames"]))
            backward = method.score(queries, method.encode_videos(batch["frames"].flip(1)))
        assert torch.allclose(forward, backward, atol=1e-5) == blind


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"dim": 0}, "dim: expected an integer >= 1, got 0"),
        ({"dim": "8"}, "dim: expected an integer, got '8'"),
        ({"heads": 3}, "heads=3 must divide dim=16"),
        ({"dropout": 1.0}, "dropout must be below 1"),
        ({"dropout": -0.1}, "dropout: expected a number >= 0"),
        ({"temperature": 0}, "temperature: expected a number > 0"),
        ({"pair_chunk": 0}, "pair_chunk: expected an integer >= 1"),
        ({"temporal": "yes"}, "temporal: expected true or false"),
        ({"head": 2}, "unknown option(s) head"),
    ],
)
def test_options_refuse_bad_values_in_one_line(options, words):
    backbones = tiny_backbones()
    with pytest.raises(ValueError) as err:
        build_method(backbones, {"class": CLASS, "dim": DIM, **options})
    assert words in str(err.value) and "\n" not in str(err.value)
