# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Pictures of images, segmentations and the bottleneck, the same colours everywhere.

* :mod:`~l2gnet_monai.visualize.colors`: the colour of every class and error kind;
* :mod:`~l2gnet_monai.visualize.views`: a slice across the plan's axis in the radiological view, at true proportions;
* :mod:`~l2gnet_monai.visualize.overlays`: greyscale display, class overlays, error maps, slice choice;
* :mod:`~l2gnet_monai.visualize.figures`: figures of slices and mosaics, saved as PNG;
* :mod:`~l2gnet_monai.visualize.image_grid`: an engine's image back in its label's voxel grid;
* :mod:`~l2gnet_monai.visualize.handlers`: inference previews and TensorBoard overlays as engine handlers;
* :mod:`~l2gnet_monai.visualize.codebook`: how many codes a slice uses, per class, and a collapsed codebook in words;
* :mod:`~l2gnet_monai.visualize.explain`: ``l2gnet-monai explain``, the codes and transport plans of one slice.

May import :mod:`l2gnet_monai.networks` (the bottleneck's codes), :mod:`l2gnet_monai.planning` (a trained bundle),
matplotlib, torch and MONAI; nothing from evaluation or training.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "OVERLAY_ALPHA": "l2gnet_monai.visualize.colors",
    "ERROR_ALPHA": "l2gnet_monai.visualize.colors",
    "ERROR_UNDERLAY": "l2gnet_monai.visualize.colors",
    "PAPER_COLORS": "l2gnet_monai.visualize.colors",
    "FALLBACK_PALETTE": "l2gnet_monai.visualize.colors",
    "ERROR_COLORS": "l2gnet_monai.visualize.colors",
    "ERROR_NAMES": "l2gnet_monai.visualize.colors",
    "RGB": "l2gnet_monai.visualize.colors",
    "class_palette": "l2gnet_monai.visualize.colors",
    "ArrayLike": "l2gnet_monai.visualize.overlays",
    "as_numpy": "l2gnet_monai.visualize.overlays",
    "require_matplotlib": "l2gnet_monai.visualize.overlays",
    "display_image": "l2gnet_monai.visualize.overlays",
    "label_overlay": "l2gnet_monai.visualize.overlays",
    "error_labels": "l2gnet_monai.visualize.overlays",
    "error_overlay": "l2gnet_monai.visualize.overlays",
    "select_slices": "l2gnet_monai.visualize.overlays",
    "MIN_STRUCTURE_MM2": "l2gnet_monai.visualize.overlays",
    "MIN_STRUCTURE_FRACTION": "l2gnet_monai.visualize.overlays",
    "PLANES": "l2gnet_monai.visualize.views",
    "SliceView": "l2gnet_monai.visualize.views",
    "slice_view": "l2gnet_monai.visualize.views",
    "orientation_letters": "l2gnet_monai.visualize.views",
    "COLLAPSE_SHARE": "l2gnet_monai.visualize.codebook",
    "perplexity": "l2gnet_monai.visualize.codebook",
    "codebook_summary": "l2gnet_monai.visualize.codebook",
    "slice_figure": "l2gnet_monai.visualize.figures",
    "mosaic_figure": "l2gnet_monai.visualize.figures",
    "save_figure": "l2gnet_monai.visualize.figures",
    "image_in_label_grid": "l2gnet_monai.visualize.image_grid",
    "bundle_class_names": "l2gnet_monai.visualize.handlers",
    "SegmentationPreviewHandler": "l2gnet_monai.visualize.handlers",
    "TensorBoardOverlayHandler": "l2gnet_monai.visualize.handlers",
    "explain_volume": "l2gnet_monai.visualize.explain",
    "code_map_figure": "l2gnet_monai.visualize.explain",
    "bins_figure": "l2gnet_monai.visualize.explain",
    "sources_figure": "l2gnet_monai.visualize.explain",
    "code_usage_figure": "l2gnet_monai.visualize.explain",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
