# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The evaluation as an engine handler: per-case scores, the paper's table and the report, written when a run ends."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from l2gnet_monai.evaluation.codebook import codebook_health
from l2gnet_monai.evaluation.metrics import compute_case_metrics
from l2gnet_monai.evaluation.provenance import RUN_INFO_KEYS, run_provenance
from l2gnet_monai.evaluation.report import ReportBuilder
from l2gnet_monai.evaluation.results import EvaluationResults, write_results
from l2gnet_monai.evaluation.tables import format_report, network_label, resolve_paper_table
from l2gnet_monai.networks.explain import CodeUsageRecorder
from l2gnet_monai.networks.utils import unwrap_network
from l2gnet_monai.visualize.image_grid import image_in_label_grid
from l2gnet_monai.visualize.overlays import require_matplotlib

__all__ = ["PaperMetricsHandler"]

logger = logging.getLogger(__name__)


class PaperMetricsHandler:
    """Per-case, per-class Dice and HD95 on whole volumes, reported in the paper's table form.

    At every iteration it takes the decollated ``pred`` and ``label`` of each case (one-hot or label maps,
    channel-first, in the original image space: invert the preprocessing in ``postprocessing`` first) and
    scores them with :func:`l2gnet_monai.evaluation.compute_case_metrics` (TransUNet's protocol and edge
    cases). When the run completes it writes ``metrics_per_case.csv`` and ``summary.json`` to
    ``output_dir`` and prints the table: our row beside the paper's rows when the classes are the paper's
    (Synapse's or ACDC's, by name), a per-class table otherwise. The summary is also stored in
    ``engine.state.metrics`` (``mean_dsc``, ``mean_hd95``). Cases that the engine's loader skipped because their
    files turned out bad when loaded (:class:`~l2gnet_monai.data.CheckedDataLoader`'s ``bad_cases``) are listed
    in the summary's ``"skipped_cases"``.

    The summary and the report also record how the evaluation ran (``summary.json``'s ``"run"``, see
    :func:`~l2gnet_monai.evaluation.run_provenance`): the precision the network ran in (resolved, never
    ``"auto"``), the compile setting and whether the network ran compiled, the device, the torch, MONAI and
    package versions, the checkpoint's SHA-256 and the plan; ``run_info`` names them, the engine's ``inferer``
    and device fill in what it leaves out.

    With ``report`` (the default) it also writes ``report.html`` and its pictures (``report_files/``) beside
    them (see :mod:`l2gnet_monai.evaluation.report`): for that it keeps, per case, only the few chosen 2-D slices of
    image,
    ground truth and prediction. For networks with a vector quantizer it counts, while the engine runs, the codes
    each predicted class uses (:class:`~l2gnet_monai.networks.explain.CodeUsageRecorder`), for the report's
    histograms and for ``summary.json``'s ``"codebook"`` (codes used, perplexity overall and per class, each
    class's dominant code and its share, the classes that share one: :func:`~l2gnet_monai.evaluation.codebook_health`).

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
        slice_axis: the RAS axis the report's pictures slice across, the plan's (0 sagittal, 1 coronal, 2 axial).
        run_info: what the evaluation ran with, from the config: ``device``, ``inferer``, ``checkpoint`` (the
            weights' path) and ``plan`` (the training plan, a dict); each is optional.

    Raises:
        ValueError: ``dataset`` is unknown or names a table whose classes ``class_names`` lacks; ``run_info``
            has a key other than :data:`~l2gnet_monai.evaluation.provenance.RUN_INFO_KEYS`.
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
        slice_axis: int = 2,
        run_info: Mapping[str, Any] | None = None,
    ) -> None:
        unknown = sorted(set(run_info or {}) - set(RUN_INFO_KEYS))
        if unknown:
            raise ValueError(
                f"PaperMetricsHandler: run_info has unknown keys {unknown}; expected some of {RUN_INFO_KEYS}."
            )
        self.run_info = dict(run_info or {})
        self.class_names = {int(k): v for k, v in class_names.items() if int(k) != 0}
        self.output_dir = output_dir
        self.dataset = resolve_paper_table(dataset, self.class_names)
        self.use_spacing = use_spacing
        self.hd95_method = hd95_method
        self.name = name
        self.results = self._new_results()
        if report:
            require_matplotlib()  # at configuration time rather than after the whole evaluation
        self.report = ReportBuilder(self.class_names, modality, display_window, slice_axis) if report else None
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
        info = {"inferer": getattr(engine, "inferer", None), "device": getattr(engine.state, "device", None)}
        self.results.run_info = run_provenance(**{**info, **self.run_info})
        if self.report is not None:
            self.report.reset()
        self._codes = None
        network = unwrap_network(getattr(engine, "network", None))
        if isinstance(network, torch.nn.Module) and CodeUsageRecorder.applies_to(network):
            num_classes = int(getattr(network, "out_channels", max(self.class_names) + 1))
            self._codes = CodeUsageRecorder(network, num_classes).attach()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._report)
        engine.add_event_handler(Events.TERMINATE, self._detach_codes)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)

    def _detach_codes(self, engine: Engine, *args: Any) -> None:
        if self._codes is not None:
            self._codes.detach()

    def _failed(self, engine: Engine, error: Exception) -> None:
        self._detach_codes(engine)
        raise error  # ignite re-raises only when no handler listens to EXCEPTION_RAISED: pass it on, as MONAI's do

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
                self.report.add_case(case, pred_map, label_map, image, getattr(label, "affine", None))

    def _report(self, engine: Engine) -> None:
        # the cases a CheckedDataLoader skipped because their files turned out bad when loaded
        self.results.skipped = list(getattr(getattr(engine, "data_loader", None), "bad_cases", []))
        if not self.results.per_case:
            self._detach_codes(engine)
            return
        compiled = getattr(self.run_info.get("inferer", getattr(engine, "inferer", None)), "compiled", None)
        network = unwrap_network(getattr(engine, "network", None))
        if self.results.run_info is not None and callable(compiled) and isinstance(network, torch.nn.Module):
            self.results.run_info["compiled"] = compiled(network) is not None
        class_code_counts = None
        if self._codes is not None:
            self._codes.detach()
            class_code_counts = self._codes.class_code_counts()
            names = {0: "background", **self.class_names}
            self.results.codebook = codebook_health(class_code_counts, names, self._codes.code_counts())
        paths = write_results(self.results, self.output_dir)
        summary = self.results.summary()
        engine.state.metrics["mean_dsc"] = summary["mean_dsc"]
        engine.state.metrics["mean_hd95"] = summary["mean_hd95"]
        logger.info("Scores of %d cases written to %s and %s.", len(self.results.per_case), paths["csv"], paths["json"])
        print(format_report(summary, self.dataset), flush=True)
        if self.report is not None:
            if class_code_counts is not None:
                self.report.class_code_counts = class_code_counts
            page = self.report.write(self.results, self.output_dir, self.dataset or "none")
            logger.info("Report with pictures of every case written to %s.", page)
            self.report.reset()  # the slices are not needed any more
