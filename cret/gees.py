"""GEES loss: Gaussian Estimation of Embedding Space (CRET, SIGIR 2022; docs/cret.md §4).

Status: [R] reconstruction. The paper's equations are not available (docs/cret.md, introduction).
Certain [F]: a video's frame-level features are modelled as a multivariate Gaussian whose parameters are
estimated from the temporal-encoder outputs, and the frame-level NCE is replaced by a cheap closed form
computed from those parameters and the text CLS feature (docs/cret.md §4, facts). The form below is the
ISDA-type bound (Wang et al., NeurIPS'19, arXiv 1909.12220; docs/cret.md §4, reconstruction).

Derivation sketch. For video j with temporal features h_j1..h_jM, estimate
    mu_j    = (1/M) sum_m h_jm
    Sigma_j = (1/M) sum_m (h_jm - mu_j)(h_jm - mu_j)^T      (biased, rank <= M-1, never built as D x D)
and treat the frame embedding as v_j ~ N(mu_j, Sigma_j), independent across videos; s = logit_scale = 1/tau.
  * text->video target: E[-log softmax_j(s t_i.v_j)[i]] = E[log(1 + sum_{j!=i} exp(s t_i.(v_j - v_i)))].
    Jensen (log is concave) moves E inside the log; the Gaussian MGF
    E[exp(a^T x)] = exp(a^T mu + a^T Sigma a / 2) with x = v_j - v_i ~ N(mu_j - mu_i, Sigma_i + Sigma_j) gives
        L_t2v(i) = log(1 + sum_{j!=i} exp(s t_i.(mu_j - mu_i) + lam s^2/2 t_i^T (Sigma_i + Sigma_j) t_i))
  * video->text target: E[-log softmax_k(s t_k.v_i)[i]] = E[log sum_k exp(s (t_k - t_i).v_i)]; the same two
    steps with a_k = t_k - t_i give exactly ISDA's bound (k = i contributes exp(0) = 1)
        L_v2t(i) = log sum_k exp(s a_k.mu_i + lam s^2/2 a_k^T Sigma_i a_k)
  * L_GEES = mean_i 1/2 [L_t2v(i) + L_v2t(i)].
With lam = 1 both terms are upper bounds of the expected frame-level NCE (tests/test_gees.py checks this
against Monte Carlo). lam = 0 (or Sigma = 0) gives symmetric InfoNCE on the means, ``mean_nce_loss``, which by
Jensen on the convex per-sample NCE is a lower bound of the same expectation.

Unknowns exposed as options (docs/cret.md §4 and §7):
  * ``lam``: ISDA's covariance scale, 1.0 by default; any schedule (ISDA ramps lam0 * t / T) is the caller's.
  * ``logit_scale``: 1/tau, a float or a (learnable) one-element tensor; exponentiating a log-scale is the
    caller's. The variance terms grow as s^2, so at tau = 0.07 the bound is much looser than at tau = 0.2.
  * Normalisation: the caller projects and L2-normalises ``text`` and each frame of ``frames``; nothing is
    normalised here (mu_j is then generally not unit-norm).
  * Only the two-sided ISDA form is implemented, not the simpler one-sided Jensen form (docs/cret.md §4).

Computation. a^T Sigma_j a = mean_m (a.(h_jm - mu_j))^2, so with the projections onto video i's deviations
    P[i, k, m] = t_k . (h_im - mu_i)                                      # [B, B, M]
we get t_k^T Sigma_i t_k = mean_m P[i, k, m]^2 and
    (t_k - t_i)^T Sigma_i (t_k - t_i) = mean_m (P[i, k, m] - P[i, i, m])^2.
No [B, B, D] difference tensor is built: memory O(chunk * B * M), time O(B^2 M D).
Rows i of P are computed ``chunk_size`` videos at a time and each row independently, so chunking is exact up
to floating-point summation order. Numerics: the log-sum-exps use ``torch.logsumexp`` (max-shifted), and the
positive term enters as the logit 0 (not as a subtracted log(exp(.))), so large logit scales do not overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_inputs(
    text: Tensor, frames: Tensor, logit_scale: Tensor | float, lam: float, chunk_size: int | None
) -> None:
    """Validate shapes and options at the boundary; raises ValueError naming expected vs received."""
    if text.dim() != 2:
        raise ValueError(f"`text` must be [B, D], got {tuple(text.shape)}")
    if frames.dim() != 3:
        raise ValueError(f"`frames` must be [B, M, D], got {tuple(frames.shape)}")
    B, D = text.shape
    if frames.shape[0] != B or frames.shape[2] != D:
        raise ValueError(
            f"`frames` must be [B, M, D] = [{B}, M, {D}] to match `text` [B, D] = {tuple(text.shape)}, "
            f"got {tuple(frames.shape)}"
        )
    if frames.shape[1] < 1:
        raise ValueError(f"`frames` needs M >= 1 frames per video, got M = {frames.shape[1]}")
    if B < 1:
        raise ValueError("`text` and `frames` need a batch of B >= 1 pairs, got B = 0")
    if isinstance(logit_scale, Tensor) and logit_scale.numel() != 1:
        shape = tuple(logit_scale.shape)
        raise ValueError(f"`logit_scale` must be a float or a one-element tensor, got shape {shape}")
    if lam < 0:
        raise ValueError(f"`lam` must be >= 0 (a covariance scale), got {lam}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"`chunk_size` must be None or >= 1, got {chunk_size}")


def _as_scale(logit_scale: Tensor | float, like: Tensor) -> Tensor:
    """logit_scale as a 0-dim tensor on ``like``'s device and dtype (keeps the autograd graph)."""
    if isinstance(logit_scale, Tensor):
        return logit_scale.reshape(()).to(device=like.device, dtype=like.dtype)
    return torch.tensor(float(logit_scale), device=like.device, dtype=like.dtype)


def gees_terms(
    text: Tensor,
    frames: Tensor,
    logit_scale: Tensor | float,
    lam: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample GEES terms L_t2v(i) and L_v2t(i) (docs/cret.md §4, ISDA-type bound [R]).

    Args:
        text: [B, D] caption embeddings (L2-normalised by the caller); text i matches video i.
        frames: [B, M, D] temporal frame features of the B videos (projected, L2-normalised by the caller).
        logit_scale: 1/tau, a float or a one-element tensor (may require grad).
        lam: covariance scale lambda >= 0; 1 gives the exact upper bound, 0 gives InfoNCE on the frame means.
        chunk_size: number of videos i whose [chunk, B, M] projections are formed at once; None = all B.

    Returns:
        (l_t2v, l_v2t), each [B]: the text->video bound for caption i and the video->text bound for video i.

    Raises:
        ValueError: if the shapes are not text [B, D] and frames [B, M, D] with matching B, D and M >= 1,
            or if ``logit_scale``, ``lam`` or ``chunk_size`` is invalid.
    """
    _check_inputs(text, frames, logit_scale, lam, chunk_size)
    B = frames.shape[0]  # text [B, D], frames [B, M, D] (checked above)
    scale = _as_scale(logit_scale, text)
    mu = frames.mean(dim=1)  # [B, D]      Gaussian mean per video
    dev = frames - mu[:, None, :]  # [B, M, D]   deviations; Sigma_j = dev_j^T dev_j / M (biased)
    s = scale * (text @ mu.T)  # [B, B]      s[i, j] = t_i . mu_j / tau

    # One pass over videos i: P[i, k, m] = t_k . dev_im  (no [B, B, D] difference tensor).
    chunk = B if chunk_size is None else chunk_size
    quad_rows, var_v2t_rows = [], []
    for start in range(0, B, chunk):
        stop = min(start + chunk, B)
        P = torch.einsum("kd,imd->ikm", text, dev[start:stop])  # [c, B, M]
        idx = torch.arange(start, stop, device=text.device)
        P_own = P[idx - start, idx]  # [c, M]    t_i . dev_im (the video's own caption)
        quad_rows.append(P.pow(2).mean(dim=-1))  # [c, B]    t_k^T Sigma_i t_k
        dP = P - P_own[:, None, :]  # [c, B, M]  (t_k - t_i) . dev_im
        var_v2t_rows.append(dP.pow(2).mean(dim=-1))  # [c, B]    (t_k - t_i)^T Sigma_i (t_k - t_i)
    quad = torch.cat(quad_rows, dim=0)  # [B, B]      quad[j, i] = t_i^T Sigma_j t_i
    var_v2t = torch.cat(var_v2t_rows, dim=0)  # [B, B]      var_v2t[i, k]

    half_lam_s2 = 0.5 * lam * scale * scale  # lam / (2 tau^2)
    s_pos = s.diagonal()  # [B]         t_i . mu_i / tau
    eye = torch.eye(B, dtype=torch.bool, device=text.device)

    # text -> video: var of t_i.(v_j - v_i) is t_i^T (Sigma_i + Sigma_j) t_i = quad[i, i] + quad[j, i].
    q_t2v = quad.T  # [B, B]      q_t2v[i, j] = t_i^T Sigma_j t_i
    var_t2v = q_t2v + q_t2v.diagonal()[:, None]  # [B, B]
    logit_t2v = s - s_pos[:, None] + half_lam_s2 * var_t2v  # [B, B]
    logit_t2v = logit_t2v.masked_fill(eye, 0.0)  # positive: v_i - v_i = 0 exactly -> exp(0) = 1
    l_t2v = torch.logsumexp(logit_t2v, dim=1)  # [B]

    # video -> text (ISDA): a_k = t_k - t_i, mean a_k . mu_i / tau, variance a_k^T Sigma_i a_k; k = i gives 0.
    logit_v2t = s.T - s_pos[:, None] + half_lam_s2 * var_v2t  # [B, B]      s.T[i, k] = t_k . mu_i / tau
    l_v2t = torch.logsumexp(logit_v2t, dim=1)  # [B]
    return l_t2v, l_v2t


def gees_loss(
    text: Tensor,
    frames: Tensor,
    logit_scale: Tensor | float,
    lam: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """Two-sided GEES loss L_GEES = mean_i 1/2 [L_t2v(i) + L_v2t(i)] (docs/cret.md §4 [R]).

    Args:
        text: [B, D] caption embeddings (L2-normalised by the caller); text i matches video i.
        frames: [B, M, D] temporal frame features (projected, L2-normalised by the caller).
        logit_scale: 1/tau, a float or a one-element tensor (may require grad).
        lam: covariance scale lambda >= 0 (1 = exact bound, 0 = ``mean_nce_loss``).
        chunk_size: videos per chunk of the [chunk, B, M] intermediates; None = all B. Same value either way.

    Returns:
        Scalar loss tensor.

    Raises:
        ValueError: on mismatched shapes or invalid options (see ``gees_terms``).

    Example (identical frames: zero covariance, so GEES equals InfoNCE on the means):
        >>> t = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
        >>> h = t.flip(0)[:, None, :].expand(4, 3, 8)
        >>> bool(torch.allclose(gees_loss(t, h, 10.0), mean_nce_loss(t, h, 10.0)))
        True
    """
    l_t2v, l_v2t = gees_terms(text, frames, logit_scale, lam=lam, chunk_size=chunk_size)
    return 0.5 * (l_t2v + l_v2t).mean()


def mean_nce_loss(text: Tensor, frames: Tensor, logit_scale: Tensor | float) -> Tensor:
    """The ``nce`` alternative: symmetric InfoNCE on logits = logit_scale * text @ mu.T, mu = frame mean.

    Equals ``gees_loss(..., lam=0)``.

    Args:
        text: [B, D] caption embeddings; text i matches video i.
        frames: [B, M, D] temporal frame features; only their mean over M is used.
        logit_scale: 1/tau, a float or a one-element tensor.

    Returns:
        Scalar loss 1/2 [CE(logits, diag) + CE(logits^T, diag)].

    Raises:
        ValueError: on mismatched shapes (see ``gees_terms``).
    """
    _check_inputs(text, frames, logit_scale, 0.0, None)
    B = text.shape[0]
    mu = frames.mean(dim=1)  # [B, D]
    logits = _as_scale(logit_scale, text) * (text @ mu.T)  # [B, B]
    target = torch.arange(B, device=text.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
