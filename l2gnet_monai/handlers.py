# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Ignite handlers for the bundle's workflows (attach them through ``train_handlers``/``val_handlers``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from ignite.handlers import ProgressBar as IgniteProgressBar
from monai.handlers import CheckpointSaver

from l2gnet_monai.evaluation import (
    EvaluationResults,
    compute_case_metrics,
    format_report,
    network_label,
    resolve_paper_table,
    write_results,
)
from l2gnet_monai.losses import unwrap_network
from l2gnet_monai.networks.explain import CodeUsageRecorder
from l2gnet_monai.report import ReportBuilder
from l2gnet_monai.visualize import axcodes_of, require_matplotlib

__all__ = ["AtomicCheckpointSaver", "CodebookStatsHandler", "ProgressBar", "PaperMetricsHandler", "image_in_label_grid"]

logger = logging.getLogger(__name__)


class _AtomicDiskSaver(DiskSaver):
    """ignite's atomic ``DiskSaver`` (temporary file + ``os.replace``), optionally with a fixed file name.

    With a fixed name, ``remove`` is a no-op: the next save replaces the file atomically, whereas removing it
    first (what ``Checkpoint`` does before saving a better model) would leave a window with no file at all.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` whose files are never half-written.

    MONAI writes checkpoints in place (``atomic=False``), so an interrupted save corrupts ``model.pt``.
    Here every file is written to a temporary file in the same folder and renamed over the old one, and the
    best model's fixed-name file is replaced rather than deleted first. A process killed while saving leaves
    the previous file whole (and, at worst, a ``tmp*`` file beside it).

    Args:
        args: ``CheckpointSaver``'s arguments.
        interval_filename: a fixed file name for the checkpoint written every ``save_interval`` epochs (or
            iterations with ``epoch_level=False``), replaced at every save: a stable name to resume from,
            e.g. ``"checkpoint_latest.pt"``. ``None`` keeps MONAI's ``checkpoint_epoch=K.pt`` names.
        kwargs: ``CheckpointSaver``'s keyword arguments.
    """

    def __init__(self, *args: Any, interval_filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                if checkpoint is self._interval_checkpoint and interval_filename is not None:
                    fixed_name = interval_filename
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, filename=fixed_name)


class CodebookStatsHandler:
    """Puts the vector quantizer's codebook statistics into the engine's metrics after every epoch.

    At every iteration it reads ``codebook_stats`` (perplexity, fraction of codes used, restarted codes) that
    :class:`~l2gnet_monai.networks.L2GNet` records during its training forward pass; at the end of the epoch
    it stores the epoch's means (restarts: the sum) as ``engine.state.metrics["codebook_perplexity"]``,
    ``["codebook_usage"]`` and ``["codebook_restarts"]``, where ``StatsHandler`` and
    ``TensorBoardStatsHandler`` (attached after this one) log them. A collapsing codebook shows up as a
    perplexity falling towards 1.

    Args:
        network: the network (or its DDP wrapper); defaults to ``engine.network``.
    """

    def __init__(self, network: torch.nn.Module | None = None) -> None:
        self.network = network
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._publish)

    def _reset(self, engine: Engine) -> None:
        self._sums, self._count = {}, 0

    def _accumulate(self, engine: Engine) -> None:
        network = unwrap_network(self.network if self.network is not None else engine.network)
        stats = getattr(network, "codebook_stats", {})
        if not stats:
            return
        for key, value in stats.items():  # summed on the device; read once per epoch
            value = torch.as_tensor(value).detach().float()
            self._sums[key] = self._sums[key] + value.to(self._sums[key].device) if key in self._sums else value
        self._count += 1

    def _publish(self, engine: Engine) -> None:
        if self._count == 0:
            return
        engine.state.metrics["codebook_perplexity"] = float(self._sums["perplexity"]) / self._count
        engine.state.metrics["codebook_usage"] = float(self._sums["usage"]) / self._count
        engine.state.metrics["codebook_restarts"] = float(self._sums["restarted_codes"])


class ProgressBar:
    """A tqdm progress bar over the iterations of each epoch (ignite's ``ProgressBar``) showing the loss.

    Args:
        output_transform: maps ``engine.state.output`` to a float or dict of floats to display, e.g.
            ``monai.handlers.from_engine(["loss"], first=True)``; ``None`` shows none.
        persist: keep the finished bar of every epoch on screen.
    """

    def __init__(self, output_transform: Callable | None = None, persist: bool = True) -> None:
        self.output_transform = output_transform
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        transform = None
        if self.output_transform is not None:

            def transform(output: Any) -> dict[str, float]:
                value = self.output_transform(output)
                value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
                return value if isinstance(value, dict) else {"loss": float(value)}

        IgniteProgressBar(persist=self.persist).attach(engine, output_transform=transform)


class PaperMetricsHandler:
    """Per-case, per-class Dice and HD95 on whole volumes, reported in the paper's table form.

    At every iteration it takes the decollated ``pred`` and ``label`` of each case (one-hot or label maps,
    channel-first, in the original image space: invert the preprocessing in ``postprocessing`` first) and
    scores them with :func:`l2gnet_monai.evaluation.compute_case_metrics` (TransUNet's protocol and edge
    cases). When the run completes it writes ``metrics_per_case.csv`` and ``summary.json`` to
    ``output_dir`` and prints the table: our row beside the paper's rows when the classes are the paper's
    (Synapse's or ACDC's, by name), a per-class table otherwise. The summary is also stored in
    ``engine.state.metrics`` (``mean_dsc``, ``mean_hd95``).

    With ``report`` (the default) it also writes ``report.html`` and its pictures (``report_files/``) beside
    them (see :mod:`l2gnet_monai.report`): for that it keeps, per case, only the few chosen 2-D slices of image,
    ground truth and prediction, and while the engine runs it counts the codes each predicted class uses
    (:class:`~l2gnet_monai.networks.explain.CodeUsageRecorder`, for networks with a ``quantizer``).

    Args:
        class_names: ``{index: name}`` of the classes (background may be included; it is not scored).
        output_dir: folder for the CSV and JSON files.
        dataset: which of the paper's tables to print beside ours: ``"auto"`` (the paper's table when the
            classes are the paper's), ``"synapse"``, ``"acdc"``, or ``"none"``/``None`` (a per-class table).
            An explicit table that the classes do not fit is refused here, before any work.
        use_spacing: HD95 in millimetres from the label's affine; ``False`` gives voxels as TransUNet's code.
        hd95_method: ``"medpy"`` (the protocol's definition) or ``"monai"``.
        name: the row label, naming what was scored (the bundle passes the network's class and backbone,
            e.g. ``"L2GNet (resnet50)"``); ``None``: the class name of the engine's network.
        report: write ``report.html``.
        image_transform: the preprocessing that produced the engine's ``image``; the report inverts it (MONAI's
            ``Invertd``) to lay the image under the label. ``None``: the image is used as it is when it has the
            label's shape, resized in-plane when only the in-plane size differs, left out otherwise.
        modality: ``"CT"`` or ``"MRI"``: the report's display windowing.
        display_window: CT display window of the (inverted) image; ``(0, 1)`` for the bundle's normalised images.

    Raises:
        ValueError: ``dataset`` is unknown or names a table whose classes ``class_names`` lacks.
    """

    def __init__(
        self,
        class_names: Mapping[int | str, str],
        output_dir: str,
        dataset: str | None = "auto",
        use_spacing: bool = True,
        hd95_method: str = "medpy",
        name: str | None = None,
        report: bool = True,
        image_transform: Callable | None = None,
        modality: str = "CT",
        display_window: Sequence[float] | None = (0.0, 1.0),
    ) -> None:
        self.class_names = {int(k): v for k, v in class_names.items() if int(k) != 0}
        self.output_dir = output_dir
        self.dataset = resolve_paper_table(dataset, self.class_names)
        self.use_spacing = use_spacing
        self.hd95_method = hd95_method
        self.name = name
        self.results = self._new_results()
        if report:
            require_matplotlib()  # at configuration time rather than after the whole evaluation
        self.report = ReportBuilder(self.class_names, modality, display_window) if report else None
        self.image_transform = image_transform
        self._codes: CodeUsageRecorder | None = None

    def _new_results(self, name: str | None = None) -> EvaluationResults:
        unit = "mm" if self.use_spacing else "voxel"
        return EvaluationResults(self.class_names, hd95_unit=unit, hd95_method=self.hd95_method, method=name)

    def _started(self, engine: Engine) -> None:
        name = self.name
        if name is None and isinstance(getattr(engine, "network", None), torch.nn.Module):
            name = network_label(type(unwrap_network(engine.network)))
        self.results = self._new_results(name)
        if self.report is not None:
            self.report.reset()
            network = unwrap_network(getattr(engine, "network", None))
            if isinstance(network, torch.nn.Module) and hasattr(network, "quantizer"):
                num_classes = int(getattr(network, "out_channels", max(self.class_names) + 1))
                self._codes = CodeUsageRecorder(network, num_classes).attach()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._report)
        engine.add_event_handler(Events.TERMINATE, self._detach_codes)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._detach_codes)

    def _detach_codes(self, engine: Engine, *args: Any) -> None:
        if self._codes is not None:
            self._codes.detach()

    @staticmethod
    def _label_map(x: torch.Tensor) -> np.ndarray:
        array = x.detach().cpu()
        array = array.argmax(0) if array.shape[0] > 1 else array[0]
        return np.asarray(array.numpy()).round().astype(np.int64)

    def _score(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for output in outputs:
            label = output["label"]
            meta = getattr(label, "meta", {})
            case = os.path.basename(str(meta.get("filename_or_obj", f"case_{len(self.results.per_case):04d}")))
            spacing = None
            if self.use_spacing and hasattr(label, "affine"):
                affine = np.asarray(label.affine.cpu())[:3, :3]
                spacing = tuple(float(s) for s in np.sqrt((affine**2).sum(0)))
            pred_map, label_map = self._label_map(output["pred"]), self._label_map(label)
            self.results.per_case[case] = compute_case_metrics(
                pred_map, label_map, self.class_names, spacing, self.hd95_method
            )
            if self.report is not None:
                image = image_in_label_grid(output, label_map.shape, self.image_transform)
                self.report.add_case(case, pred_map, label_map, image, axcodes_of(getattr(label, "affine", None)))

    def _report(self, engine: Engine) -> None:
        if not self.results.per_case:
            return
        paths = write_results(self.results, self.output_dir)
        summary = self.results.summary()
        engine.state.metrics["mean_dsc"] = summary["mean_dsc"]
        engine.state.metrics["mean_hd95"] = summary["mean_hd95"]
        logger.info("Scores of %d cases written to %s and %s.", len(self.results.per_case), paths["csv"], paths["json"])
        print(format_report(summary, self.dataset), flush=True)
        if self.report is not None:
            if self._codes is not None:
                self._codes.detach()
                self.report.class_code_counts = self._codes.class_code_counts()
            page = self.report.write(self.results, self.output_dir, self.dataset or "none")
            logger.info("Report with pictures of every case written to %s.", page)
            self.report.reset()  # the slices are not needed any more


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
