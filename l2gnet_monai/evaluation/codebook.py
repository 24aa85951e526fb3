# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""How healthy a codebook was over a whole evaluation, in numbers that ``summary.json`` records for every run.

From the counts that :class:`~l2gnet_monai.networks.explain.CodeUsageRecorder` gathers while the evaluation runs:
how many bottleneck positions used each code, and how many pixels of each predicted class each code served.
A collapsed codebook shows as few codes used and a low perplexity; a codebook that does not tell the classes
apart shows as classes that share their dominant code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from l2gnet_monai.visualize.codebook import perplexity

__all__ = ["codebook_health"]


def codebook_health(
    class_code_counts: np.ndarray,
    class_names: Mapping[int, str] | None = None,
    code_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Codes used, perplexity overall and per class, each class's dominant code and which classes share one.

    Args:
        class_code_counts: ``(C, K)`` pixel counts, row ``c`` the code histogram of the pixels predicted as class
            ``c`` (background included).
        class_names: ``{class index: name}``; unnamed classes are called ``"background"`` (index 0) or
            ``"class <c>"``.
        code_counts: ``(K,)`` bottleneck positions per code over the whole evaluation; ``None``: the pixel counts
            summed over the classes stand in.

    Returns:
        ``{"codebook_size": K, "codes_used": int, "usage": codes_used / K, "perplexity": float, "per_class":
        {name: {"pixels", "codes_used", "perplexity", "dominant_code", "dominant_share"}}, "shared_dominant_codes":
        {str(code): [class names]}}``; classes never predicted are left out of ``per_class``, and
        ``shared_dominant_codes`` lists only the codes that dominate two or more classes.
    """
    counts = np.asarray(class_code_counts, dtype=np.int64)
    if counts.ndim != 2:
        raise ValueError(f"codebook_health: class_code_counts must be (classes, codes), got shape {counts.shape}.")
    overall = counts.sum(0) if code_counts is None else np.asarray(code_counts, dtype=np.int64)
    names = dict(class_names or {})
    per_class: dict[str, dict[str, Any]] = {}
    dominated: dict[int, list[str]] = {}
    for c, row in enumerate(counts):
        pixels = int(row.sum())
        if pixels == 0:
            continue
        name = names.get(c, "background" if c == 0 else f"class {c}")
        dominant = int(np.argmax(row))
        per_class[name] = {
            "pixels": pixels,
            "codes_used": int((row > 0).sum()),
            "perplexity": perplexity(row),
            "dominant_code": dominant,
            "dominant_share": float(row[dominant] / pixels),
        }
        dominated.setdefault(dominant, []).append(name)
    used = int((overall > 0).sum())
    size = int(counts.shape[1])
    return {
        "codebook_size": size,
        "codes_used": used,
        "usage": used / size if size else 0.0,
        "perplexity": perplexity(overall),
        "per_class": per_class,
        "shared_dominant_codes": {str(code): group for code, group in sorted(dominated.items()) if len(group) > 1},
    }
