# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Class scores back to a label map in the original image space, without the full-resolution probability map.

:class:`InvertToLabelsd` does ``Activationsd(softmax=True)`` -> ``Invertd`` -> ``AsDiscreted(argmax=True)`` in one
step: the in-plane resize back and the argmax run per chunk of slices
(:meth:`~l2gnet_monai.transforms.slice_resize.ResizeSlices.inverse_to_labels`); the steps inverted after the resize
(reorientation, flips, crops, pads) only move voxels and run on the label map. On 2 CPU cores, 9 classes back to
512 x 512 x 150: 1.0 s and 470 MiB against 4.9-8.8 s and 2.9 GiB (``docs/benchmarks.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from contextlib import nullcontext
from copy import deepcopy
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Activations, AsDiscrete, Compose, Invertd, InvertibleTransform, MapTransform
from monai.transforms.utils import allow_missing_keys_mode
from monai.utils import TraceKeys, ensure_tuple_rep

from l2gnet_monai.transforms.slice_resize import ResizeSlices, ResizeSlicesd

__all__ = ["VOXEL_MOVING_TRANSFORMS", "InvertToLabelsd"]

logger = logging.getLogger(__name__)

#: Transforms whose inverse only moves voxels (no interpolation): inverting them on a label map gives the argmax of
#: inverting the probabilities.
VOXEL_MOVING_TRANSFORMS = frozenset(
    {
        "Orientation",
        "Flip",
        "Rotate90",
        "SpatialPad",
        "BorderPad",
        "DivisiblePad",
        "SpatialCrop",
        "CenterSpatialCrop",
        "CropForeground",
        "ResizeWithPadOrCrop",
    }
)


def _check_finite(scores: torch.Tensor, key: Hashable, case: Any) -> None:
    """Refuse class scores with NaN or Inf, naming the case (once per volume, at the network's resolution)."""
    # a sum is NaN or Inf when any value is (or, rarely, when finite values overflow: counted then): one pass without
    # a mask, about 20x cheaper than isfinite().all() on a 9-class volume
    if bool(torch.isfinite(scores.sum())):
        return
    bad = int(scores.numel() - torch.isfinite(scores).sum())
    if bad:
        raise FloatingPointError(
            f"InvertToLabelsd: the network's scores {key!r} for case {case or '(no filename_or_obj)'} hold {bad} "
            f"NaN or Inf values of {scores.numel()}: no labels written. Check the weights (a diverged training) "
            "or run in float32 (precision 'fp32') if reduced precision overflowed."
        )


class InvertToLabelsd(MapTransform):
    """The label map of class scores in the original image space: ``Activationsd(softmax=True)`` ->
    ``Invertd(transform, nearest_interp=False)`` -> ``AsDiscreted(argmax=True)`` in one transform, fused where
    the preprocessing allows.

    When the last step of the preprocessing's trace is a :class:`ResizeSlicesd` and every earlier traced step only
    moves voxels (``Orientationd``, flips, 90-degree rotations, crops, pads: :data:`VOXEL_MOVING_TRANSFORMS`), the
    softmax, the in-plane resize back and the argmax run together a chunk of slices at a time
    (:meth:`ResizeSlices.inverse_to_labels`), and the other steps are inverted on the label map, which gives the
    same labels (up to float rounding of the interpolation) without the full-resolution probability map: for 9
    classes back to 512 x 512 x 150, 1.4 GB never allocated. Otherwise the three MONAI transforms run as they are.

    Args:
        keys: keys of the class scores ``(C, ...)`` in the preprocessed space (the network's output).
        transform: the preprocessing whose trace the scores share (the ``Compose`` applied to ``orig_keys``).
        orig_keys: keys of the preprocessed images carrying that trace, one per key or one for all.
        softmax: the scores are logits: softmax over channels first (``False`` for probabilities).
        dtype: dtype of the label map (``AsDiscreted``'s float32 by default).
        allow_missing_keys: don't raise for absent keys.

    Returns (per key):
        ``(1, X, Y, Z)`` label map, a ``MetaTensor`` with the original image's affine and metadata.

    Raises:
        FloatingPointError: the scores hold NaN or Inf (a diverged network, an overflow in reduced precision):
            the argmax would make them a class (background) without a word; the message names the case.
    """

    def __init__(
        self,
        keys: KeysCollection,
        transform: InvertibleTransform,
        orig_keys: KeysCollection = "image",
        softmax: bool = True,
        dtype: torch.dtype | None = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not isinstance(transform, InvertibleTransform):
            raise ValueError(f"InvertToLabelsd: transform must be invertible (a Compose), got {type(transform)}.")
        self.transform = transform
        self.orig_keys = ensure_tuple_rep(orig_keys, len(self.keys))
        self.softmax = softmax
        self.dtype = dtype
        steps = transform.flatten().transforms if isinstance(transform, Compose) else (transform,)
        self._resizers = {id(t.resizer): t for t in steps if isinstance(t, ResizeSlicesd)}
        # the other invertible steps, inverted in reverse order (not a new Compose: that would reseed their RNGs)
        self._rest = tuple(t for t in steps if isinstance(t, InvertibleTransform) and not isinstance(t, ResizeSlicesd))
        self._fallback_logged = False

    def _fusable(self, operations: Sequence[Mapping]) -> ResizeSlicesd | None:
        """The :class:`ResizeSlicesd` that applied the last traced step, if the fused path gives the same labels."""
        last = operations[-1] if operations else {}
        resized = self._resizers.get(last.get(TraceKeys.ID))
        if resized is None and last.get(TraceKeys.CLASS_NAME) == ResizeSlices.__name__ and len(self._resizers) == 1:
            # recorded in a DataLoader worker started with "spawn", whose copy of the transform had another id;
            # MONAI's own check then matches by class name too
            resized = next(iter(self._resizers.values()))
        if resized is None:
            reason = "its last traced step is not a ResizeSlicesd of this transform"
        else:
            interpolating = sorted(
                {str(op.get(TraceKeys.CLASS_NAME)) for op in operations[:-1]} - VOXEL_MOVING_TRANSFORMS
            )
            if not interpolating:
                return resized
            reason = f"{', '.join(interpolating)} in its trace may interpolate"
        if not self._fallback_logged:
            logger.info("InvertToLabelsd: inverting the full probability map (%s).", reason)
            self._fallback_logged = True
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, orig_key in self.key_iterator(d, self.orig_keys):
            orig = d.get(orig_key)
            if not isinstance(orig, MetaTensor):
                raise ValueError(
                    f"InvertToLabelsd: {orig_key!r} must be the preprocessed image as a MetaTensor (it carries the "
                    f"trace to invert), got {type(orig).__name__}; keep track_meta on in the preprocessing."
                )
            scores = d[key].detach()
            scores = MetaTensor(scores.as_tensor() if isinstance(scores, MetaTensor) else scores)
            _check_finite(scores, key, orig.meta.get("filename_or_obj"))
            scores.applied_operations = deepcopy(orig.applied_operations)
            scores.meta = deepcopy(orig.meta)
            resized = self._fusable(scores.applied_operations)
            if resized is None:
                probabilities = Activations(softmax=self.softmax)(scores)
                inverted = Invertd(key, self.transform, orig_keys=orig_key, nearest_interp=False)(
                    {key: probabilities, orig_key: orig}
                )[key]
                labels = AsDiscrete(argmax=True)(inverted)
            else:
                labels = resized.resizer.inverse_to_labels(scores, softmax=self.softmax)
                inverted = {orig_key: labels}
                for step in reversed(self._rest):
                    with allow_missing_keys_mode(step) if isinstance(step, MapTransform) else nullcontext():
                        inverted = step.inverse(inverted)
                labels = inverted[orig_key]
            d[key] = labels.to(self.dtype) if self.dtype is not None else labels
        return d
