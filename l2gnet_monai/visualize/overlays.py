# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Segmentations drawn over their images: greyscale display, class overlays, error maps, slice choice.

Overlays are MONAI's :func:`monai.visualize.blend_images` with a fixed colour per class
(:mod:`~l2gnet_monai.visualize.colors`): a pixel of class ``k`` becomes ``(1 - OVERLAY_ALPHA) * grey +
OVERLAY_ALPHA * colour_k``; background pixels keep their grey value. Error maps mark every voxel where prediction
and ground truth differ: false positives (predicted foreground on ground-truth background), false negatives
(predicted background on ground-truth foreground) and confusions (both foreground, different classes), over an
underlay darkened to ``ERROR_UNDERLAY`` of its grey so that every error colour, yellow included, stands out on bright
tissue as on dark. Orientation and proportions are :mod:`~l2gnet_monai.visualize.views`'.

matplotlib is a dependency of the package; :func:`require_matplotlib` turns its absence into a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch

from l2gnet_monai.visualize.colors import ERROR_ALPHA, ERROR_COLORS, ERROR_UNDERLAY, OVERLAY_ALPHA, RGB

__all__ = [
    "ArrayLike",
    "as_numpy",
    "require_matplotlib",
    "display_image",
    "label_overlay",
    "error_labels",
    "error_overlay",
    "select_slices",
    "MIN_STRUCTURE_MM2",
    "MIN_STRUCTURE_FRACTION",
]

#: A slice chosen for its errors shows at least this much foreground (mm^2, about a 1 cm square)...
MIN_STRUCTURE_MM2 = 100.0
#: ... and at least this share of the foreground of the case's most-foreground slice.
MIN_STRUCTURE_FRACTION = 0.25

ArrayLike = Union[np.ndarray, torch.Tensor]


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or an ``ImportError`` saying how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "the evaluation report and the pictures of l2gnet-monai need matplotlib, which is not installed in this "
            'Python environment: pip install "matplotlib>=3.6" (it is a dependency of l2gnet-monai).'
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def as_numpy(x: ArrayLike) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and copied to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def display_image(
    image: ArrayLike, modality: str = "CT", window: Sequence[float] | None = (-125.0, 275.0)
) -> np.ndarray:
    """Grey values in ``[0, 1]`` for display, windowed by modality.

    Args:
        image: intensities, any shape.
        modality: ``"CT"``: clip to ``window`` and scale (the bundle's normalised CT images are already windowed
            to ``[0, 1]``: pass ``(0, 1)``); ``"MR"``/``"MRI"`` or anything else: stretch the 1st to 99th
            percentile (MR intensities have no absolute scale).
        window: ``(low, high)`` for CT; ``None`` uses the percentiles for CT too.

    Returns:
        A float32 array of the same shape with values in ``[0, 1]``.
    """
    array = as_numpy(image).astype(np.float32)
    if str(modality).upper() == "CT" and window is not None:
        low, high = float(window[0]), float(window[1])
    else:
        finite = array[np.isfinite(array)]
        low, high = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (0.0, 1.0)
    if high <= low:
        return np.zeros_like(array)
    return np.clip((np.nan_to_num(array, nan=low) - low) / (high - low), 0.0, 1.0)


def _colormap(colors: Mapping[int, RGB]) -> Any:
    """A ``ListedColormap`` whose entry ``i`` is the colour of value ``i`` (integer inputs index it directly)."""
    from matplotlib.colors import ListedColormap

    size = max(colors, default=0) + 1
    table = [colors.get(i, (0.0, 0.0, 0.0)) for i in range(size)]
    return ListedColormap(table)


def _blend(grey: np.ndarray, labels: np.ndarray, colors: Mapping[int, RGB], alpha: float) -> np.ndarray:
    from monai.visualize import blend_images

    require_matplotlib()
    if grey.shape != labels.shape:
        raise ValueError(f"image and label slices must have the same shape, got {grey.shape} and {labels.shape}.")
    known = np.isin(labels, list(colors)) & (labels != 0)  # values without a colour stay grey
    cmap = _colormap(colors)
    # blend_images casts the looked-up colours to the label's dtype, so integer labels would lose them: the labels
    # go in as float colour-table coordinates (the centre of entry k) and the opacity map leaves the rest grey.
    coordinates = ((np.where(known, labels, 0) + 0.5) / cmap.N).astype(np.float32)
    alpha_map = (float(alpha) * known).astype(np.float32)[None]
    rgb = blend_images(
        grey[None].astype(np.float32),
        coordinates[None],
        alpha=alpha_map,
        cmap=cmap,
        rescale_arrays=False,
        transparent_background=False,
    )
    return np.moveaxis(np.asarray(rgb, dtype=np.float32), 0, -1)


def label_overlay(
    grey: ArrayLike, labels: ArrayLike, palette: Mapping[int, RGB], alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """A label map blended over a grey image, each class in its palette colour.

    Args:
        grey: display intensities in ``[0, 1]`` (see :func:`display_image`), shape ``(H, W)``.
        labels: integer label map ``(H, W)``; 0 and values without a palette entry are left uncoloured.
        palette: ``{class index: (r, g, b)}``, e.g. from :func:`class_palette`.
        alpha: opacity of the class colours.

    Returns:
        RGB image ``(H, W, 3)`` in ``[0, 1]``: ``(1 - alpha) * grey + alpha * colour`` on labelled pixels.
    """
    return _blend(as_numpy(grey), np.rint(as_numpy(labels)).astype(np.int64), dict(palette), alpha)


def error_labels(pred: ArrayLike, label: ArrayLike) -> np.ndarray:
    """Where and how a prediction differs from the ground truth.

    Args:
        pred: predicted label map, any shape.
        label: ground-truth label map of the same shape.

    Returns:
        ``uint8`` map of the same shape: 0 agreement, 1 false positive (foreground predicted on background),
        2 false negative (background predicted on foreground), 3 wrong class (both foreground, different).
    """
    p, g = np.rint(as_numpy(pred)).astype(np.int64), np.rint(as_numpy(label)).astype(np.int64)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth must have the same shape, got {p.shape} and {g.shape}.")
    out = np.zeros(p.shape, dtype=np.uint8)
    out[(p != 0) & (g == 0)] = 1
    out[(p == 0) & (g != 0)] = 2
    out[(p != 0) & (g != 0) & (p != g)] = 3
    return out


def error_overlay(grey: ArrayLike, pred: ArrayLike, label: ArrayLike, alpha: float = ERROR_ALPHA) -> np.ndarray:
    """The error map of one slice over its grey image, in the colours of :data:`ERROR_COLORS`.

    Args:
        grey: display intensities in ``[0, 1]``, shape ``(H, W)``.
        pred: predicted label map ``(H, W)``.
        label: ground-truth label map ``(H, W)``.
        alpha: opacity of the error colours.

    Returns:
        RGB image ``(H, W, 3)``: the grey image darkened to ``ERROR_UNDERLAY`` of its value; exactly the pixels
        where ``pred != label`` are coloured.
    """
    underlay = ERROR_UNDERLAY * as_numpy(grey).astype(np.float32)
    return _blend(underlay, error_labels(pred, label).astype(np.int64), ERROR_COLORS, alpha)


def select_slices(
    pred: ArrayLike,
    label: ArrayLike,
    axis: int = -1,
    pixel_area_mm2: float = 1.0,
    min_area_mm2: float = MIN_STRUCTURE_MM2,
    min_fraction: float = MIN_STRUCTURE_FRACTION,
) -> dict[str, int]:
    """The slices worth looking at in one case, across ``axis``.

    * ``"most foreground"``: the slice with the most ground-truth foreground (predicted foreground when the
      ground truth is empty);
    * ``"largest error"``: the slice with the largest error area (false positives + false negatives + wrong class,
      :func:`error_labels`) among the slices whose foreground (ground truth, or prediction where the ground truth
      is empty) covers at least ``min_area_mm2`` and ``min_fraction`` of the most-foreground slice's: never an edge
      slice with a handful of voxels. Missing when there is no error on such a slice.

    Args:
        pred: predicted label map ``(X, Y, Z)``.
        label: ground-truth label map of the same shape.
        axis: the voxel axis to slice across.
        pixel_area_mm2: the area of one pixel of a slice (the product of the two in-plane spacings).
        min_area_mm2: the smallest foreground area of a slice chosen for its errors.
        min_fraction: the smallest foreground of a slice chosen for its errors, relative to the largest slice's.

    Returns:
        ``{reason: slice index}``; both reasons may name the same slice.
    """
    p = np.moveaxis(np.rint(as_numpy(pred)).astype(np.int64), axis, 0)
    g = np.moveaxis(np.rint(as_numpy(label)).astype(np.int64), axis, 0)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth must have the same shape, got {p.shape} and {g.shape}.")
    flat_p, flat_g = p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1)
    foreground = (flat_g != 0).sum(1)
    if not foreground.any():
        foreground = (flat_p != 0).sum(1)
    most = int(np.argmax(foreground))
    chosen = {"most foreground": most}
    area = foreground * float(pixel_area_mm2)
    large = (area >= float(min_area_mm2)) & (foreground >= float(min_fraction) * foreground[most]) & (foreground > 0)
    errors = np.where(large, (flat_p != flat_g).sum(1), 0)
    if errors.any():
        chosen["largest error"] = int(np.argmax(errors))
    return chosen
