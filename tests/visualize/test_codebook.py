"""The code usage of a slice in words: codes in use, perplexity, codes per class, and a collapsed codebook flagged."""

from __future__ import annotations

import numpy as np
import pytest

from l2gnet_monai.visualize.codebook import codebook_summary, perplexity

NAMES = {1: "grey matter", 2: "white matter"}


def test_perplexity_counts_equally_used_codes() -> None:
    assert perplexity(np.array([5, 5, 5, 5, 0])) == pytest.approx(4.0)
    assert perplexity(np.array([9, 0, 0])) == pytest.approx(1.0)
    assert perplexity(np.zeros(3)) == 0.0


def test_classes_with_codes_of_their_own_are_not_called_collapsed() -> None:
    codes = np.arange(16).reshape(4, 4) % 8  # 8 codes, evenly used
    pred = np.zeros((8, 8), np.int64)
    pred[:4] = 1  # rows 0-3: positions of codes 0..3 at stride 2
    pred[4:] = 2  # rows 4-7: codes 0..7 too, but the dominant one differs
    codes[2:] += 8
    summary = codebook_summary(codes, pred, 64, NAMES, stride=2, pixel_mm=(1.0, 3.0))
    assert summary["used"] == 16 and summary["positions"] == 16 and not summary["collapsed"]
    assert summary["per_class"]["grey matter"]["dominant"] != summary["per_class"]["white matter"]["dominant"]
    assert "16 of 64 codes in use" in summary["text"] and "one code per 2 px, 2 x 6 mm" in summary["text"]
    assert "not collapsed" in summary["text"]


def test_a_collapsed_codebook_and_classes_sharing_a_code_are_flagged_in_words() -> None:
    codes = np.zeros((4, 4), np.int64)
    codes[0, 0] = 3
    pred = np.zeros((64, 64), np.int64)
    pred[:32], pred[32:] = 1, 2
    summary = codebook_summary(codes, pred, 512, NAMES)
    assert summary["collapsed"] and summary["used"] == 2
    assert summary["shared"] == [("grey matter", "white matter", 0)]
    assert "WARNING: the codebook looks collapsed" in summary["text"]
    assert "grey matter and white matter share their dominant code 0" in summary["text"]
