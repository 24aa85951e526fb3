# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The Synapse multi-organ CT protocol of TransUNet and the paper: cases, labels, intensities, dataset description."""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.labels import SYNAPSE_LABELS as _SYNAPSE_LABELS

__all__ = [
    "SYNAPSE_TRAIN_CASES",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_LABELS",
    "BTCV_LABELS",
    "BTCV_TO_SYNAPSE",
    "TRANSUNET_HU_RANGE",
    "SOURCE_NOTE",
    "DESCRIPTION",
    "REFERENCE",
    "btcv_to_synapse",
    "transunet_to_hu",
    "split_cases",
]

logger = logging.getLogger(__name__)

#: Training cases of the TransUNet protocol (``lists/lists_Synapse/train.txt``).
SYNAPSE_TRAIN_CASES = (
    "0005", "0006", "0007", "0009", "0010", "0021", "0023", "0024", "0026",
    "0027", "0028", "0030", "0031", "0033", "0034", "0037", "0039", "0040",
)  # fmt: skip
#: Test cases of the TransUNet protocol (``lists/lists_Synapse/test_vol.txt``).
SYNAPSE_TEST_CASES = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")

#: The paper's classes (TransUNet's 8 organs plus background).
SYNAPSE_LABELS = _SYNAPSE_LABELS

#: The 13 labels of the BTCV raw release.
BTCV_LABELS = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior vena cava",
    10: "portal vein and splenic vein",
    11: "pancreas",
    12: "right adrenal gland",
    13: "left adrenal gland",
}

#: BTCV label -> paper label; BTCV labels not listed (esophagus, IVC, veins, adrenal glands) become background.
BTCV_TO_SYNAPSE = {1: 1, 2: 2, 3: 3, 4: 4, 6: 5, 7: 6, 8: 7, 11: 8}

#: The HU window TransUNet clipped to before scaling to [0, 1].
TRANSUNET_HU_RANGE = (-125.0, 275.0)

_LUT = np.zeros(max(BTCV_LABELS) + 1, dtype=np.uint8)
for _k, _v in BTCV_TO_SYNAPSE.items():
    _LUT[_k] = _v

SOURCE_NOTE = "TransUNet protocol (Chen et al. 2021, lists/lists_Synapse): 18 training / 12 test cases, no validation"
DESCRIPTION = (
    "Synapse multi-organ abdominal CT (BTCV, MICCAI 2015 Multi-Atlas Abdomen Labeling Challenge) in the TransUNet "
    "protocol: 18 training and 12 test volumes, 8 organs. The protocol has no validation set, so 'validation' is "
    "empty; labels of the test volumes are included for evaluation."
)
REFERENCE = "https://www.synapse.org/#!Synapse:syn3193805/wiki/217789"


def btcv_to_synapse(label: np.ndarray) -> np.ndarray:
    """Map a BTCV label map (0..13) to the paper's 8 organs (0..8) by :data:`BTCV_TO_SYNAPSE`.

    Args:
        label: integer label map with values in 0..13.

    Returns:
        uint8 label map with values in 0..8.
    """
    return _LUT[np.asarray(label, dtype=np.intp)]


def transunet_to_hu(x: np.ndarray) -> np.ndarray:
    """Map TransUNet's [0, 1] intensities back to HU: ``x * 400 - 125`` (computed in float64, returned as float32).

    The bundle's window ``(hu + 125) / 400`` then gives ``x`` back to float32 precision.

    Args:
        x: intensities in [0, 1].
    """
    lo, hi = TRANSUNET_HU_RANGE
    return (np.asarray(x, dtype=np.float64) * (hi - lo) + lo).astype(np.float32)


def split_cases(
    train_found: Iterable[str], test_found: Iterable[str], allow_missing: bool, where: str
) -> tuple[list[str], list[str], list[str]]:
    """Assign the found cases to the protocol's splits.

    Returns:
        (present training cases, present test cases, missing protocol cases); missing cases are an error unless
        ``allow_missing``.
    """
    train_set, test_set = set(train_found), set(test_found)
    train = [c for c in SYNAPSE_TRAIN_CASES if c in train_set]
    test = [c for c in SYNAPSE_TEST_CASES if c in test_set]
    missing_train = [c for c in SYNAPSE_TRAIN_CASES if c not in train_set]
    missing_test = [c for c in SYNAPSE_TEST_CASES if c not in test_set]
    missing = missing_train + missing_test
    if missing:
        text = "; ".join(
            f"{len(m)} {what} case(s): {', '.join(m)}"
            for what, m in (("training", missing_train), ("test", missing_test))
            if m
        )
        if not allow_missing:
            raise DatasetError(
                f"cases of the TransUNet protocol missing in {where}: {text} "
                "(use allow_missing to convert a partial download)"
            )
        logger.warning("allow_missing: cases missing and left out: %s", text)
    return train, test, missing
