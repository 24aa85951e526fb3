# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Pictures of segmentations: class colours, overlays, error maps, slice choice and mosaics.

Overlays are MONAI's :func:`monai.visualize.blend_images` with a fixed colour per class, so that a class has
the same colour in every picture the project draws (the evaluation report, inference previews, TensorBoard,
``l2gnet-monai explain``):

* a pixel of class ``k`` becomes ``(1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * colour_k``; background pixels
  keep their grey value;
* the colours of the paper's classes follow its Figure 2 where the caption names them (Synapse: liver yellow,
  right kidney blue, left kidney green, pancreas light blue; ACDC: RV blue, LV purple, Myo yellow); the
  other Synapse organs get colours chosen to stay apart from those (:data:`PAPER_COLORS`);
* any other class name gets the next colour of a fixed, distinguishable palette (:data:`FALLBACK_PALETTE`,
  matplotlib's ``tab10`` then ``Dark2``), in class-index order, so the same class list always gets the same
  colours.

Error maps mark every voxel where prediction and ground truth differ: false positives (predicted foreground on
ground-truth background), false negatives (predicted background on ground-truth foreground) and confusions
(both foreground, different classes) in the colours of :data:`ERROR_COLORS`.

matplotlib is a dependency of the package; :func:`require_matplotlib` turns its absence into a one-line message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "OVERLAY_ALPHA",
    "ERROR_ALPHA",
    "PAPER_COLORS",
    "FALLBACK_PALETTE",
    "ERROR_COLORS",
    "ERROR_NAMES",
    "require_matplotlib",
    "class_palette",
    "display_image",
    "label_overlay",
    "error_labels",
    "error_overlay",
    "select_slices",
    "screen_slice",
    "axcodes_of",
    "slice_figure",
    "mosaic_figure",
    "save_figure",
]

ArrayLike = Union[np.ndarray, torch.Tensor]
RGB = tuple[float, float, float]

#: Opacity of class colours over the image in every overlay.
OVERLAY_ALPHA = 0.5

#: Opacity of the error colours over the image in error maps.
ERROR_ALPHA = 0.8


def _rgb(r: int, g: int, b: int) -> RGB:
    return (r / 255.0, g / 255.0, b / 255.0)


#: Colours by class name (lower case). Synapse liver, kidneys and pancreas and the three ACDC classes are named in
#: the caption of the paper's Figure 2; spleen, gallbladder, stomach and aorta are not, and were chosen here.
PAPER_COLORS: dict[str, RGB] = {
    # Synapse (paper: "yellow: liver, blue: right kidney, green: left kidney, light blue: pancreas")
    "liver": _rgb(255, 255, 0),
    "right kidney": _rgb(0, 0, 255),
    "left kidney": _rgb(0, 255, 0),
    "pancreas": _rgb(102, 204, 255),
    "spleen": _rgb(255, 0, 255),
    "gallbladder": _rgb(255, 165, 0),
    "stomach": _rgb(148, 0, 211),
    "aorta": _rgb(255, 0, 0),
    # ACDC (paper: "blue, purple, and yellow represent the RV, LV, and MYO")
    "rv": _rgb(0, 0, 255),
    "lv": _rgb(160, 32, 240),
    "myo": _rgb(255, 255, 0),
}

_COLOR_ALIASES = {
    "kidney right": "right kidney",
    "kidney left": "left kidney",
    "gall bladder": "gallbladder",
    "right ventricle": "rv",
    "left ventricle": "lv",
    "myocardium": "myo",
}

#: Colours of classes whose names are not in :data:`PAPER_COLORS`, in this order (matplotlib's tab10, then Dark2).
FALLBACK_PALETTE: tuple[RGB, ...] = (
    _rgb(31, 119, 180),
    _rgb(255, 127, 14),
    _rgb(44, 160, 44),
    _rgb(214, 39, 40),
    _rgb(148, 103, 189),
    _rgb(140, 86, 75),
    _rgb(227, 119, 194),
    _rgb(127, 127, 127),
    _rgb(188, 189, 34),
    _rgb(23, 190, 207),
    _rgb(27, 158, 119),
    _rgb(217, 95, 2),
    _rgb(117, 112, 179),
    _rgb(231, 41, 138),
    _rgb(102, 166, 30),
    _rgb(230, 171, 2),
    _rgb(166, 118, 29),
    _rgb(102, 102, 102),
)

#: Error map values and colours: 1 false positive (red), 2 false negative (cyan), 3 wrong class (yellow).
ERROR_NAMES: dict[int, str] = {1: "false positive", 2: "false negative", 3: "wrong class"}
ERROR_COLORS: dict[int, RGB] = {1: _rgb(255, 40, 40), 2: _rgb(0, 220, 255), 3: _rgb(255, 230, 0)}


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


def _norm_name(name: str) -> str:
    name = " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())
    return _COLOR_ALIASES.get(name, name)


def class_palette(class_names: Mapping[int, str]) -> dict[int, RGB]:
    """The colour of every foreground class: the paper's where the name is known, else the fixed palette.

    Args:
        class_names: ``{class index: name}``; index 0 (background) gets no colour.

    Returns:
        ``{class index: (r, g, b)}`` with components in ``[0, 1]``, in index order.
    """
    names = {int(k): str(v) for k, v in class_names.items()}
    palette: dict[int, RGB] = {}
    fallback = 0
    for index in sorted(k for k in names if k != 0):
        name = _norm_name(names[index])
        if name in PAPER_COLORS:
            palette[index] = PAPER_COLORS[name]
        else:
            palette[index] = FALLBACK_PALETTE[fallback % len(FALLBACK_PALETTE)]
            fallback += 1
    return palette


def _numpy(x: ArrayLike) -> np.ndarray:
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
    array = _numpy(image).astype(np.float32)
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
    return _blend(_numpy(grey), np.rint(_numpy(labels)).astype(np.int64), dict(palette), alpha)


def error_labels(pred: ArrayLike, label: ArrayLike) -> np.ndarray:
    """Where and how a prediction differs from the ground truth.

    Args:
        pred: predicted label map, any shape.
        label: ground-truth label map of the same shape.

    Returns:
        ``uint8`` map of the same shape: 0 agreement, 1 false positive (foreground predicted on background),
        2 false negative (background predicted on foreground), 3 wrong class (both foreground, different).
    """
    p, g = np.rint(_numpy(pred)).astype(np.int64), np.rint(_numpy(label)).astype(np.int64)
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
        RGB image ``(H, W, 3)``; exactly the pixels where ``pred != label`` are coloured.
    """
    return _blend(_numpy(grey), error_labels(pred, label).astype(np.int64), ERROR_COLORS, alpha)


def select_slices(pred: ArrayLike, label: ArrayLike, class_indices: Sequence[int], axis: int = -1) -> dict[str, int]:
    """The axial slices worth looking at in one case.

    * ``"most foreground"``: the slice with the most ground-truth foreground (predicted foreground when the
      ground truth is empty);
    * ``"worst class"``: among slices where a class is present (in prediction or ground truth), the one with the
      lowest 2-D Dice of any class, ties broken by the larger number of wrong pixels of that class. Missing when
      no class is present anywhere.

    Args:
        pred: predicted label map ``(H, W, D)``.
        label: ground-truth label map of the same shape.
        class_indices: the foreground classes to consider.
        axis: the slice axis (the last, axial, for RAS volumes).

    Returns:
        ``{reason: slice index}``; both reasons may name the same slice.
    """
    p = np.moveaxis(np.rint(_numpy(pred)).astype(np.int64), axis, 0)
    g = np.moveaxis(np.rint(_numpy(label)).astype(np.int64), axis, 0)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth must have the same shape, got {p.shape} and {g.shape}.")
    flat_p, flat_g = p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1)
    foreground = (flat_g != 0).sum(1)
    if not foreground.any():
        foreground = (flat_p != 0).sum(1)
    chosen = {"most foreground": int(np.argmax(foreground))}
    best: tuple[float, int, int] | None = None  # (dice, -wrong pixels, slice)
    for k in class_indices:
        pk, gk = flat_p == k, flat_g == k
        sizes = pk.sum(1) + gk.sum(1)
        present = np.flatnonzero(sizes)
        if present.size == 0:
            continue
        dice = 2.0 * (pk & gk).sum(1)[present] / sizes[present]
        wrong = (pk ^ gk).sum(1)[present]
        for d, w, s in zip(dice, wrong, present):
            key = (float(d), -int(w), int(s))
            if best is None or key < best:
                best = key
    if best is not None:
        chosen["worst class"] = best[2]
    return chosen


def axcodes_of(affine: ArrayLike | None) -> tuple[str, str, str]:
    """The orientation codes of a voxel-to-world affine (nibabel's ``aff2axcodes``); ``("L", "P", "S")`` if unknown."""
    if affine is None:
        return ("L", "P", "S")
    import nibabel as nib

    codes = nib.aff2axcodes(np.asarray(_numpy(affine), dtype=np.float64)[:4, :4])
    return tuple(str(c) for c in codes) if all(codes) else ("L", "P", "S")  # type: ignore[return-value]


def screen_slice(array: ArrayLike, axcodes: Sequence[str] = ("L", "P", "S")) -> np.ndarray:
    """An axial slice ``(H, W, ...)`` laid out for display as radiologists read it.

    Rows run from anterior (top) to posterior and columns from the patient's right (left of the picture) to the
    patient's left, whatever the array's orientation: for an LPS array (DICOM-like, nibabel codes ``L, P, S``)
    this is the transpose; a RAS array (after ``Orientationd("RAS")``) is also flipped both ways.

    Args:
        array: slice with the first two axes in the volume's first two axes (extra trailing axes, e.g. RGB, kept).
        axcodes: orientation codes of the volume (see :func:`axcodes_of`).

    Returns:
        The slice as ``(rows, columns, ...)`` for ``imshow`` with the default ``origin="upper"``.
    """
    out = np.swapaxes(_numpy(array), 0, 1)
    if str(axcodes[0]).upper() == "R":
        out = out[:, ::-1]
    if str(axcodes[1]).upper() == "A":
        out = out[::-1]
    return np.ascontiguousarray(out)


def _legend_handles(palette: Mapping[int, RGB], class_names: Mapping[int, str]) -> list[Any]:
    from matplotlib.patches import Patch

    return [Patch(facecolor=palette[k], edgecolor="black", label=str(class_names.get(k, k))) for k in palette]


def slice_figure(
    rows: Sequence[Mapping[str, Any]], palette: Mapping[int, RGB], class_names: Mapping[int, str], title: str = ""
) -> Figure:
    """One row per chosen slice: image, ground truth overlay, prediction overlay, error map; with legends.

    Args:
        rows: per slice ``{"grey": (H, W) in [0, 1], "label": (H, W), "pred": (H, W), "title": str}``, laid out
            for display (see :func:`screen_slice`).
        palette: class colours.
        class_names: ``{class index: name}`` for the legend.
        title: figure title.

    Returns:
        A matplotlib figure (close it after saving).
    """
    plt = require_matplotlib()
    from matplotlib.patches import Patch

    columns = ("image", "ground truth", "prediction", "errors")
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.9 * len(rows) + 0.9), squeeze=False)
    for r, row in enumerate(rows):
        grey, label, pred = _numpy(row["grey"]), _numpy(row["label"]), _numpy(row["pred"])
        panels = (
            np.repeat(grey[..., None], 3, axis=-1),
            label_overlay(grey, label, palette),
            label_overlay(grey, pred, palette),
            error_overlay(grey, pred, label),
        )
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        axes[r, 0].set_ylabel(str(row.get("title", "")), fontsize=9)
    handles = _legend_handles(palette, class_names)
    errors = [Patch(facecolor=ERROR_COLORS[k], edgecolor="black", label=ERROR_NAMES[k]) for k in ERROR_COLORS]
    fig.legend(handles=handles, loc="lower left", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.legend(handles=errors, loc="lower right", ncol=1, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.12 if len(rows) == 1 else 0.07, 1, 1))
    return fig


def mosaic_figure(
    grey: ArrayLike,
    seg: ArrayLike,
    palette: Mapping[int, RGB],
    class_names: Mapping[int, str],
    num_slices: int = 12,
    title: str = "",
    axcodes: Sequence[str] = ("L", "P", "S"),
) -> Figure:
    """A mosaic of axial slices of a volume with its segmentation blended over it, and a legend.

    The slices are spread evenly over the axial extent of the segmented region (of the whole volume when the
    segmentation is empty).

    Args:
        grey: display intensities ``(H, W, D)`` in ``[0, 1]``.
        seg: label map ``(H, W, D)``.
        palette: class colours.
        class_names: ``{class index: name}`` for the legend.
        num_slices: slices in the mosaic (fewer when the volume has fewer).
        title: figure title.
        axcodes: orientation codes of the volume, for radiological display (see :func:`screen_slice`).

    Returns:
        A matplotlib figure (close it after saving).
    """
    plt = require_matplotlib()
    grey, seg = _numpy(grey), np.rint(_numpy(seg)).astype(np.int64)
    if grey.shape != seg.shape or grey.ndim != 3:
        raise ValueError(f"image and segmentation must be (H, W, D) of one shape, got {grey.shape} and {seg.shape}.")
    occupied = np.flatnonzero((seg != 0).any(axis=(0, 1)))
    first, last = (int(occupied[0]), int(occupied[-1])) if occupied.size else (0, seg.shape[2] - 1)
    count = max(1, min(int(num_slices), last - first + 1))
    indices = np.unique(np.linspace(first, last, count).round().astype(int))
    cols = int(np.ceil(np.sqrt(len(indices))))
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, z in zip(axes.flat, indices):
        ax.imshow(screen_slice(label_overlay(grey[..., z], seg[..., z], palette), axcodes), interpolation="nearest")
        ax.set_title(f"slice {z}", fontsize=8)
    handles = _legend_handles(palette, class_names)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def save_figure(fig: Figure, path: str, dpi: int = 80) -> str:
    """Save a figure as PNG atomically (temporary file, then rename) and close it.

    Args:
        fig: the figure.
        path: destination ``.png`` path; its folder must exist.
        dpi: resolution.

    Returns:
        ``path``.
    """
    import os
    import tempfile

    plt = require_matplotlib()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
