"""Tests for the CCM module and the local score (cret/ccm.py; docs/cret.md §3, Table 7 sharing switches)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cret.ccm import CCM, CCMConfig, local_score

D, K = 32, 5


def _cfg(**kw) -> CCMConfig:
    return CCMConfig(dim=D, num_centres=K, layers=2, heads=4, **kw)


def _model(seed: int = 0, **kw) -> CCM:
    torch.manual_seed(seed)
    return CCM(_cfg(**kw)).eval()


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_output_shape_and_unit_norm():
    ccm = _model()
    g = torch.Generator().manual_seed(1)
    for modality, n in (("video", 9), ("text", 7)):
        out = ccm(torch.randn(3, n, D, generator=g), modality)
        assert out.shape == (3, K, D)
        assert torch.allclose(out.norm(dim=-1), torch.ones(3, K), atol=1e-5)
        assert torch.isfinite(out).all()


def test_padded_tokens_do_not_influence_output():
    ccm = _model()
    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(4, 6, D, generator=g)  # [B, L, D]
    lengths = torch.tensor([6, 3, 1, 5])
    mask = torch.arange(6)[None, :] >= lengths[:, None]  # [B, L] True = padding
    out = ccm(tokens, "text", padding_mask=mask)
    changed = tokens.masked_fill(mask[..., None], 0.0) + mask[..., None] * 100.0 * torch.randn(4, 6, D, generator=g)
    assert not torch.allclose(changed, tokens)
    assert torch.allclose(ccm(changed, "text", padding_mask=mask), out, atol=1e-6, rtol=0)
    with torch.inference_mode():  # gallery/query encoding path
        assert torch.allclose(ccm(changed, "text", padding_mask=mask), out, atol=1e-6, rtol=0)
    # and each row equals running that caption alone, truncated to its real tokens
    for b, n in enumerate(lengths.tolist()):
        alone = ccm(tokens[b : b + 1, :n], "text")
        assert torch.allclose(alone[0], out[b], atol=1e-5, rtol=0)
    # sanity: without the mask the padded values do matter
    assert not torch.allclose(ccm(changed, "text"), ccm(tokens, "text"), atol=1e-3)


def test_fully_padded_row_raises():
    ccm = _model()
    mask = torch.tensor([[False, True, True], [True, True, True]])
    with pytest.raises(ValueError, match=r"rows \[1\].*caption with no tokens"):
        ccm(torch.randn(2, 3, D), "text", padding_mask=mask)


def test_input_errors():
    ccm = _model()
    with pytest.raises(ValueError, match="unknown modality 'audio'; choose one of: text, video"):
        ccm(torch.randn(2, 3, D), "audio")
    with pytest.raises(ValueError, match=rf"\[B, n, D\] with n >= 1 and D = {D}, got \(2, 3, 8\)"):
        ccm(torch.randn(2, 3, 8), "video")
    with pytest.raises(ValueError, match="padding_mask"):
        ccm(torch.randn(2, 3, D), "text", padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="padding_mask"):
        ccm(torch.randn(2, 3, D), "text", padding_mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="heads must divide dim"):
        CCMConfig(dim=30, heads=4)


def test_parameter_counts_follow_sharing_switches():
    counts = {
        (sq, sw): _n_params(_model(share_queries=sq, share_weights=sw)) for sq in (True, False) for sw in (True, False)
    }
    both, neither = counts[True, True], counts[False, False]
    q_only, w_only = counts[True, False], counts[False, True]  # shared queries only / shared weights only
    assert both < q_only < neither and both < w_only < neither
    decoder = _n_params(_model().decoders["shared"])
    assert both == K * D + decoder
    assert q_only - both == decoder  # unshared weights: the decoder (incl. its final norm) exactly doubles
    assert w_only - both == K * D  # unshared queries: one more [K, D] centre set
    assert neither == 2 * K * D + 2 * decoder


def test_shared_model_uses_same_parameters_for_both_modalities():
    ccm = _model()
    assert ccm.centres_for("text") is ccm.centres_for("video")
    assert ccm.decoder_for("text") is ccm.decoder_for("video")
    # a text-only loss reaches the centre tensor the video branch uses
    ccm(torch.randn(2, 4, D), "text").sum().backward()
    grad = ccm.centres_for("video").grad
    assert grad is not None and grad.abs().sum() > 0
    # and perturbing that tensor changes the video output
    x = torch.randn(2, 4, D)
    before = ccm(x, "video")
    with torch.no_grad():
        ccm.centres_for("video").add_(0.5)
    assert not torch.allclose(ccm(x, "video"), before)


def test_unshared_model_keeps_modalities_apart():
    ccm = _model(share_queries=False, share_weights=False)
    assert ccm.centres_for("text") is not ccm.centres_for("video")
    ccm(torch.randn(2, 4, D), "text").sum().backward()
    assert ccm.centres_for("text").grad is not None
    assert ccm.centres_for("video").grad is None
    assert all(p.grad is None for p in ccm.decoder_for("video").parameters())


def test_local_score_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    zt = F.normalize(torch.randn(4, K, D, generator=g), dim=-1)
    zv = F.normalize(torch.randn(3, K, D, generator=g), dim=-1)
    ref = torch.zeros(4, 3)
    for i in range(4):
        for j in range(3):
            ref[i, j] = sum(float(zt[i, k] @ zv[j, k]) for k in range(K)) / K  # centre k only with centre k
    assert torch.allclose(local_score(zt, zv), ref, atol=1e-6)
    with pytest.raises(ValueError, match="equal K, D"):
        local_score(zt, zv[:, :2])


def test_finite_gradients_through_ccm_and_local_score():
    torch.manual_seed(4)
    ccm = CCM(_cfg(dropout=0.1)).train()
    video = torch.randn(3, 8, D, requires_grad=True)
    text = torch.randn(3, 5, D, requires_grad=True)
    mask = torch.tensor([[False] * 5, [False] * 2 + [True] * 3, [False] * 4 + [True]])
    s = local_score(ccm(text, "text", padding_mask=mask), ccm(video, "video"))  # [3, 3]
    target = torch.arange(3)
    loss = 0.5 * (F.cross_entropy(s / 0.05, target) + F.cross_entropy(s.T / 0.05, target))
    loss.backward()
    assert torch.isfinite(loss)
    for t in (video, text, *ccm.parameters()):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert text.grad[1, 2:].abs().max() == 0  # padded tokens receive no gradient
