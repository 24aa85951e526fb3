# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""How many codes a model uses on a slice, per class, and whether its codebook has collapsed, in words.

The vector quantizer gives each bottleneck position one of ``K`` codes. On one slice there are ``n`` positions, so
at most ``min(K, n)`` codes can be in use; the perplexity ``exp(H)`` of the code histogram is the number of
equally used codes with the same spread. :func:`codebook_summary` reports both, the codes each predicted class
uses (a pixel's code is its position's, :func:`~l2gnet_monai.networks.explain.codes_to_pixels`), and calls the
codebook *collapsed* when its perplexity is under :data:`COLLAPSE_SHARE` of what the slice allows (and under 2 in
any case), or when two classes are served mostly by the same code (the codes do not tell them apart).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from l2gnet_monai.networks.explain import codes_to_pixels

__all__ = ["COLLAPSE_SHARE", "perplexity", "codebook_summary"]

#: A slice whose code perplexity is under this share of ``min(K, positions)`` has a collapsed codebook.
COLLAPSE_SHARE = 0.25


def perplexity(counts: np.ndarray) -> float:
    """``exp`` of the entropy of a histogram: the number of equally used codes with the same spread (0 if empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        return 0.0
    probs = counts[counts > 0] / counts.sum()
    return float(np.exp(-(probs * np.log(probs)).sum()))


def codebook_summary(
    codes: np.ndarray,
    pred: np.ndarray,
    codebook_size: int,
    class_names: Mapping[int, str],
    stride: int = 16,
    pixel_mm: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Code usage of one slice, overall and per predicted class, with a verdict on collapse.

    Args:
        codes: ``(h, w)`` code index of each bottleneck position.
        pred: ``(H, W)`` predicted label map of the slice (same orientation as ``codes``).
        codebook_size: ``K``, the quantizer's number of codes.
        class_names: ``{class index: name}`` of the foreground classes.
        stride: the bottleneck's output stride (pixels per code along each axis).
        pixel_mm: ``(mm, mm)`` pixel spacing of the slice along its two axes, to say how much tissue a code covers.

    Returns:
        ``{"used", "codebook_size", "positions", "perplexity", "collapsed": bool, "per_class": {name: {"codes",
        "dominant", "share"}}, "shared": [(name, name, code)], "text": str}``; ``text`` says it all in a few lines.
    """
    codes = np.asarray(codes).astype(np.int64)
    counts = np.bincount(codes.ravel(), minlength=int(codebook_size))
    used, positions = int((counts > 0).sum()), int(codes.size)
    spread = perplexity(counts)
    capacity = min(int(codebook_size), positions)
    pixel_codes = codes_to_pixels(torch.as_tensor(codes)[None], list(np.shape(pred)), stride)[0].numpy()
    per_class: dict[str, dict[str, Any]] = {}
    dominant: dict[str, int] = {}
    for k, name in class_names.items():
        mask = np.asarray(pred) == int(k)
        if int(k) == 0 or not mask.any():
            continue
        class_counts = np.bincount(pixel_codes[mask], minlength=int(codebook_size))
        top = int(np.argmax(class_counts))
        per_class[str(name)] = {
            "codes": int((class_counts > 0).sum()),
            "dominant": top,
            "share": float(class_counts[top] / class_counts.sum()),
        }
        dominant[str(name)] = top
    names = list(dominant)
    shared = [(a, b, dominant[a]) for i, a in enumerate(names) for b in names[i + 1 :] if dominant[a] == dominant[b]]
    collapsed = spread < max(2.0, COLLAPSE_SHARE * capacity) or bool(shared)
    size = f"{stride} px"
    if pixel_mm is not None:
        size += f", {stride * pixel_mm[0]:.0f} x {stride * pixel_mm[1]:.0f} mm"
    lines = [
        f"{positions} bottleneck positions ({' x '.join(str(s) for s in codes.shape)}, one code per {size}); "
        f"{used} of {codebook_size} codes in use, perplexity {spread:.1f} (at most {capacity} on this slice).",
    ]
    for name, info in per_class.items():
        lines.append(
            f"  {name}: {info['codes']} code(s), mostly code {info['dominant']} ({100 * info['share']:.0f} % of its "
            "pixels)"
        )
    if not per_class:
        lines.append("  no foreground class predicted on this slice.")
    if collapsed:
        reasons = []
        if spread < max(2.0, COLLAPSE_SHARE * capacity):
            reasons.append(f"the perplexity {spread:.1f} is under {100 * COLLAPSE_SHARE:.0f} % of the {capacity} codes "
                           "this slice could use")  # fmt: skip
        reasons += [f"{a} and {b} share their dominant code {code}" for a, b, code in shared]
        lines.append("WARNING: the codebook looks collapsed: " + "; ".join(reasons) + ". The codes tell little about "
                     "the anatomy; see docs/interpretability.md.")  # fmt: skip
    else:
        lines.append(
            "The codebook is not collapsed on this slice"
            + (": each class has a dominant code of its own." if len(per_class) > 1 else ".")
        )
    return {
        "used": used,
        "codebook_size": int(codebook_size),
        "positions": positions,
        "perplexity": spread,
        "collapsed": collapsed,
        "per_class": per_class,
        "shared": shared,
        "text": "\n".join(lines),
    }
