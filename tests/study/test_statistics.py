"""The study's statistics against independent references: exact Wilcoxon by enumeration, the normal interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from l2gnet_monai.study.statistics import mean_sd, paired_bootstrap_ci, paired_comparison, wilcoxon_p


def exact_wilcoxon_p(differences: list[float]) -> float:
    """Two-sided exact p-value by enumerating every sign pattern (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(differences))) + 1
    observed = sum(r for r, d in zip(ranks, differences) if d > 0)
    n = len(differences)
    totals = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=n)]
    mean = n * (n + 1) / 4
    extreme = sum(abs(t - mean) >= abs(observed - mean) - 1e-9 for t in totals)
    return extreme / len(totals)


def test_wilcoxon_matches_the_exact_distribution():
    differences = [0.8, -0.3, 1.7, 2.2, 0.05, 1.1, -0.6, 0.9]
    assert wilcoxon_p(differences) == pytest.approx(exact_wilcoxon_p(differences), rel=1e-9)
    assert wilcoxon_p([0.0, 0.0, 0.0]) is None  # nothing to test


def test_bootstrap_interval_agrees_with_the_normal_interval_for_a_large_sample():
    rng = np.random.default_rng(3)
    differences = rng.normal(0.02, 0.05, size=400)
    low, high = paired_bootstrap_ci(differences, resamples=20000, seed=1)
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(differences.size)
    assert low == pytest.approx(differences.mean() - half_width, abs=5e-4)
    assert high == pytest.approx(differences.mean() + half_width, abs=5e-4)
    assert paired_bootstrap_ci(differences, seed=1) == paired_bootstrap_ci(differences, seed=1)  # seeded
    assert paired_bootstrap_ci([0.3] * 7) == (pytest.approx(0.3), pytest.approx(0.3))


def test_paired_comparison_and_spread():
    result = paired_comparison([0.9, 0.8, 0.7, 0.95], [0.85, 0.8, 0.6, 0.9])
    assert result["num_cases"] == 4 and result["mean_difference"] == pytest.approx(0.05)
    assert result["ci_low"] <= 0.05 <= result["ci_high"]
    with pytest.raises(ValueError, match="3 scores against 2"):
        paired_comparison([1, 2, 3], [1, 2])
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([4.0]) == (4.0, None)
