# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Figures of segmented slices: one slice with its legend, a mosaic of cases, saved as PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from l2gnet_monai.visualize.colors import ERROR_COLORS, ERROR_NAMES, RGB
from l2gnet_monai.visualize.overlays import (
    ArrayLike,
    as_numpy,
    error_overlay,
    label_overlay,
    require_matplotlib,
    screen_slice,
)

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
        grey, label, pred = as_numpy(row["grey"]), as_numpy(row["label"]), as_numpy(row["pred"])
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
    grey, seg = as_numpy(grey), np.rint(as_numpy(seg)).astype(np.int64)
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
