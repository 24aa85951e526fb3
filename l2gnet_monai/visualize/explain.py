# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Pictures of what a trained bundle's bottleneck does with one slice (``l2gnet-monai explain``).

:func:`explain_volume` loads a bundle's network and preprocessing (``configs/inference.json``, which reads the
training plan beside ``models/model.pt``), preprocesses a volume, picks a slice across the axis the model was
trained to slice (the one with most predicted foreground unless given) and calls
:meth:`L2GNet.explain <l2gnet_monai.networks.L2GNet.explain>` on it. Every picture shows the slice through
:func:`~l2gnet_monai.visualize.views.slice_view` (radiological layout of the plan's plane, true proportions, plane
and orientation named). It writes four PNGs and a text:

* ``code_map.png``: the image, the prediction, the vector quantizer's code at each bottleneck position
  (``16 x 16`` pixels) and the first reference's transport-plan partition, at the image's resolution, one colour
  per code or bin, the most used codes named in the legend;
* ``bins.png``: for each reference of the L2GMapper, the image partitioned by the bin each position sends most of
  its transport mass to, beside the partition of the plan *without* the positional prior term (the content
  alone), with the share of positions that move; bin centres (from the positional prior) marked;
* ``sources.png``: for each reference, a few bins (the largest parts of the partition) and where they draw their
  mass from: the transport plan's column ``P[:, j]`` relative to the plan of the prior alone, so that red and
  blue show what the image's content adds or removes;
* ``code_usage.png``: how many positions of the slice use each code, with the perplexity and the verdict below;
* ``summary.txt``: codes in use, perplexity, codes per class and a warning when the codebook has collapsed
  (:func:`~l2gnet_monai.visualize.codebook.codebook_summary`).

docs/interpretability.md explains how to read them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2gnet_monai.networks.explain import codes_to_pixels
from l2gnet_monai.planning.trained_bundle import load_bundle
from l2gnet_monai.visualize.codebook import codebook_summary, perplexity
from l2gnet_monai.visualize.colors import class_palette
from l2gnet_monai.visualize.figures import save_figure
from l2gnet_monai.visualize.overlays import display_image, label_overlay, require_matplotlib
from l2gnet_monai.visualize.views import SliceView, slice_view

__all__ = ["explain_volume", "code_map_figure", "bins_figure", "sources_figure", "code_usage_figure"]

logger = logging.getLogger(__name__)

#: Colours of codes and bins: matplotlib's tab20, cycled.
_CATEGORICAL = "tab20"


def _categorical(index: np.ndarray, alpha: float, grey: np.ndarray) -> np.ndarray:
    """``grey`` with each integer of ``index`` blended in a tab20 colour (``index < 0``: left grey)."""
    plt = require_matplotlib()
    colours = plt.get_cmap(_CATEGORICAL).colors
    table = np.asarray(colours)[np.mod(np.maximum(index, 0), len(colours))]
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    mask = (index >= 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * table, rgb)


def _show(ax: Any, screen: np.ndarray, view: SliceView, **kwargs: Any) -> Any:
    """``imshow`` of a screen image at the view's aspect ratio, with its orientation letters and no ticks."""
    shown = ax.imshow(screen, interpolation="nearest", aspect=view.aspect, **kwargs)
    view.label_axes(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _bin_centres(num_bins: int, bin_grid: Sequence[int], grid: Sequence[int], stride: int) -> np.ndarray:
    """Pixel coordinates ``(t, 2)`` of the bins' centres on the positional prior's grid."""
    centres = []
    for j in range(num_bins):
        j0, j1 = divmod(j, int(bin_grid[1]))
        centres.append(((j0 + 0.5) / bin_grid[0] * grid[0] * stride, (j1 + 0.5) / bin_grid[1] * grid[1] * stride))
    return np.asarray(centres) - 0.5


def code_map_figure(
    grey: np.ndarray,
    pred: np.ndarray,
    codes: np.ndarray,
    palette: Mapping[int, Any],
    class_names: Mapping[int, str],
    view: SliceView,
    stride: int = 16,
    bins: np.ndarray | None = None,
    index: int | None = None,
) -> Any:
    """Image, prediction, the code of each bottleneck position and (with ``bins``) the transport plan's partition,
    side by side at the image's resolution.

    Args:
        grey: display image ``(H, W)`` in the slice's volume order (``view`` lays it out, :meth:`SliceView.screen`).
        pred: predicted label map ``(H, W)``.
        codes: ``(h, w)`` code index per bottleneck position.
        palette: class colours.
        class_names: ``{class index: name}``.
        view: the slice's radiological layout and aspect.
        stride: the bottleneck's output stride.
        bins: ``(h, w)`` bin of each position under the first reference's plan, or ``None``.
        index: the slice's index, for the caption.
    """
    plt = require_matplotlib()
    from matplotlib.patches import Patch

    pixel_codes = codes_to_pixels(torch.as_tensor(codes)[None], grey.shape, stride)[0].numpy()
    used, counts = np.unique(codes, return_counts=True)
    order = used[np.argsort(-counts, kind="stable")]
    rank = {int(c): i for i, c in enumerate(order)}
    ranked = np.vectorize(rank.get)(pixel_codes)
    panels = [
        (np.repeat(grey[..., None], 3, axis=-1), "image"),
        (label_overlay(grey, pred, palette), "prediction"),
        (_categorical(ranked, 0.55, grey), f"codes ({len(used)} distinct)"),
    ]
    if bins is not None:
        pixel_bins = codes_to_pixels(torch.as_tensor(bins)[None], grey.shape, stride)[0].numpy()
        panels.append((_categorical(pixel_bins, 0.5, grey), "plan partition (reference 0)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9))
    for ax, (panel, title) in zip(axes, panels):
        _show(ax, view.screen(panel), view)
        ax.set_title(title, fontsize=10)
    colours = plt.get_cmap(_CATEGORICAL).colors
    shown = order[:10]
    handles = [Patch(facecolor=colours[rank[int(c)] % len(colours)], label=f"code {int(c)}") for c in shown]
    fig.legend(handles=handles, loc="lower right", ncol=5, fontsize=7, frameon=False, title="most used codes")
    classes = [Patch(facecolor=palette[k], label=class_names.get(k, str(k))) for k in palette]
    fig.legend(handles=classes, loc="lower left", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(view.caption(index), fontsize=9)
    fig.tight_layout(rect=(0, 0.14, 1, 0.96))
    return fig


def bins_figure(
    grey: np.ndarray,
    bins: np.ndarray,
    bin_grid: Sequence[int],
    view: SliceView,
    stride: int = 16,
    content_bins: np.ndarray | None = None,
    index: int | None = None,
) -> Any:
    """For each reference, the image partitioned by the bin each position sends most of its mass to, beside (with
    ``content_bins``) the partition of the plan without the positional prior term: what the content alone asks.

    Args:
        grey: display image ``(H, W)``.
        bins: ``(q, h, w)`` bin index per bottleneck position under the model's plan.
        content_bins: ``(q, h, w)`` the same under the plan of the content term alone (cost ``-content``), or
            ``None``.
        index: the slice's index, for the caption.
        bin_grid: the grid of the bins (the reference grid in pooled mode, ``(h, w)`` in full mode).
        view: the slice's radiological layout and aspect.
        stride: the bottleneck's output stride.
    """
    plt = require_matplotlib()
    q = bins.shape[0]
    grid = bins.shape[1:]
    num_bins = int(np.prod(bin_grid))
    centres = _bin_centres(num_bins, bin_grid, grid, stride)
    kinds = [(bins, "plan")] + ([] if content_bins is None else [(content_bins, "without the prior")])
    cols = len(kinds) * min(q, 2)
    rows = math.ceil(q * len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.4 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r in range(q):
        for k, (partition, kind) in enumerate(kinds):
            ax = axes.flat[r * len(kinds) + k]
            pixel_bins = codes_to_pixels(torch.as_tensor(partition[r])[None], grey.shape, stride)[0].numpy()
            _show(ax, view.screen(_categorical(pixel_bins, 0.5, grey)), view)
            for j in np.unique(partition[r]) if num_bins <= 64 else []:
                column, row = view.screen_point(*centres[j], grey.shape)
                ax.plot(column, row, "+", color="white", markersize=6, markeredgewidth=1.2)
                ax.annotate(
                    str(int(j)), (column, row), color="white", fontsize=6, xytext=(2, 2), textcoords="offset points"
                )
            title = f"ref {r}, {kind}: {len(np.unique(partition[r]))} of {num_bins} bins"
            if k == 1:
                title += f", {100 * float((partition[r] != bins[r]).mean()):.0f} % moved"
            ax.set_title(title, fontsize=8)
    fig.suptitle(view.caption(index), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def sources_figure(
    grey: np.ndarray,
    plans: np.ndarray,
    chosen: Sequence[Sequence[int]],
    bin_grid: Sequence[int],
    view: SliceView,
    stride: int = 16,
    prior_plans: np.ndarray | None = None,
    index: int | None = None,
) -> Any:
    """Where chosen bins draw their mass from: ``P[:, j]`` of each reference as a heat map over the image, relative
    to the plan the positional prior alone gives (so that the map shows what the image's content changes).

    Args:
        grey: display image ``(H, W)``.
        plans: ``(q, n, t)`` transport plans of the slice.
        prior_plans: ``(q, n, t)`` plans of the prior alone (every position alike); ``None``: relative to the
            uniform plan ``1 / (n t)``.
        index: the slice's index, for the caption.
        chosen: per reference, the bins to show.
        bin_grid: the grid of the bins.
        view: the slice's radiological layout and aspect.
        stride: the bottleneck's output stride.
    """
    plt = require_matplotlib()
    q, n, t = plans.shape
    grid = (math.ceil(grey.shape[0] / stride), math.ceil(grey.shape[1] / stride))
    centres = _bin_centres(t, bin_grid, grid, stride)
    cols = max(len(c) for c in chosen)
    fig, axes = plt.subplots(q, cols, figsize=(2.5 * cols + 0.8, 2.6 * q + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    maps = {}
    for r in range(q):
        for j in chosen[r]:
            # mass relative to a uniform plan (1 / (n t) per entry): > 1 where the bin draws more than its share
            base = 1.0 / (n * t) if prior_plans is None else np.clip(prior_plans[r, :, j], 1e-12, None)
            ratio = torch.as_tensor(plans[r, :, j] / base).reshape(1, 1, *grid).float()
            upsampled = torch.nn.functional.interpolate(
                ratio, size=(grid[0] * stride, grid[1] * stride), mode="bilinear", align_corners=False
            )[0, 0, : grey.shape[0], : grey.shape[1]].numpy()
            maps[r, j] = np.log2(np.clip(upsampled, 1e-6, None))
    limit = max(0.25, max(float(np.abs(m).max()) for m in maps.values()))  # one symmetric scale for all panels
    image = None
    for (r, j), log_ratio in maps.items():
        ax = axes[r, chosen[r].index(j)]
        _show(ax, view.screen(grey), view, cmap="gray", vmin=0, vmax=1)
        image = ax.imshow(
            view.screen(log_ratio),
            cmap="RdBu_r",
            alpha=0.65,
            vmin=-limit,
            vmax=limit,
            interpolation="bilinear",
            aspect=view.aspect,
        )
        column, row = view.screen_point(*centres[j], grey.shape)
        ax.plot(column, row, "+", color="black", markersize=8, markeredgewidth=1.5)
        ax.set_title(f"ref {r}, bin {j}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if image is not None:
        bar = fig.colorbar(image, ax=axes, fraction=0.025, pad=0.02)
        reference = "uniform share" if prior_plans is None else "mass under the prior alone"
        bar.set_label(f"log2 of mass / {reference}", fontsize=8)
    fig.suptitle(view.caption(index), fontsize=9)
    return fig


def code_usage_figure(code_counts: np.ndarray, title: str = "", verdict: str = "") -> Any:
    """How many bottleneck positions use each code, the perplexity of that histogram, and ``verdict`` below it."""
    plt = require_matplotlib()
    counts = np.asarray(code_counts, dtype=np.float64)
    spread = perplexity(counts)
    fig, ax = plt.subplots(figsize=(7, 2.8 if verdict else 2.6))
    ax.bar(np.arange(counts.size), counts, width=1.0, color="tab:blue")
    ax.set_xlabel("code index")
    ax.set_ylabel("positions")
    ax.set_xlim(-0.5, counts.size - 0.5)
    used = int((counts > 0).sum())
    ax.set_title(f"{title}{used} of {counts.size} codes used, perplexity {spread:.1f}", fontsize=9)
    if verdict:
        fig.text(0.01, 0.01, verdict, fontsize=7, color="firebrick" if "collapsed" in verdict else "black")
    fig.tight_layout(rect=(0, 0.08 if verdict else 0, 1, 1))
    return fig


def _pick_slice(network: torch.nn.Module, volume: torch.Tensor, batch: int = 8) -> int:
    """The slice (along the last axis) with the most predicted foreground; the middle one if none has any."""
    foreground = []
    with torch.no_grad():
        for start in range(0, volume.shape[-1], batch):
            chunk = volume[..., start : start + batch].permute(3, 0, 1, 2)  # (b, C, H, W)
            foreground.append((network(chunk).argmax(1) != 0).flatten(1).sum(1))
    counts = torch.cat(foreground)
    return int(counts.argmax()) if bool(counts.any()) else volume.shape[-1] // 2


def explain_volume(
    bundle_dir: str | os.PathLike,
    image: str | os.PathLike,
    output_dir: str | os.PathLike,
    slice_index: int | None = None,
    overrides: Sequence[str] = (),
    num_bins: int = 4,
) -> dict[str, str]:
    """Write the four pictures of this module for one slice of a volume (across the plan's slicing axis).

    Args:
        bundle_dir: a trained bundle.
        image: the volume (NIfTI or anything the bundle's ``LoadImaged`` reads).
        output_dir: where to write the PNGs (created if needed).
        slice_index: the slice across the plan's slicing axis (axial for the paper's data), in the preprocessed
            (RAS) volume; ``None``: the slice with most predicted
            foreground.
        overrides: config override files (see :func:`load_bundle`).
        num_bins: bins per reference in ``sources.png`` (the largest parts of the partition).

    Returns:
        ``{"code_map", "bins", "sources", "code_usage", "summary": path}``, ``"slice"``: the slice index as a
        string, and ``"summary_text"``: the code usage in words (:func:`~l2gnet_monai.visualize.codebook_summary`).
    """
    loaded = load_bundle(bundle_dir, overrides)
    network = loaded["network"]
    if not callable(getattr(network, "explain", None)):
        raise ValueError(f"explain: the bundle's network_def is a {type(network).__name__}, not an L2GNet.")
    if getattr(network, "spatial_dims", 2) != 2:
        raise ValueError("explain: the bundle's network must be 2-D (it explains one slice).")
    if not os.path.isfile(image):
        raise FileNotFoundError(f"image {image} does not exist")
    data = loaded["preprocessing"]({"image": str(image)})
    # (C, *RAS) after the bundle's Orientationd; the axis the model slices across (the plan's) goes last
    view = slice_view(getattr(data["image"], "affine", None), loaded["slice_axis"])
    axes = [a for a in range(3) if a != view.voxel_axis] + [view.voxel_axis]
    volume = torch.as_tensor(data["image"]).float().permute(0, *(a + 1 for a in axes))
    depth = volume.shape[-1]
    if slice_index is None:
        slice_index = _pick_slice(network, volume)
    elif not 0 <= int(slice_index) < depth:
        raise ValueError(f"explain: --slice {slice_index} is outside the volume's {depth} slices (0..{depth - 1})")
    slice_index = int(slice_index)
    x = volume[None, ..., slice_index]  # (1, C, H, W)
    out = network.explain(x)
    # one window for the whole volume, so that a dark edge slice is not stretched to full contrast
    window = (0.0, 1.0) if loaded["modality"] == "CT" else None
    grey = display_image(volume[0].numpy(), loaded["modality"], window)[..., slice_index]
    pred = out["logits"][0].argmax(0).numpy()
    palette = class_palette(loaded["class_names"])
    mapper = network.mapper
    grid = list(out["codes"].shape[1:])
    bin_grid = grid if mapper.mode == "full" else list(mapper.reference_grid)
    bins = out["bins"][0].numpy()
    plans = out["plans"][0].numpy()
    # the plan without the prior term (content alone), and with the prior alone (every position alike, at the
    # content's mean similarity so that the plan is as sharp): what each of the two terms asks for
    content = out["content"]
    without_prior = mapper.transport_plan(-content)[0]
    content_bins = without_prior.argmax(-1).reshape(bins.shape).numpy()
    mean_content = content.mean(dim=(2, 3), keepdim=True)
    prior_alone = mapper.transport_plan(-mean_content * out["prior"])[0].numpy()
    chosen = []
    for r in range(bins.shape[0]):
        ids, sizes = np.unique(bins[r], return_counts=True)
        chosen.append([int(j) for j in ids[np.argsort(-sizes, kind="stable")][:num_bins]])
    os.makedirs(output_dir, exist_ok=True)
    stride = int(getattr(network, "stride", 16))
    name = Path(str(image)).name
    codes = out["codes"][0].numpy()
    pixel_mm = (view.spacing[0], view.spacing[1]) if view.row_axis == 0 else (view.spacing[1], view.spacing[0])
    summary = codebook_summary(codes, pred, out["code_counts"].shape[-1], loaded["class_names"], stride, pixel_mm)
    text = f"{name}, {view.caption(slice_index)}:\n{summary['text']}\n"
    with open(os.path.join(output_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    verdict = summary["text"].splitlines()[-1]
    paths = {
        "code_map": save_figure(
            code_map_figure(grey, pred, codes, palette, loaded["class_names"], view, stride, bins[0], slice_index),
            os.path.join(output_dir, "code_map.png"),
        ),
        "bins": save_figure(
            bins_figure(grey, bins, bin_grid, view, stride, content_bins, slice_index),
            os.path.join(output_dir, "bins.png"),
        ),
        "sources": save_figure(
            sources_figure(grey, plans, chosen, bin_grid, view, stride, prior_alone, slice_index),
            os.path.join(output_dir, "sources.png"),
        ),
        "code_usage": save_figure(
            code_usage_figure(out["code_counts"][0].numpy(), f"{name}, {view.plane} slice {slice_index}: ", verdict),
            os.path.join(output_dir, "code_usage.png"),
        ),
        "summary": os.path.join(output_dir, "summary.txt"),
    }
    logger.info("explain: %s slice %d -> %s", name, slice_index, output_dir)
    return {**paths, "slice": str(slice_index), "summary_text": text.rstrip()}
