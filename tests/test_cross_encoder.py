"""Cross-encoder: interface contract, candidate mining, warm start and the trainer hooks (tiny config)."""

from __future__ import annotations

import torch

from tests.test_methods import TINY, B, H, _batch
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.methods import build_method
from vtrbench.train import param_groups

CROSS = {"class": "cross_encoder", "dual_dim": 16, "fusion_layers": 1, "fusion_heads": 2, "pair_chunk": 5}


def _build(**options):
    torch.manual_seed(0)
    return build_method(Backbones(BackboneConfig.from_dict(TINY), 60, H), {**CROSS, **options})


def test_contract_shapes_and_finite_grads():
    for options in ({}, {"video_tokens": "patches", "residual": False}):
        method = _build(**options)
        batch = _batch()
        gallery = method.encode_videos(batch["frames"])
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        scores = method.score(queries, gallery)  # pair_chunk=5 < B*B: exercises the chunking
        assert scores.shape == (B, B) and torch.isfinite(scores).all()
        one = torch.stack([method.score({k: v[i : i + 1] for k, v in queries.items()}, gallery)[0] for i in range(B)])
        torch.testing.assert_close(scores, one, atol=1e-5, rtol=1e-5)
        terms = method.loss(batch)
        assert list(terms) == ["match_loss"]
        terms["match_loss"].backward()
        grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_residual_starts_at_the_dual_score():
    method = _build()
    batch = _batch()
    g, q = method.encode_videos(batch["frames"]), method.encode_texts(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(method.score(q, g), method.dual_scale() * q["dual"] @ g["dual"].T)


def test_interaction_scores_are_the_full_score_minus_the_residual():
    method = _build()
    torch.nn.init.normal_(method.head.weight)  # a fusion head that is not zero
    batch = _batch()
    g, q = method.encode_videos(batch["frames"]), method.encode_texts(batch["input_ids"], batch["attention_mask"])
    cand = torch.tensor([[0, 2], [1, 3], [3, 0], [2, 1]])
    residual = method.dual_scale() * (q["dual"][:, None] * g["dual"][cand]).sum(-1)
    full, fusion = method.score_candidates(q, g, cand), method.interaction_scores(q, g, cand)
    torch.testing.assert_close(fusion, full - residual)
    torch.testing.assert_close(full, method.score(q, g).gather(1, cand), atol=1e-5, rtol=1e-5)


def test_candidates_group_first_then_hardest():
    method = _build(hard_negatives=2)
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.2, 0.3]] * 6)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    cand = method.candidates(sim, group)
    assert cand[0].tolist() == [0, 1, 3, 2]  # positive, its group twin, then the 2 hardest others
    assert (cand[:, 0] == torch.arange(6)).all()


def test_warm_start_copies_towers_and_heads_and_scales_lr():
    dual = build_method(
        Backbones(BackboneConfig.from_dict(TINY), 60, H), {"class": "dual_encoder", "pooling": "seq", "dim": 16}
    )
    cross = _build(init_from="dual_seq")
    cross.warm_start(dual.state_dict())
    for key, value in dual.state_dict().items():
        target = "dual_" + key if key.startswith(("video_proj", "text_proj")) else key
        if key == "nce.logit_scale":
            target = "dual_logit_scale"
        torch.testing.assert_close(cross.state_dict()[target], value)
    config = {
        "train": {"weight_decay": 0.01, "backbone_lr_scale": 1.0},
        "model": {"text": {"pretrained": None}, "frame": {"pretrained": None}},
    }
    scales = {id(p): g["lr_scale"] for g in param_groups(cross, config) for p in g["params"]}
    assert scales[id(cross.backbones.text.bert.embeddings.word_embeddings.weight)] == 0.1
    assert scales[id(cross.dual_text_proj.weight)] == 0.1 and scales[id(cross.head.weight)] == 1.0


def test_query_subset_is_fixed_and_seeded():
    method = _build(eval_queries=3)
    a, b = method.query_subset(10), method.query_subset(10)
    assert a.tolist() == b.tolist() and len(a) == 3 and method.query_subset(2) is None
