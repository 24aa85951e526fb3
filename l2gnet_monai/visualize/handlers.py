# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Ignite handlers that draw: inference previews (a PNG mosaic per volume) and TensorBoard overlays.

* :class:`SegmentationPreviewHandler` (inference): one PNG per volume, the segmentation over the image on a
  mosaic of slices across the plan's slicing axis, so that a folder of predictions can be checked without a
  viewer. The bundle's ``inference.json`` switches it on with ``"preview": true``.
* :class:`TensorBoardOverlayHandler` (validation): per validation round, ground truth, prediction and error map
  of a few cases as one image each, and the histogram of the codes the bottleneck used, through MONAI's
  :class:`~monai.handlers.tensorboard_handlers.TensorBoardHandler` and :func:`~monai.visualize.plot_2d_or_3d_image`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers.tensorboard_handlers import TensorBoardHandler
from monai.visualize import plot_2d_or_3d_image

from l2gnet_monai.networks.explain import CodeUsageRecorder
from l2gnet_monai.networks.utils import unwrap_network
from l2gnet_monai.visualize.colors import class_palette
from l2gnet_monai.visualize.figures import mosaic_figure, save_figure
from l2gnet_monai.visualize.image_grid import image_in_label_grid
from l2gnet_monai.visualize.overlays import display_image, error_overlay, label_overlay, require_matplotlib
from l2gnet_monai.visualize.views import slice_view

__all__ = ["bundle_class_names", "SegmentationPreviewHandler", "TensorBoardOverlayHandler"]

logger = logging.getLogger(__name__)


def bundle_class_names(bundle_root: str | os.PathLike, num_classes: int) -> dict[int, str]:
    """Class names of a bundle's output from ``configs/metadata.json`` (``outputs.pred.channel_def``).

    Args:
        bundle_root: the bundle folder.
        num_classes: the network's output channels, background included.

    Returns:
        ``{index: name}`` for ``1 .. num_classes - 1``; ``"class k"`` when the metadata is missing or lists
        another number of classes (a bundle retrained on another dataset).
    """
    names = {k: f"class {k}" for k in range(1, int(num_classes))}
    path = Path(bundle_root) / "configs" / "metadata.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        named = {int(k): str(v) for k, v in channels.items() if str(k).isdigit() and int(k) != 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return names
    return named if set(named) == set(names) else names


def _label_map(x: torch.Tensor) -> np.ndarray:
    """Channel-first one-hot or label map -> integer label map without the channel."""
    array = x.detach().cpu()
    array = array.argmax(0) if array.shape[0] > 1 else array[0]
    return np.rint(array.float().numpy()).astype(np.int64)


def _case_name(output: Mapping[str, Any], fallback: str) -> str:
    for key in ("image", "pred"):
        meta = getattr(output.get(key), "meta", None) or {}
        name = meta.get("filename_or_obj")
        if name:
            base = os.path.basename(str(name))
            for suffix in (".nii.gz", ".nii", ".mha", ".nrrd", ".dcm"):
                if base.lower().endswith(suffix):
                    return base[: -len(suffix)]
            return os.path.splitext(base)[0]
    return fallback


class SegmentationPreviewHandler:
    """Writes, per inferred volume, ``<name>_preview.png``: the segmentation over the image, a mosaic of slices.

    It reads the decollated ``pred`` (a label map or one-hot, in the image's original space after ``Invertd``)
    and ``image`` of each output; the image is brought into the prediction's grid by inverting
    ``image_transform`` (the inference preprocessing). Slices are spread over the segmented extent and shown
    as radiologists read them at true proportions
    (:mod:`~l2gnet_monai.visualize.views`), with the legend of class colours
    (:func:`~l2gnet_monai.visualize.class_palette`).

    Args:
        output_dir: folder of the PNGs (created if needed), e.g. the folder of the predicted NIfTI files.
        class_names: ``{index: name}`` of the classes (background may be included); ``None``: read from the
            bundle's metadata (:func:`bundle_class_names`) with ``bundle_root`` and ``num_classes``.
        image_transform: the preprocessing whose inverse maps ``image`` to the prediction's grid.
        modality: ``"CT"`` or ``"MRI"``: the display windowing.
        display_window: CT window of the (normalised) image, ``(0, 1)`` for the bundle's preprocessing.
        num_slices: slices in each mosaic.
        output_postfix: appended to the volume's name.
        bundle_root: the bundle folder, for the class names.
        num_classes: output channels of the network, background included, for the class names.
        slice_axis: the RAS axis to slice across, the plan's (0 sagittal, 1 coronal, 2 axial).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Mapping[int | str, str] | None = None,
        image_transform: Callable | None = None,
        modality: str = "CT",
        display_window: Sequence[float] | None = (0.0, 1.0),
        num_slices: int = 12,
        output_postfix: str = "preview",
        bundle_root: str | None = None,
        num_classes: int | None = None,
        slice_axis: int = 2,
    ) -> None:
        require_matplotlib()
        self.output_dir = output_dir
        if class_names is None:
            if bundle_root is None or num_classes is None:
                raise ValueError("SegmentationPreviewHandler: give class_names, or bundle_root and num_classes.")
            class_names = bundle_class_names(bundle_root, num_classes)
        self.class_names = {int(k): str(v) for k, v in class_names.items() if int(k) != 0}
        self.palette = class_palette(self.class_names)
        self.image_transform = image_transform
        self.modality = modality
        self.display_window = display_window
        self.num_slices = num_slices
        self.output_postfix = output_postfix
        self.slice_axis = slice_view(None, slice_axis).slice_axis  # checked here, at configuration time
        self._count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        os.makedirs(self.output_dir, exist_ok=True)
        for output in outputs:
            pred = output["pred"]
            seg = _label_map(pred)
            image = image_in_label_grid(output, seg.shape, self.image_transform)
            grey = (
                np.zeros(seg.shape, np.float32)
                if image is None
                else display_image(image, self.modality, self.display_window)
            )
            name = _case_name(output, f"volume_{self._count:04d}")
            self._count += 1
            fig = mosaic_figure(
                grey,
                seg,
                self.palette,
                self.class_names,
                self.num_slices,
                name,
                slice_view(getattr(pred, "affine", None), self.slice_axis),
            )
            path = save_figure(fig, os.path.join(self.output_dir, f"{name}_{self.output_postfix}.png"))
            logger.info("preview written to %s", path)


class TensorBoardOverlayHandler(TensorBoardHandler):
    """Per validation round: overlays of a few cases and the codebook usage histogram, in TensorBoard.

    For the first ``num_images`` cases of each round it takes the slice across the plan's slicing axis with most
    ground-truth foreground and writes one RGB image ``ground truth | prediction | errors`` (in the radiological
    view of the plane, resampled to square pixels of the true proportions; the tag names the plane; class
    colours as everywhere in the project)
    under ``<tag>/<case>``; while the round runs it counts the codes the network's quantizer uses and writes their
    histogram under ``<tag>/codebook_usage``. The step is the engine's epoch, which for an evaluator driven by
    MONAI's ``ValidationHandler`` is the trainer's epoch.

    Args:
        summary_writer: a ``SummaryWriter`` to share, or ``None`` to create one in ``log_dir``.
        log_dir: TensorBoard folder when no writer is given.
        class_names: ``{index: name}`` of the classes (background may be included).
        num_images: cases drawn per round.
        modality: ``"CT"`` or ``"MRI"``: the display windowing.
        display_window: CT window of the (normalised) image.
        tag: prefix of the TensorBoard tags.
        slice_axis: the RAS axis to slice across, the plan's (0 sagittal, 1 coronal, 2 axial).
    """

    def __init__(
        self,
        summary_writer: Any = None,
        log_dir: str = "./runs",
        class_names: Mapping[int | str, str] | None = None,
        num_images: int = 2,
        modality: str = "CT",
        display_window: Sequence[float] | None = (0.0, 1.0),
        tag: str = "validation",
        slice_axis: int = 2,
    ) -> None:
        require_matplotlib()
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items() if int(k) != 0}
        self.palette = class_palette(self.class_names)
        self.num_images = num_images
        self.modality = modality
        self.display_window = display_window
        self.tag = tag
        self.slice_axis = slice_view(None, slice_axis).slice_axis
        self._images: list[tuple[str, np.ndarray]] = []
        self._orientation = slice_view(None, slice_axis).orientation
        self._codes: CodeUsageRecorder | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._stop_recording)

    def _started(self, engine: Engine) -> None:
        self._images = []
        network = unwrap_network(getattr(engine, "network", None))
        if isinstance(network, torch.nn.Module) and CodeUsageRecorder.applies_to(network):
            self._codes = CodeUsageRecorder(network, int(getattr(network, "out_channels", 1))).attach()

    def _stop_recording(self, engine: Engine, *args: Any) -> None:
        if self._codes is not None:
            self._codes.detach()

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for output in outputs:
            if len(self._images) >= self.num_images:
                return
            label, pred = _label_map(output["label"]), _label_map(output["pred"])
            image = image_in_label_grid(output, label.shape)
            view = slice_view(getattr(output["label"], "affine", None), self.slice_axis)
            z = int(
                np.argmax(np.moveaxis(label != 0, view.voxel_axis, 0).reshape(label.shape[view.voxel_axis], -1).sum(1))
            )
            volume = np.zeros(label.shape, np.float32)
            if image is not None:
                volume = display_image(image, self.modality, self.display_window)  # one window per volume
            grey, lab, prd = view.take(volume, z), view.take(label, z), view.take(pred, z)
            panels = [label_overlay(grey, lab, self.palette), label_overlay(grey, prd, self.palette)]
            panels.append(error_overlay(grey, prd, lab))
            row = view.square_pixels(np.concatenate(panels, axis=1))  # (rows, 3 * columns, 3)
            name = _case_name(output, f"case_{len(self._images)}")
            self._images.append((f"{name}_{view.plane}{z}", np.moveaxis(row, -1, 0)))

    def _write(self, engine: Engine) -> None:
        step = int(engine.state.epoch)
        for name, rgb in self._images:
            plot_2d_or_3d_image(
                [rgb],
                step,
                self._writer,
                index=0,
                max_channels=3,
                tag=f"{self.tag}/{name} (truth | pred | errors; {self._orientation})",
            )
        if self._codes is not None:
            self._codes.detach()
            counts = self._codes.code_counts()
            if counts.sum() > 0:
                values = np.repeat(np.arange(counts.size), counts)
                self._writer.add_histogram(f"{self.tag}/codebook_usage", values, step, bins=min(counts.size, 128))
            self._codes = None
        self._writer.flush()
