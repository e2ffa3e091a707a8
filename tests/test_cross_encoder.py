"""Cross-encoder: the interface contract, its fast scoring path against the plain one, the embedded first stage
(warm start from a dual encoder or CRET), candidate mining and the trainer hooks (tiny config)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from baselines.cross_encoder import FusionLayer
from tests.conftest import tiny_backbones
from tests.test_methods import B, _batch
from vtrbench.methods import build_method
from vtrbench.train import param_groups, train

METHODS = {
    "dual_seq": {"class": "dual_encoder", "pooling": "seq", "dim": 16},
    "cret": {"class": "cret", "dim": 16, "num_centres": 3},
}
CROSS = {"class": "cross_encoder", "fusion_layers": 2, "fusion_heads": 2, "pair_chunk": 5, "init_from": "dual_seq"}


def _build(**options):
    torch.manual_seed(0)
    entry = {**CROSS, **options}
    return build_method(tiny_backbones(), entry, {**METHODS, "cross": entry})


def _features(method):
    batch = _batch()
    return method.encode_videos(batch["frames"]), method.encode_texts(batch["input_ids"], batch["attention_mask"])


def test_contract_shapes_and_finite_grads():
    for options in ({}, {"video_tokens": "patches"}, {"init_from": "cret"}):
        method = _build(**options)
        batch = _batch()
        gallery, queries = _features(method)
        scores = method.score(queries, gallery)  # pair_chunk=5 < B*B: exercises the chunking
        assert scores.shape == (B, B) and torch.isfinite(scores).all()
        one = torch.stack([method.score({k: v[i : i + 1] for k, v in queries.items()}, gallery)[0] for i in range(B)])
        torch.testing.assert_close(scores, one, atol=1e-5, rtol=1e-5)
        terms = method.loss(batch)
        assert "match_loss" in terms and len(terms) >= 2  # the first stage's own loss is kept (ITC)
        sum(terms.values()).backward()
        grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def _reference_layer(layer: FusionLayer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The same block through nn.MultiheadAttention with the block's weights: every token's output."""
    D = x.shape[-1]
    attn = torch.nn.MultiheadAttention(D, layer.heads, batch_first=True)
    attn.in_proj_weight.data, attn.in_proj_bias.data = layer.qkv.weight.data, layer.qkv.bias.data
    attn.out_proj.weight.data, attn.out_proj.bias.data = layer.out.weight.data, layer.out.bias.data
    h = layer.norm1(x)
    y = x + attn(h, h, h, key_padding_mask=None if mask is None else ~mask, need_weights=False)[0]
    return y + layer.mlp(layer.norm2(y))


def test_jcls_only_last_layer_equals_full_scoring():
    torch.manual_seed(0)
    layer = FusionLayer(16, 2)
    x = torch.randn(6, 9, 16)
    mask = torch.ones(6, 9, dtype=torch.bool)
    mask[1, 6:] = False  # a padded pair
    for m in (None, mask):
        full = _reference_layer(layer, x, m)
        torch.testing.assert_close(layer(x, m), full, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer(x, m, queries=1), full[:, :1], atol=1e-5, rtol=1e-5)


def test_scores_do_not_depend_on_the_chunk_size_or_on_an_all_ones_mask():
    method = _build()
    torch.nn.init.normal_(method.head.weight)
    gallery, queries = _features(method)
    cand = torch.tensor([[0, 2, 1], [1, 3, 0], [3, 0, 2], [2, 1, 3]])
    reference = method.interaction_scores(queries, gallery, cand)
    for chunk in (1, 3, 4096):
        method.opts.pair_chunk = chunk
        torch.testing.assert_close(method.interaction_scores(queries, gallery, cand), reference, atol=1e-5, rtol=1e-5)
    x = torch.randn(3, 8, 32)
    for layer in method.fusion:  # no padding: the no-mask path equals the all-true mask
        torch.testing.assert_close(layer(x, None), layer(x, torch.ones(3, 8, dtype=torch.bool)), atol=1e-6, rtol=1e-6)


def test_candidate_scores_are_the_full_gallery_scores_of_those_candidates():
    method = _build()
    torch.nn.init.normal_(method.head.weight)
    gallery, queries = _features(method)
    cand = torch.tensor([[0, 2], [1, 3], [3, 0], [2, 1]])
    full = method.score_candidates(queries, gallery, cand)
    torch.testing.assert_close(full, method.score(queries, gallery).gather(1, cand), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(method.interaction_scores(queries, gallery, cand), full)  # no first-stage term


@pytest.mark.parametrize("source", ["dual_seq", "cret"])
def test_warm_start_embeds_the_first_stage_and_shares_its_towers(source):
    torch.manual_seed(1)
    trained = build_method(tiny_backbones(), METHODS[source])
    cross = _build(init_from=source)
    cross.warm_start(trained.state_dict())
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(cross.first.state_dict()[key], value)
    assert cross.first.backbones is cross.backbones  # one set of towers: the fusion reads what the ITC trains
    gallery, queries = _features(cross)
    batch = _batch()
    expected = trained.eval().score(trained.encode_texts(batch["input_ids"], batch["attention_mask"]),
                                    trained.encode_videos(batch["frames"]))  # fmt: skip
    short, k = cross.eval().shortlist(queries, gallery)
    torch.testing.assert_close(short, expected, atol=1e-5, rtol=1e-5)
    assert k == cross.opts.val_k
    with pytest.raises(ValueError, match="does not fit method"):
        cross.warm_start({"backbones.nonsense": torch.zeros(1)})


def test_one_tower_pass_per_step(monkeypatch):
    """The ITC term, the mining and the fusion read one pass of each tower (Backbones.shared_pass)."""
    method = _build()
    calls = {"frame": 0, "text": 0}
    for name in calls:
        cls = type(getattr(method.backbones, name))

        def counting(self, *args, _name=name, _original=cls.forward):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(cls, "forward", counting)
    method.loss(_batch())
    assert calls == {"frame": 1, "text": 1}


def test_candidates_group_first_then_sampled_or_hardest():
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.2, 0.3]] * 6)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    hardest = _build(hard_negatives=2, sampling="hardest").candidates(sim, group)
    assert hardest[0].tolist() == [0, 1, 3, 2]  # positive, its group twin, then the 2 most similar others
    assert (hardest[:, 0] == torch.arange(6)).all()
    sampled = _build(hard_negatives=2).candidates(100 * sim, group, torch.Generator().manual_seed(0))
    assert sampled[0, :2].tolist() == [0, 1] and set(sampled[0, 2:].tolist()) <= {2, 3, 4, 5}
    one = _build(hard_negatives=1)
    draws = [one.candidates(10 * sim, group, torch.Generator().manual_seed(s))[0, 2].item() for s in range(200)]
    assert draws.count(3) > draws.count(4)  # drawn in proportion to exp(similarity): 0.7 before 0.2


def test_lr_scales_and_budget_hooks():
    cross = _build(tower_lr_scale=0.5, steps=7, eval_every=3)
    config = {
        "train": {"weight_decay": 0.01, "backbone_lr_scale": 1.0},
        "model": {"text": {"pretrained": None}, "frame": {"pretrained": None}},
    }
    scales = {id(p): g["lr_scale"] for g in param_groups(cross, config) for p in g["params"]}
    assert scales[id(cross.backbones.text.bert.embeddings.word_embeddings.weight)] == 0.5
    assert scales[id(cross.first.text_proj.weight)] == 0.5 and scales[id(cross.head.weight)] == 1.0
    assert cross.train_overrides() == {"steps": 7, "eval_every": 3}


def test_query_subset_is_fixed_and_seeded():
    method = _build(eval_queries=3)
    a, b = method.query_subset(10), method.query_subset(10)
    assert a.tolist() == b.tolist() and len(a) == 3 and method.query_subset(2) is None


def test_warm_start_from_a_cret_checkpoint_validates_step_zero(smoke_config, smoke_data, tmp_path):
    """The trainer path: init_from names CRET, its model.pt goes in; a checkpoint of another method is refused."""
    smoke_config["methods"]["cross_encoder"]["init_from"] = "cret"
    cret = train(smoke_config, "cret", 0, smoke_data, tmp_path / "cret")
    model = train(smoke_config, "cross_encoder", 0, smoke_data, tmp_path / "cross", init_checkpoint=cret)
    val = pd.read_csv(tmp_path / "cross" / "val_log.csv")
    assert val.step.tolist()[0] == 0  # the warm start itself is validated (and may be selected)
    state = torch.load(model, weights_only=False)["model"]
    assert any(k.startswith("first.ccm.") for k in state)  # CRET is embedded, CCM included
    dual = train(smoke_config, "dual_mean", 0, smoke_data, tmp_path / "dual")
    with pytest.raises(RuntimeError, match="is not a 'cret' checkpoint of this config"):
        train(smoke_config, "cross_encoder", 0, smoke_data, tmp_path / "cross2", init_checkpoint=dual)
