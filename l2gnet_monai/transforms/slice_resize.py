# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""In-plane resizing of a stack of slices, invertible, and its inversion straight to a label map.

A 2-D network sees a volume as slices across one axis (the plan's ``slice_axis``), so the bundle resizes volumes in
plane only (``spatial_size`` such as ``[224, 224, -1]``). MONAI's ``Resized`` does this with a 3-D interpolation
(``"bilinear"`` becomes trilinear) although the sliced axis keeps its size: twice the taps, and on the way back
(``Invertd`` of a 9-class probability map to 512 x 512 x 150: 354 M values, 1.4 GB) most of the whole volume
path's time outside the network. Here:

* :class:`ResizeSlices` / :class:`ResizeSlicesd`: the same result as ``Resize``/``Resized`` with that
  ``spatial_size`` (values and affine), computed by 2-D interpolation with the slices as the interpolation channels
  (one call, no copy of the volume); invertible (``Invertd``), recorded in ``applied_operations`` like ``Resize``.
* :meth:`ResizeSlices.inverse_to_labels`: the in-plane resize back and the argmax per chunk of slices, so the
  full-resolution probability map never exists; :class:`~l2gnet_monai.transforms.invert.InvertToLabelsd` uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    InvertibleTransform,
    MapTransform,
    TraceableTransform,
)
from monai.transforms.utils import scale_affine
from monai.utils import TraceKeys, TransformBackends, convert_to_tensor, ensure_tuple_rep

__all__ = ["SLICE_MODES", "volume_size", "resize_slices", "ResizeSlices", "ResizeSlicesd"]

logger = logging.getLogger(__name__)

#: 2-D interpolation modes of ``torch.nn.functional.interpolate`` that give, slice by slice, what the 3-D mode of
#: the same name gives when the sliced axis keeps its size.
SLICE_MODES = ("bilinear", "nearest", "nearest-exact", "area")


def volume_size(slice_size: Sequence[int], slice_axis: int) -> list[int]:
    """``ResizeSlices``'s ``spatial_size`` for volumes: ``slice_size`` in plane, the sliced axis kept (``-1``).

    Args:
        slice_size: ``(H, W)`` of the 2-D slices, in the order of the two remaining RAS axes.
        slice_axis: the RAS axis sliced across.
    """
    size = [int(s) for s in slice_size]
    if len(size) != 2 or slice_axis not in (0, 1, 2):
        raise ValueError(
            f"volume_size: slice_size needs 2 entries and slice_axis 0, 1 or 2; got {slice_size}, {slice_axis}."
        )
    return size[:slice_axis] + [-1] + size[slice_axis:]


def _first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(0)`` as ``uint8`` for ``(C, ...)`` scores with ``C <= 256``: the same index (the first of equal
    maxima), by a running maximum over the channels: element-wise passes, several times faster on CPU than torch's
    reduction over a non-innermost axis."""
    best = scores[0].clone()
    # in the memory layout of the scores (channels_last chunks): element-wise passes over mixed layouts are 2-3x slower
    labels = torch.zeros_like(best, dtype=torch.uint8)
    better = torch.empty_like(best, dtype=torch.bool)
    for channel in range(1, scores.shape[0]):
        torch.gt(scores[channel], best, out=better)
        torch.maximum(best, scores[channel], out=best)
        # channels come in increasing order: the latest winner is the largest label so far
        torch.maximum(labels, better.view(torch.uint8) * channel, out=labels)
    return labels


def resize_slices(
    img: torch.Tensor,
    slice_size: Sequence[int],
    slice_axis: int,
    mode: str = "bilinear",
    chunk_slices: int = 16,
    softmax: bool = False,
    argmax: bool = False,
) -> torch.Tensor:
    """Resize every slice of a channel-first volume in plane (2-D interpolation, the slices as interpolation channels).

    The volume is seen as ``(C, S, a, b)``: the channels as the batch and the ``S`` slices as the channels of
    ``torch.nn.functional.interpolate``, in ``channels_last`` memory when the slices are the innermost axis (as
    after ``LoadImaged``/``SliceInferer`` across the last axis), so that no transposed copy is made. A plain resize
    is one call; with ``argmax`` the slices go ``chunk_slices`` at a time, softmax'd (once, at the input size),
    interpolated and reduced to labels, so that only a chunk of the full-size channels ever exists.

    Args:
        img: ``(C, X, Y, Z)`` tensor.
        slice_size: the in-plane output size, the two axes other than ``slice_axis`` in order.
        slice_axis: spatial axis (0, 1 or 2) across which the volume is sliced; its size is kept.
        mode: 2-D interpolation mode, one of :data:`SLICE_MODES`.
        chunk_slices: slices interpolated together with ``argmax`` (bounds the working memory).
        softmax: apply a softmax over the channels first (class scores to probabilities).
        argmax: return the index of the largest channel instead of the channels (a label map).

    Returns:
        ``(C, X', Y', Z')`` float32, or ``(1, X', Y', Z')`` uint8 labels with ``argmax``; the sliced axis keeps its
        size. Same device as ``img``.
    """
    axis = slice_axis + 1
    channels = img.shape[0]
    if argmax and channels > 256:
        raise ValueError(f"resize_slices: argmax to uint8 labels needs at most 256 channels, got {channels}.")
    img = img.to(torch.float32)
    if softmax:
        img = torch.softmax(img, dim=0)
    stack = img.movedim(axis, 1)  # (C, S, a, b), a view
    layout = torch.channels_last if slice_axis == 2 else torch.contiguous_format
    align_corners = False if mode == "bilinear" else None
    size = tuple(int(s) for s in slice_size)
    if not argmax:
        resized = F.interpolate(
            stack.contiguous(memory_format=layout), size=size, mode=mode, align_corners=align_corners
        )
        return resized.movedim(1, axis).contiguous()
    out_spatial = list(size)
    out_spatial.insert(slice_axis, img.shape[axis])
    out = torch.empty((1, *out_spatial), dtype=torch.uint8, device=img.device)
    out_stack = out.movedim(axis, 1)
    chunk = max(1, int(chunk_slices))
    for start in range(0, stack.shape[1], chunk):
        part = stack[:, start : start + chunk].contiguous(memory_format=layout)
        part = F.interpolate(part, size=size, mode=mode, align_corners=align_corners)
        out_stack[:, start : start + chunk] = _first_argmax(part)[None]
    return out


def _check_volume(name: str, img: Any) -> None:
    shape = tuple(getattr(img, "shape", ()))
    if len(shape) != 4:
        raise ValueError(
            f"{name}: expected a channel-first 3-D volume (C, X, Y, Z), got shape {shape}; "
            "add EnsureChannelFirstd before it, or use Resized for 2-D images."
        )


class ResizeSlices(InvertibleTransform):
    """Resize a channel-first volume in plane only: ``Resize(spatial_size, mode)`` for a ``spatial_size`` that keeps
    one axis (``-1``), computed as 2-D interpolation with that axis folded into the batch.

    The result equals MONAI's ``Resize`` with the same arguments (``"bilinear"`` there is trilinear, whose weights
    along the kept axis are 1 and 0) up to float rounding, and so does the affine of a ``MetaTensor``; the operation
    is recorded in ``applied_operations`` so that ``Invertd`` (or :meth:`inverse`) resizes back in plane. Output is
    float32, as ``Resize``'s. Not lazy: the result is computed at once.

    Args:
        spatial_size: output spatial size with exactly one ``-1``: the axis across which the volume is sliced, kept
            (:func:`volume_size`, e.g. ``[224, 224, -1]``).
        mode: 2-D interpolation, one of ``"bilinear"`` (the image default), ``"nearest"`` (label maps),
            ``"nearest-exact"``, ``"area"``.
        chunk_slices: slices per chunk of :meth:`inverse_to_labels` (bounds its working memory); a plain resize
            interpolates all slices in one call.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, spatial_size: Sequence[int], mode: str = "bilinear", chunk_slices: int = 16) -> None:
        size = [int(s) for s in spatial_size]
        if len(size) != 3 or size.count(-1) != 1 or any(s == 0 or s < -1 for s in size):
            raise ValueError(
                f"{type(self).__name__}: spatial_size must have 3 entries, -1 at the sliced axis and positive in-plane "
                f"sizes (e.g. [224, 224, -1]), got {list(spatial_size)}."
            )
        if int(chunk_slices) < 1:
            raise ValueError(f"{type(self).__name__}: chunk_slices must be a positive integer, got {chunk_slices}.")
        self.spatial_size = size
        self.slice_axis = size.index(-1)
        self.slice_size = [s for s in size if s != -1]
        self.mode = self._check_mode(mode)
        self.chunk_slices = int(chunk_slices)

    def _check_mode(self, mode: str) -> str:
        if mode not in SLICE_MODES:
            raise ValueError(f"{type(self).__name__}: mode must be one of {SLICE_MODES}, got {mode!r}.")
        return mode

    def __call__(self, img: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """
        Args:
            img: ``(C, X, Y, Z)`` tensor or ``MetaTensor``.
            mode: interpolation for this call (default: ``self.mode``).

        Returns:
            ``(C, X', Y', Z')`` float32, the sliced axis unchanged; a ``MetaTensor`` with the scaled affine and
            this operation recorded when tracking metadata.
        """
        return self._resize(img, self._check_mode(mode or self.mode))

    def _resize(self, img: torch.Tensor, mode: str, softmax: bool = False, argmax: bool = False) -> torch.Tensor:
        _check_volume(type(self).__name__, img)
        img = convert_to_tensor(img, track_meta=get_track_meta())
        orig_size = [int(s) for s in img.shape[1:]]
        out_size = list(self.slice_size)
        out_size.insert(self.slice_axis, orig_size[self.slice_axis])
        meta_info = TraceableTransform.track_transform_meta(
            img,
            sp_size=out_size,
            affine=scale_affine(orig_size, out_size),
            extra_info={"mode": mode, "slice_axis": self.slice_axis},
            orig_size=orig_size,
            transform_info=self.get_transform_info(),
            lazy=False,
        )
        data = img.as_tensor() if isinstance(img, MetaTensor) else img
        if out_size == orig_size and not (softmax or argmax):
            resized = data.to(torch.float32, copy=True)
        elif out_size == orig_size and argmax and data.shape[0] <= 256:
            # no interpolation: the softmax keeps each voxel's order of the classes, so the argmax of the scores is
            # the label (the first of equal maxima, as in resize_slices)
            resized = _first_argmax(data)[None]
        else:
            resized = resize_slices(data, self.slice_size, self.slice_axis, mode, self.chunk_slices, softmax, argmax)
        return MetaTensor(resized).copy_meta_from(meta_info) if isinstance(img, MetaTensor) else resized

    def _inverse_resizer(self, transform: Mapping) -> tuple[ResizeSlices, str]:
        size = [int(s) for s in transform[TraceKeys.ORIG_SIZE]]
        extra = transform[TraceKeys.EXTRA_INFO]
        size[int(extra["slice_axis"])] = -1
        return type(self)(size, mode=extra["mode"], chunk_slices=self.chunk_slices), extra["mode"]

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Resize ``data`` back in plane to the size recorded by the last call (popped from its trace)."""
        back, mode = self._inverse_resizer(self.pop_transform(data))
        with back.trace_transform(False):
            return back._resize(data, mode)

    def inverse_to_labels(self, scores: torch.Tensor, softmax: bool = True) -> torch.Tensor:
        """The inverse applied to class scores, then the argmax over channels, a chunk of slices at a time: equal to
        ``AsDiscrete(argmax=True)(self.inverse(Activations(softmax=softmax)(scores)))``, without the
        full-resolution probability map (only ``chunk_slices`` output slices of it at a time).

        Args:
            scores: ``(C, X', Y', Z')`` class scores whose trace ends with this transform (popped).
            softmax: the scores are logits: softmax over channels before interpolating.

        Returns:
            ``(1, X, Y, Z)`` uint8 labels (a ``MetaTensor`` with the affine restored when ``scores`` is one).
        """
        back, mode = self._inverse_resizer(self.pop_transform(scores))
        with back.trace_transform(False):
            return back._resize(scores, mode, softmax=softmax, argmax=True)


class ResizeSlicesd(MapTransform, InvertibleTransform):
    """Dictionary wrapper of :class:`ResizeSlices`: ``Resized`` for volumes resized in plane only.

    A drop-in for ``Resized(keys, spatial_size=[224, 224, -1], mode=...)`` in a bundle's preprocessing; ``Invertd``
    inverts it, and :class:`InvertToLabelsd` inverts it straight to a label map.

    Args:
        keys: keys of the channel-first volumes to resize.
        spatial_size: output spatial size with ``-1`` at the sliced axis (:func:`volume_size` of the plan's slice
            size and axis).
        mode: interpolation per key (``"bilinear"`` images, ``"nearest"`` labels), or one for all.
        chunk_slices: slices per chunk of the inversion to labels (:class:`InvertToLabelsd`).
        allow_missing_keys: don't raise for absent keys.
    """

    backend = ResizeSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        mode: Sequence[str] | str = "bilinear",
        chunk_slices: int = 16,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.resizer = ResizeSlices(spatial_size, mode=self.mode[0], chunk_slices=chunk_slices)
        for m in self.mode:
            self.resizer._check_mode(m)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.resizer(d[key], mode=mode)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer.inverse(d[key])
        return d
