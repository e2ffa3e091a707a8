"""Tests for the GEES loss (cret/gees.py; docs/cret.md §4): references, the upper-bound property, chunking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cret.gees import gees_loss, gees_terms, mean_nce_loss


def _batch(seed: int, B: int = 6, M: int = 4, D: int = 16, dtype=torch.float64):
    """Unit-norm text [B, D] and unit-norm frames [B, M, D], as the caller provides them."""
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(B, D, generator=g, dtype=dtype), dim=-1)
    # frames near a per-video centre so videos have structure and a modest spread
    centre = torch.randn(B, 1, D, generator=g, dtype=dtype)
    frames = F.normalize(centre + 0.7 * torch.randn(B, M, D, generator=g, dtype=dtype), dim=-1)
    return text, frames


def _infonce_on_means(text, frames, scale):
    """Reference: symmetric InfoNCE on logits[i, j] = scale * t_i . mu_j, written out with log-softmax."""
    mu = frames.mean(1)
    logits = scale * text @ mu.T
    t2v = -torch.log_softmax(logits, dim=1).diagonal()  # caption i vs videos j
    v2t = -torch.log_softmax(logits, dim=0).diagonal()  # video i vs captions k
    return 0.5 * (t2v + v2t).mean()


def _brute_force_terms(text, frames, scale, lam):
    """Reference: loops and explicit D x D covariance matrices in float64 (docs/cret.md §4 equations)."""
    t = text.double()
    h = frames.double()
    B, M, _ = h.shape  # [B, M, D]
    mu = [h[j].mean(0) for j in range(B)]
    sig = [sum(torch.outer(h[j, m] - mu[j], h[j, m] - mu[j]) for m in range(M)) / M for j in range(B)]
    c = lam * scale**2 / 2
    l_t2v, l_v2t = [], []
    for i in range(B):
        acc = 1.0  # positive: exp(0)
        for j in range(B):
            if j != i:
                logit = scale * t[i] @ (mu[j] - mu[i]) + c * t[i] @ (sig[i] + sig[j]) @ t[i]
                acc += math.exp(float(logit))
        l_t2v.append(math.log(acc))
        acc = 0.0
        for k in range(B):
            a = t[k] - t[i]
            acc += math.exp(float(scale * a @ mu[i] + c * a @ sig[i] @ a))
        l_v2t.append(math.log(acc))
    return torch.tensor(l_t2v, dtype=torch.float64), torch.tensor(l_v2t, dtype=torch.float64)


def _monte_carlo_terms(text, frames, scale, n_samples, seed):
    """Expected frame-level NCE per sample under v_j ~ N(mu_j, Sigma_j), float64, with standard errors.

    v_j = mu_j + sum_m z_m (h_jm - mu_j) / sqrt(M), z ~ N(0, I_M), has covariance exactly the biased Sigma_j.
    t2v target: E[-log softmax_j(s t_i.v_j)[i]];  v2t target: E[-log softmax_k(s t_k.v_i)[i]].
    """
    t = text.double()
    h = frames.double()
    B, M, _ = h.shape  # [B, M, D]
    mu = h.mean(1)  # [B, D]
    dev = h - mu[:, None]  # [B, M, D]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_samples, B, M, generator=g, dtype=torch.float64)  # [S, B, M]
    v = mu + torch.einsum("sjm,jmd->sjd", z, dev) / math.sqrt(M)  # [S, B, D]
    logits = scale * torch.einsum("kd,sjd->skj", t, v)  # [S, B_text, B_video]
    idx = torch.arange(B)
    t2v = -torch.log_softmax(logits, dim=2)[:, idx, idx]  # [S, B] softmax over videos j
    v2t = -torch.log_softmax(logits, dim=1)[:, idx, idx]  # [S, B] softmax over texts k
    se = lambda x: x.std(0) / math.sqrt(n_samples)  # noqa: E731
    return t2v.mean(0), se(t2v), v2t.mean(0), se(v2t)


def test_zero_covariance_equals_infonce_on_means():
    text, frames = _batch(0, dtype=torch.float32)
    same = frames[:, :1].expand(-1, 5, -1).contiguous()  # all frames of a video identical -> Sigma = 0
    for scale in (1.0, 14.285, 50.0):
        ref = _infonce_on_means(text, same, scale)
        assert torch.allclose(gees_loss(text, same, scale), ref, atol=1e-6, rtol=0)
    # a single frame per video is also zero covariance
    one = frames[:, :1]
    assert torch.allclose(gees_loss(text, one, 10.0), _infonce_on_means(text, one, 10.0), atol=1e-6, rtol=0)


def test_lam_zero_equals_mean_nce_loss():
    text, frames = _batch(1, dtype=torch.float32)
    for scale in (1.0, 20.0, torch.tensor(14.285)):
        a = gees_loss(text, frames, scale, lam=0.0)
        assert torch.allclose(a, mean_nce_loss(text, frames, scale), atol=1e-6, rtol=0)
        assert torch.allclose(a, _infonce_on_means(text, frames, float(scale)), atol=1e-6, rtol=0)


def test_loss_increases_with_lam():
    text, frames = _batch(2)
    losses = [float(gees_loss(text, frames, 10.0, lam=lam)) for lam in (0.0, 0.5, 1.0, 2.0)]
    assert losses == sorted(losses) and losses[0] < losses[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [5.0, 1 / 0.07])
def test_upper_bound_of_monte_carlo_frame_nce(seed, scale):
    text, frames = _batch(seed)
    t2v, v2t = gees_terms(text, frames, scale)
    mc_t2v, se_t2v, mc_v2t, se_v2t = _monte_carlo_terms(text, frames, scale, 20_000, seed=100 + seed)
    # per sample i: bound >= MC estimate, allowing 4 standard errors of Monte-Carlo noise
    assert (t2v >= mc_t2v - 4 * se_t2v).all(), (t2v, mc_t2v, se_t2v)
    assert (v2t >= mc_v2t - 4 * se_v2t).all(), (v2t, mc_v2t, se_v2t)
    # sandwich: the per-sample NCE is convex in (v_1..v_B), so by Jensen InfoNCE on the means (lam = 0) is a
    # lower bound of the same expectation; this also shows the MC check can fail (it does for lam = 0, 0.5)
    low_t2v, low_v2t = gees_terms(text, frames, scale, lam=0.0)
    assert (low_t2v <= mc_t2v + 4 * se_t2v).all() and (low_v2t <= mc_v2t + 4 * se_v2t).all()
    assert (t2v > low_t2v).all() and (v2t >= low_v2t).all()


def test_matches_brute_force_reference():
    for seed, lam, scale in [(3, 1.0, 10.0), (4, 0.3, 1 / 0.07), (5, 2.0, 3.0)]:
        text, frames = _batch(seed, B=5, M=3, D=7)
        ref_t2v, ref_v2t = _brute_force_terms(text, frames, scale, lam)
        t2v, v2t = gees_terms(text, frames, scale, lam=lam)
        assert torch.allclose(t2v, ref_t2v, atol=1e-10, rtol=0)
        assert torch.allclose(v2t, ref_v2t, atol=1e-10, rtol=0)
    # float32 path against the float64 reference
    text, frames = _batch(6, B=5, M=3, D=7, dtype=torch.float32)
    ref_t2v, ref_v2t = _brute_force_terms(text, frames, 10.0, 1.0)
    t2v, v2t = gees_terms(text, frames, 10.0)
    assert torch.allclose(t2v.double(), ref_t2v, atol=1e-5)
    assert torch.allclose(v2t.double(), ref_v2t, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64])
def test_chunked_equals_dense(chunk_size):
    text, frames = _batch(7, B=7, M=5, D=12, dtype=torch.float32)
    dense = gees_terms(text, frames, 14.0, chunk_size=None)
    chunked = gees_terms(text, frames, 14.0, chunk_size=chunk_size)
    for a, b in zip(dense, chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert torch.allclose(
        gees_loss(text, frames, 14.0), gees_loss(text, frames, 14.0, chunk_size=chunk_size), atol=1e-6, rtol=0
    )


def test_gradients_finite_including_learnable_scale():
    text, frames = _batch(8, dtype=torch.float32)
    text.requires_grad_(True)
    frames.requires_grad_(True)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = gees_loss(text, frames, log_scale.exp(), chunk_size=2)
    loss.backward()
    for x in (text, frames, log_scale):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_large_logit_scale_does_not_overflow():
    text, frames = _batch(9, dtype=torch.float32)
    loss = gees_loss(text, frames, 1000.0)
    assert torch.isfinite(loss)


def test_gradcheck_float64():
    text, frames = _batch(10, B=3, M=2, D=4)
    text.requires_grad_(True)
    frames.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, h: gees_loss(t, h, 3.0, chunk_size=2), (text, frames))


@pytest.mark.parametrize(
    ("text_shape", "frames_shape", "match"),
    [
        ((4, 8), (4, 8), r"`frames` must be \[B, M, D\], got \(4, 8\)"),
        ((4, 8, 1), (4, 3, 8), r"`text` must be \[B, D\], got \(4, 8, 1\)"),
        ((4, 8), (5, 3, 8), r"\[4, M, 8\].*got \(5, 3, 8\)"),
        ((4, 8), (4, 3, 9), r"\[4, M, 8\].*got \(4, 3, 9\)"),
        ((4, 8), (4, 0, 8), r"M >= 1"),
    ],
)
def test_shape_errors(text_shape, frames_shape, match):
    with pytest.raises(ValueError, match=match):
        gees_loss(torch.randn(text_shape), torch.randn(frames_shape), 10.0)
    with pytest.raises(ValueError, match=match):
        mean_nce_loss(torch.randn(text_shape), torch.randn(frames_shape), 10.0)


def test_option_errors():
    text, frames = _batch(11, dtype=torch.float32)
    with pytest.raises(ValueError, match="lam"):
        gees_loss(text, frames, 10.0, lam=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        gees_loss(text, frames, 10.0, chunk_size=0)
    with pytest.raises(ValueError, match="logit_scale"):
        gees_loss(text, frames, torch.ones(2), lam=1.0)
