# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Figures of segmented slices: one slice with its legend, a mosaic of cases, saved as PNG.

Every panel is drawn through a :class:`~l2gnet_monai.visualize.views.SliceView`: in the radiological layout of its
plane, at the physical aspect ratio of its pixels, with the orientation letters at its edges, and captioned with the
plane and orientation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from l2gnet_monai.visualize.colors import ERROR_COLORS, ERROR_NAMES, RGB
from l2gnet_monai.visualize.overlays import ArrayLike, as_numpy, error_overlay, label_overlay, require_matplotlib
from l2gnet_monai.visualize.views import SliceView, slice_view

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["slice_figure", "mosaic_figure", "save_figure"]


def _legend_handles(palette: Mapping[int, RGB], class_names: Mapping[int, str]) -> list[Any]:
    from matplotlib.patches import Patch

    return [Patch(facecolor=palette[k], edgecolor="black", label=str(class_names.get(k, k))) for k in palette]


def slice_figure(
    rows: Sequence[Mapping[str, Any]], palette: Mapping[int, RGB], class_names: Mapping[int, str], title: str = ""
) -> Figure:
    """One row per chosen slice: image, ground truth overlay, prediction overlay, error map; with legends.

    Args:
        rows: per slice ``{"grey": (H, W) in [0, 1], "label": (H, W), "pred": (H, W), "title": str, "view":
            SliceView}``, laid out for display by the view (:meth:`SliceView.take`), which also gives the aspect
            ratio, the orientation letters and the caption (``"view"`` missing: square pixels, no letters).
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
        grey, label, pred = as_numpy(row["grey"]), as_numpy(row["label"]), as_numpy(row["pred"])
        panels = (
            np.repeat(grey[..., None], 3, axis=-1),
            label_overlay(grey, label, palette),
            label_overlay(grey, pred, palette),
            error_overlay(grey, pred, label),
        )
        view: SliceView | None = row.get("view")
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest", aspect=1.0 if view is None else view.aspect)
            ax.set_xticks([])
            ax.set_yticks([])
            if view is not None:
                view.label_axes(ax)
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        caption = "" if view is None else "\n" + view.orientation
        axes[r, 0].set_ylabel(str(row.get("title", "")) + caption, fontsize=8)
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
    view: SliceView | None = None,
) -> Figure:
    """A mosaic of slices of a volume with its segmentation blended over it, and a legend.

    The slices are spread evenly over the segmented region's extent across the view's plane (the whole volume's
    when the segmentation is empty).

    Args:
        grey: display intensities ``(X, Y, Z)`` in ``[0, 1]``, windowed once for the whole volume.
        seg: label map ``(X, Y, Z)``.
        palette: class colours.
        class_names: ``{class index: name}`` for the legend.
        num_slices: slices in the mosaic (fewer when the volume has fewer).
        title: figure title.
        view: how to slice and lay out the volume (:func:`~l2gnet_monai.visualize.views.slice_view` of its affine
            and the plan's slicing axis); ``None``: axial slices of a RAS volume with square pixels.

    Returns:
        A matplotlib figure (close it after saving).
    """
    plt = require_matplotlib()
    grey, seg = as_numpy(grey), np.rint(as_numpy(seg)).astype(np.int64)
    if grey.shape != seg.shape or grey.ndim != 3:
        raise ValueError(f"image and segmentation must be (H, W, D) of one shape, got {grey.shape} and {seg.shape}.")
    view = slice_view(None, 2) if view is None else view
    others = tuple(a for a in range(3) if a != view.voxel_axis)
    occupied = np.flatnonzero((seg != 0).any(axis=others))
    first, last = (int(occupied[0]), int(occupied[-1])) if occupied.size else (0, seg.shape[view.voxel_axis] - 1)
    count = max(1, min(int(num_slices), last - first + 1))
    indices = np.unique(np.linspace(first, last, count).round().astype(int))
    cols = int(np.ceil(np.sqrt(len(indices))))
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, z in zip(axes.flat, indices):
        panel = label_overlay(view.take(grey, z), view.take(seg, z), palette)
        ax.imshow(panel, interpolation="nearest", aspect=view.aspect)
        view.label_axes(ax, fontsize=6)
        ax.set_title(f"{view.plane} slice {z}", fontsize=8)
    handles = _legend_handles(palette, class_names)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    fig.suptitle(f"{title}: " * bool(title) + f"{view.plane} slices, {view.orientation}", fontsize=9)
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
