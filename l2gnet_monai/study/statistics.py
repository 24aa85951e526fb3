# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""How sure a study is: spread over folds, and per-case paired differences against the reference variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["mean_sd", "paired_bootstrap_ci", "wilcoxon_p", "paired_comparison"]


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``; ``None`` for a single value)."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise ValueError("mean_sd: no values.")
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def paired_bootstrap_ci(
    differences: Sequence[float], confidence: float = 0.95, resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of paired differences.

    The cases are resampled with replacement ``resamples`` times (seeded: the same data give the same interval);
    the interval spans the central ``confidence`` of the resampled means.

    Args:
        differences: per-case differences (variant minus reference, same cases).
        confidence: coverage of the interval.
        resamples: bootstrap resamples.
        seed: the generator's seed.

    Returns:
        ``(low, high)``.
    """
    array = np.asarray(list(differences), dtype=float)
    if array.size == 0:
        raise ValueError("paired_bootstrap_ci: no differences.")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(resamples, array.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of the Wilcoxon signed-rank test that the differences are centred on 0.

    Zero differences are dropped (Wilcoxon's convention); ``None`` when none is left. SciPy picks the exact
    distribution for small samples without ties and the normal approximation otherwise.
    """
    from scipy.stats import wilcoxon

    array = np.asarray(list(differences), dtype=float)
    if not np.any(array != 0):
        return None
    return float(wilcoxon(array, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_comparison(variant: Sequence[float], reference: Sequence[float], **bootstrap: Any) -> dict[str, Any]:
    """Per-case paired differences ``variant - reference``: their mean, bootstrap CI and Wilcoxon p-value.

    Args:
        variant: per-case scores of the variant.
        reference: the reference's scores of the same cases, in the same order.
        bootstrap: arguments of :func:`paired_bootstrap_ci`.

    Returns:
        ``{"num_cases", "mean_difference", "ci_low", "ci_high", "wilcoxon_p"}``.
    """
    if len(variant) != len(reference):
        raise ValueError(f"paired_comparison: {len(variant)} scores against {len(reference)} of the reference.")
    differences = np.asarray(variant, dtype=float) - np.asarray(reference, dtype=float)
    low, high = paired_bootstrap_ci(differences, **bootstrap)
    p = wilcoxon_p(differences)
    return {
        "num_cases": int(differences.size),
        "mean_difference": float(differences.mean()),
        "ci_low": low,
        "ci_high": high,
        "wilcoxon_p": None if p is None or math.isnan(p) else p,
    }
