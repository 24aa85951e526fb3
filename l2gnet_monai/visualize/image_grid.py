# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""An engine's (preprocessed) image brought back into the voxel grid of its label, for pictures."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["image_in_label_grid"]

logger = logging.getLogger(__name__)


def image_in_label_grid(
    output: Mapping[str, Any], label_shape: Sequence[int], image_transform: Callable | None = None
) -> np.ndarray | None:
    """The first channel of ``output["image"]`` in the voxel grid of the label, as a numpy array (or ``None``).

    Args:
        output: one decollated engine output with ``"image"`` (channel-first, possibly preprocessed).
        label_shape: the label map's spatial shape.
        image_transform: the preprocessing to invert (MONAI ``Invertd``) when the image carries its trace.

    Returns:
        ``(H, W, D)`` intensities, or ``None`` when there is no image or it cannot be brought to the grid.
    """
    image = output.get("image")
    if not isinstance(image, torch.Tensor):
        return None
    if image_transform is not None and getattr(image, "applied_operations", None):
        from monai.transforms import Invertd

        inverter = Invertd(keys="image", transform=image_transform, orig_keys="image", nearest_interp=False)
        try:
            image = inverter({"image": image.detach().cpu()})["image"]
        except Exception as err:  # a picture is not worth failing an evaluation for: fall back to the shape checks
            logger.warning("could not invert the preprocessing of the image for the pictures (%s).", err)
    array = image.detach().cpu().float()[0]
    shape = tuple(int(s) for s in label_shape)
    if tuple(array.shape) == shape:
        return array.numpy()
    if array.ndim == 3 and array.shape[-1] == shape[-1]:  # only the in-plane size differs (Resized)
        resized = torch.nn.functional.interpolate(
            array.permute(2, 0, 1)[None], size=shape[:2], mode="bilinear", align_corners=False
        )
        return resized[0].permute(1, 2, 0).numpy()
    return None
