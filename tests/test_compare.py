"""Paired statistics and the budget test on constructed cases with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vtrbench.report.compare import Outcomes, compare, comparisons, hierarchical_bootstrap, p_beats, verdict
from vtrbench.report.convergence import convergence


def _simulate(rng: np.random.Generator, p_a: float, p_b: float, seeds: int, queries: int, seed_sd: float) -> tuple:
    """Hit (1) / miss (0) outcomes: each query has its own difficulty (shared by A and B: the pairing), each seed
    its own offset (the training-run spread)."""
    difficulty = rng.normal(0, 1.0, queries)

    def draw(p: float) -> np.ndarray:
        logit = np.log(p / (1 - p)) + difficulty[None, :] + rng.normal(0, seed_sd, (seeds, 1))
        return (rng.random((seeds, queries)) < 1 / (1 + np.exp(-logit))).astype(float)

    return draw(p_a), draw(p_b)


def _true_diff(p_a: float, p_b: float, seed_sd: float, n: int = 400_000) -> float:
    """The population difference of the simulation above (large-sample Monte Carlo)."""
    rng = np.random.default_rng(123)
    d, s = rng.normal(0, 1.0, n), rng.normal(0, seed_sd, n)

    def mean(p: float) -> float:
        return float((1 / (1 + np.exp(-(np.log(p / (1 - p)) + d + s)))).mean())

    return mean(p_a) - mean(p_b)


def _intervals(seed: int, p_a: float, p_b: float, trials: int = 80) -> list[tuple[float, float]]:
    """95 % intervals of ``trials`` simulated experiments (5 seeds x 400 queries, seed sd 0.2)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        a, b = _simulate(rng, p_a, p_b, seeds=5, queries=400, seed_sd=0.2)
        _, low, high = hierarchical_bootstrap(a, b, resamples=300, seed=int(rng.integers(1 << 30)))
        out.append((low, high))
    return out


def test_bootstrap_covers_a_known_difference():
    truth = _true_diff(0.6, 0.5, 0.2)
    covered = np.mean([low <= truth <= high for low, high in _intervals(0, 0.6, 0.5)])
    assert covered >= 0.88  # nominal 95 %: a percentile bootstrap on 5 seeds is a little narrow


def test_bootstrap_rarely_claims_a_difference_that_is_not_there():
    claimed = np.mean([low > 0 or high < 0 for low, high in _intervals(1, 0.5, 0.5)])
    assert claimed <= 0.12


def test_a_large_difference_is_resolved_and_the_seed_spread_widens_the_interval():
    rng = np.random.default_rng(2)
    a, b = _simulate(rng, 0.8, 0.4, seeds=3, queries=1000, seed_sd=0.0)
    diff, low, high = hierarchical_bootstrap(a, b, resamples=500)
    assert low > 0.2 and diff == pytest.approx(a.mean() - b.mean())
    noisy_a, noisy_b = a.copy(), b.copy()
    noisy_a[0] = 0.0  # one seed of A collapsed: the interval must widen to carry it
    _, low2, high2 = hierarchical_bootstrap(noisy_a, noisy_b, resamples=500)
    assert high2 - low2 > 3 * (high - low)


def test_paired_seeds_resolve_a_difference_that_a_shared_seed_effect_hides():
    """A re-ranker and its first stage share each seed's run: the per-seed difference is what varies."""
    rng = np.random.default_rng(4)
    seed_effect = np.array([-0.4, 0.0, 0.4])[:, None]  # seeds differ a lot, the same way for both methods
    base = rng.random((1, 1000))
    b = (base < 0.45 + seed_effect).astype(float)
    a = np.maximum(b, (rng.random((3, 1000)) < 0.08).astype(float))  # A fixes ~8 % of B's misses, every seed
    _, low_paired, _ = hierarchical_bootstrap(a, b, resamples=500, paired_seeds=True)
    _, low_independent, _ = hierarchical_bootstrap(a, b, resamples=500)
    assert low_paired > 0 > low_independent
    with pytest.raises(ValueError, match="paired seeds"):
        hierarchical_bootstrap(a, b[:2], paired_seeds=True)


def test_p_beats_over_seed_pairs():
    a = np.array([[1.0, 1.0], [0.0, 0.0]])  # seed means 1.0, 0.0
    b = np.array([[0.5, 0.5], [0.0, 0.0]])  # seed means 0.5, 0.0
    # pairs (1, .5) win, (1, 0) win, (0, .5) lose, (0, 0) tie -> (1 + 1 + 0 + 0.5) / 4
    assert p_beats(a, b) == 0.625


def test_comparisons_pair_only_common_queries_and_verdicts():
    a = Outcomes(np.array([[100.0, 100.0, 0.0, 100.0]]), np.array([0, 1, 2, 3]))
    b = Outcomes(np.array([[0.0, 0.0, 0.0]]), np.array([1, 2, 3]))  # a subset-scored method: 3 queries
    row = compare(a, b)
    assert row["queries"] == 3 and row["diff"] == pytest.approx(200 / 3)
    table = comparisons({"a": {"t2v_R@1": a}, "b": {"t2v_R@1": b}})
    assert list(table.columns[:3]) == ["method_a", "method_b", "metric"] and len(table) == 1
    resolved = pd.Series({"method_a": "a", "method_b": "b", "diff": 5.0, "ci_low": 1.0, "ci_high": 9.0, "seeds": 3})
    assert verdict(resolved).startswith("a beats b by +5.0")
    unresolved = resolved.copy()
    unresolved["ci_low"] = -1.0
    assert verdict(unresolved).startswith("no difference resolved between a and b with 3 seeds")


def _val_folder(root, name: str, hits: np.ndarray, steps: int):
    from vtrbench import resultfiles

    folder = root / name / "val"
    ranks = pd.DataFrame({"direction": "t2v", "query": np.arange(len(hits)), "rank": np.where(hits, 1, 5)})
    resultfiles.write_parquet(ranks, folder / "ranks.parquet")
    recall = {"R@1": 0, "R@5": 0, "R@10": 0, "MdR": 1, "MnR": 1}
    resultfiles.write_json(folder / "metrics.json", {"method": name, "seed": 0, "t2v": recall, "v2t": recall,
                                                     "train_steps": steps})  # fmt: skip
    return folder


def test_budget_test_flags_a_method_that_gains_and_not_one_that_does_not(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.random(400) < 0.5
    gains = base | (rng.random(400) < 0.3)  # the longer run of "slow" fixes ~30 % of its misses
    same = base ^ (rng.random(400) < 0.02)  # the longer run of "done" flips ~2 % of queries either way
    pairs = [
        ("slow", _val_folder(tmp_path, "slow1x", base, 100), _val_folder(tmp_path, "slow2x", gains, 200)),
        ("done", _val_folder(tmp_path, "done1x", base, 100), _val_folder(tmp_path, "done2x", same, 200)),
    ]
    table = convergence(pairs, tmp_path / "convergence.csv").set_index("method")
    assert bool(table.loc["slow", "still_improving"]) and table.loc["slow", "gain"] > 10
    assert not bool(table.loc["done", "still_improving"])
    assert table.loc["slow", "steps"] == 100 and table.loc["slow", "steps_long"] == 200
    assert (tmp_path / "convergence.csv").exists()
