"""DRL's weighted token-wise interaction (baselines/late_interaction.py): the scorer against Python loops over tokens
and frames with padding, full scoring against candidate scoring, the loss against the scores, CDCR against DRL's
own formulation, gradients into the towers, the options' refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.late_interaction import LateInteraction, cdcr_loss
from tests.conftest import method_batch, tiny_backbones
from vtrbench.losses import symmetric_cross_entropy
from vtrbench.methods import PairMethod, build_method, gallery_floats_per_video

CLASS = "baselines.late_interaction:LateInteraction"
B, M, L, DIM = 4, 4, 12, 16


def _method(**options) -> LateInteraction:
    torch.manual_seed(0)
    backbones = tiny_backbones()
    method = build_method(backbones, {"class": CLASS, "dim": DIM, **options})
    assert isinstance(method, LateInteraction) and isinstance(method, PairMethod)
    return method


def _batch() -> dict[str, torch.Tensor]:
    return method_batch(B, M, L, seed=1, padded={1: 5, 3: 3})


def _wti_by_loops(tokens, mask, token_weights, frames, frame_weights) -> float:
    """The weighted max-sim of one caption [L, D] and one video [M, D], a token and a frame at a time."""
    real = [i for i in range(len(tokens)) if mask[i] == 1]
    t2v = sum(token_weights[i] * max(torch.dot(tokens[i], f) for f in frames) for i in real)
    v2t = sum(frame_weights[j] * max(torch.dot(frames[j], tokens[i]) for i in real) for j in range(len(frames)))
    return float(0.5 * (t2v + v2t))


def _features(n_text: int = 3, n_video: int = 5, length: int = 6, frames: int = 3, dim: int = 8):
    """Hand-made query and gallery features with padding, where padding would change the answer if it counted."""
    g = torch.Generator().manual_seed(3)
    tokens = F.normalize(torch.randn(n_text, length, dim, generator=g), dim=-1)
    mask = torch.ones(n_text, length)
    mask[1, 3:] = 0
    mask[2, 2:] = 0
    weights = torch.randn(n_text, length, generator=g).masked_fill(mask == 0, float("-inf")).softmax(-1)
    video = F.normalize(torch.randn(n_video, frames, dim, generator=g), dim=-1)
    video[0, 0] = -F.normalize(tokens[2, :2].sum(0), dim=0)  # a frame every real token of caption 2 points away from
    tokens[2, 2:] = video[0, 1]  # padding that would be the best match of a frame of video 0
    tokens[1, 3:] = -video[1, 0]  # padding that would be the worst match of a frame of video 1
    frame_weights = torch.randn(n_video, frames, generator=g).softmax(-1)
    return {"tokens": tokens, "mask": mask, "weights": weights}, {"frames": video, "weights": frame_weights}


@pytest.mark.parametrize("pair_chunk", [1, 4, 4096])
def test_scorer_matches_python_loops_with_padding(pair_chunk):
    method = _method(pair_chunk=pair_chunk).eval()
    queries, gallery = _features()
    scores = method.score(queries, gallery)  # [3, 5]
    scale = float(method.nce.scale().detach())
    assert scale == pytest.approx(1 / 0.07, rel=1e-5)
    for t in range(3):
        for v in range(5):
            args = queries["tokens"][t], queries["mask"][t], queries["weights"][t]
            expected = _wti_by_loops(*args, gallery["frames"][v], gallery["weights"][v])
            assert scores[t, v].item() == pytest.approx(scale * expected, abs=1e-5)
    with torch.no_grad():  # DRL's zeroed padding (tvr/models/modeling.py:418) would score caption 2 higher here
        zeroed = queries["tokens"][2, :2] @ gallery["frames"][0].T  # [2 real tokens, M]
        assert zeroed[:, 0].max() < 0


def test_encoders_mask_padding_and_weights_sum_to_one():
    method = _method().eval()
    batch = _batch()
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        gallery = method.encode_videos(batch["frames"])
        # other ids under the padding change nothing: the padding is neither attended to nor scored
        other = batch["input_ids"] + (1 - batch["attention_mask"]) * 7
        again = method.encode_texts(other, batch["attention_mask"])
        torch.testing.assert_close(method.score(again, gallery), method.score(queries, gallery))
        tokens, _ = method._raw_tokens(batch["input_ids"], batch["attention_mask"])
        logits = method.text_weight_fc(tokens).squeeze(-1)
    assert queries["tokens"].shape == (B, L, DIM) and gallery["frames"].shape == (B, M, DIM)
    torch.testing.assert_close(queries["mask"], batch["attention_mask"].float())
    assert (queries["weights"][batch["attention_mask"] == 0] == 0).all()
    torch.testing.assert_close(queries["weights"].sum(-1), torch.ones(B))
    torch.testing.assert_close(gallery["weights"].sum(-1), torch.ones(B))
    for t in range(B):
        real = batch["attention_mask"][t] == 1
        torch.testing.assert_close(queries["weights"][t, real], logits[t, real].softmax(-1))
    torch.testing.assert_close(queries["tokens"].norm(dim=-1), torch.ones(B, L))
    assert gallery_floats_per_video(gallery) == M * (DIM + 1)  # a unit vector and a weight per frame


def test_full_scoring_equals_candidate_scoring_in_any_order_and_chunking():
    method = _method().eval()
    batch = _batch()
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        gallery = method.encode_videos(batch["frames"])
        full = method.score(queries, gallery)
        every = torch.stack([torch.randperm(B, generator=torch.Generator().manual_seed(i)) for i in range(B)])
        method.opts.pair_chunk = 3  # blocks of at most 3 pairs: rows and columns split
        chunked = method.score_candidates(queries, gallery, every)
        some = method.score_candidates(queries, gallery, every[:, :2])
    assert full.shape == (B, B)
    torch.testing.assert_close(chunked, full.gather(1, every))
    torch.testing.assert_close(some, full.gather(1, every[:, :2]))


@pytest.mark.parametrize("cdcr", [False, True])
def test_loss_is_the_cross_entropy_of_the_scores_and_reaches_every_tower(cdcr):
    method = _method(cdcr=cdcr, cdcr_alpha2=0.06).eval()
    batch = _batch()
    with torch.no_grad():
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        expected = symmetric_cross_entropy(method.score(queries, method.encode_videos(batch["frames"])))
    method.train()
    terms = method.loss(batch)
    assert set(terms) == ({"nce_loss", "cdcr_loss"} if cdcr else {"nce_loss"})
    assert all(torch.isfinite(v) for v in terms.values())
    torch.testing.assert_close(terms["nce_loss"].detach(), expected)
    assert method.loss_label() == ("nce+cdcr" if cdcr else "nce")
    sum(terms.values()).backward()
    parts = {
        "text": method.backbones.text,
        "frame": method.backbones.frame,
        "temporal": method.backbones.temporal,
        "text_weight_fc": method.text_weight_fc,
        "video_weight_fc": method.video_weight_fc,
        "nce": method.nce,
    }
    for name, part in parts.items():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def _drl_cdcr3(text_feat, video_feat, text_mask, video_mask, text_weight, video_weight, alpha1, alpha2):
    """DRL's ``cdcr == 3`` as written in tvr/models/modeling.py:414-419, 432-436, 497-534 (commit 475f96c)."""
    retrieve_logits = torch.einsum("atd,bvd->abtv", [text_feat, video_feat])
    retrieve_logits = torch.einsum("abtv,at->abtv", [retrieve_logits, text_mask])
    retrieve_logits = torch.einsum("abtv,bv->abtv", [retrieve_logits, video_mask])
    _, max_idx1 = retrieve_logits.max(dim=-1)
    _, max_idx2 = retrieve_logits.max(dim=-2)
    max_idx1 = max_idx1[torch.arange(max_idx1.shape[0]), torch.arange(max_idx1.shape[1])]
    max_idx2 = max_idx2[torch.arange(max_idx2.shape[0]), torch.arange(max_idx2.shape[1])]
    max_t_feat = text_feat[torch.arange(max_idx2.shape[0]).repeat_interleave(max_idx2.shape[1]), max_idx2.flatten()]
    max_v_feat = video_feat[torch.arange(max_idx1.shape[0]).repeat_interleave(max_idx1.shape[1]), max_idx1.flatten()]
    t_feat = text_feat.reshape(-1, text_feat.shape[-1])
    t_mask = text_mask.flatten().type(torch.bool)
    v_feat = video_feat.reshape(-1, video_feat.shape[-1])
    v_mask = video_mask.flatten().type(torch.bool)
    t_feat, v_feat = t_feat[t_mask], v_feat[v_mask]
    max_t_feat, max_v_feat = max_t_feat[v_mask], max_v_feat[t_mask]
    text_weight, video_weight = text_weight.flatten()[t_mask], video_weight.flatten()[v_mask]
    z_a_norm = (t_feat - t_feat.mean(0)) / t_feat.std(0)
    z_b_norm = (max_v_feat - max_v_feat.mean(0)) / max_v_feat.std(0)
    x_a_norm = (v_feat - v_feat.mean(0)) / v_feat.std(0)
    x_b_norm = (max_t_feat - max_t_feat.mean(0)) / max_t_feat.std(0)
    D = z_a_norm.shape[1]
    batch = text_feat.shape[0]
    c1 = torch.einsum("acd,a->cd", torch.einsum("ac,ad->acd", z_a_norm, z_b_norm), text_weight) / batch
    c2 = torch.einsum("acd,a->cd", torch.einsum("ac,ad->acd", x_a_norm, x_b_norm), video_weight) / batch
    c = (c1 + c2) / 2.0
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = c.flatten()[1:].view(D - 1, D + 1)[:, :-1].pow(2).sum()
    return on_diag * alpha1 + off_diag * alpha2


def test_cdcr_equals_drls_own_formulation():
    g = torch.Generator().manual_seed(4)
    n, length, frames, dim = 5, 6, 3, 8
    shift = 3 * torch.ones(dim)  # every cosine positive: DRL's zeroed padding never wins a max, so both agree
    tokens = F.normalize(torch.randn(n, length, dim, generator=g) + shift, dim=-1)
    video = F.normalize(torch.randn(n, frames, dim, generator=g) + shift, dim=-1)
    mask = torch.ones(n, length)
    mask[0, 4:] = 0
    mask[3, 2:] = 0
    token_weights = torch.randn(n, length, generator=g).masked_fill(mask == 0, float("-inf")).softmax(-1)
    frame_weights = torch.randn(n, frames, generator=g).softmax(-1)
    ours = cdcr_loss(tokens, mask, token_weights, video, frame_weights, 0.14, 0.06)
    drl = _drl_cdcr3(tokens, video, mask, torch.ones(n, frames), token_weights, frame_weights, 0.14, 0.06)
    torch.testing.assert_close(ours, drl)
    assert ours > 0 and math.isfinite(float(ours))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"dim": 0}, "dim: expected an integer >= 1, got 0"),
        ({"weight_layers": 0}, "weight_layers: expected an integer >= 1, got 0"),
        ({"temperature": -1.0}, "temperature: expected a number > 0"),
        ({"cdcr": "yes"}, "cdcr: expected true or false"),
        ({"cdcr_lambda": -0.1}, "cdcr_lambda: expected a number >= 0"),
        ({"cdcr_alpha1": None}, "cdcr_alpha1: expected a number, got None"),
        ({"pair_chunk": 0}, "pair_chunk: expected an integer >= 1"),
        ({"wti_arch": 2}, "unknown option(s) wti_arch"),
    ],
)
def test_options_refuse_bad_values_in_one_line(options, words):
    backbones = tiny_backbones()
    with pytest.raises(ValueError) as err:
        build_method(backbones, {"class": CLASS, "dim": DIM, **options})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_queries_encoded_in_batches_of_other_widths_score_as_one_batch():
    """The evaluator encodes captions in batches trimmed to their longest caption, so per-token features arrive
    with different widths; stacked (zero-padded) they must score exactly as one batch does."""
    from vtrbench.data.batches import Tokens
    from vtrbench.encoding import encode_queries

    method = _method().eval()
    batch = method_batch(B, M, L, seed=1, padded={0: 4, 1: 5, 2: L, 3: 3})  # batches [0, 1] and [2, 3]: 5 vs 12
    tokens = Tokens(batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        gallery = method.encode_videos(batch["frames"])
        whole = method.encode_texts(batch["input_ids"], batch["attention_mask"])
    pieces = encode_queries(method, tokens, batch_size=2, device=torch.device("cpu"))
    assert pieces["tokens"].shape == (B, L, DIM)
    torch.testing.assert_close(method.score(pieces, gallery), method.score(whole, gallery))
