# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Evaluation in the form of the paper's tables (Dice and HD95 per class on whole 3-D volumes), and its report.

* :mod:`~l2gnet_monai.evaluation.metrics`: Dice and HD95 of one case (TransUNet's protocol, medpy's HD95
  definition by default; the module docstring explains how it differs from MONAI's);
* :mod:`~l2gnet_monai.evaluation.results`: averaging over cases and classes, :class:`EvaluationResults`, the
  per-case CSV and ``summary.json``;
* :mod:`~l2gnet_monai.evaluation.codebook`: the codebook's health over an evaluation (``summary.json``'s
  ``"codebook"``);
* :mod:`~l2gnet_monai.evaluation.tables`: the paper's Table 1 / Table 2 and our row beside them (for the paper's
  classes), or a per-class table for any other dataset;
* :mod:`~l2gnet_monai.evaluation.folders`: scoring a folder of predicted NIfTI files against their ground truth;
* :mod:`~l2gnet_monai.evaluation.provenance`: how an evaluation ran (precision, compile, device, versions, the
  checkpoint's SHA-256, the plan), recorded in ``summary.json`` and the report;
* :mod:`~l2gnet_monai.evaluation.report`: the self-contained ``report.html`` with tables, box plots and pictures;
* :mod:`~l2gnet_monai.evaluation.handler`: all of it as an engine handler of the bundle's evaluation;
* :mod:`~l2gnet_monai.evaluation.key_metric`: the evaluator's key metric, named after the split it scores.

May import :mod:`l2gnet_monai.visualize` (the report's pictures), :mod:`l2gnet_monai.networks` (code usage) and
:mod:`l2gnet_monai.data` (the paper's class names).
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "HD95_METHODS": "l2gnet_monai.evaluation.metrics",
    "dice_score": "l2gnet_monai.evaluation.metrics",
    "hd95": "l2gnet_monai.evaluation.metrics",
    "metric_percase": "l2gnet_monai.evaluation.metrics",
    "compute_case_metrics": "l2gnet_monai.evaluation.metrics",
    "aggregate": "l2gnet_monai.evaluation.results",
    "codebook_health": "l2gnet_monai.evaluation.codebook",
    "EvaluationResults": "l2gnet_monai.evaluation.results",
    "write_results": "l2gnet_monai.evaluation.results",
    "SYNAPSE_CLASSES": "l2gnet_monai.evaluation.tables",
    "ACDC_CLASSES": "l2gnet_monai.evaluation.tables",
    "TABLE_COLUMNS": "l2gnet_monai.evaluation.tables",
    "PAPER_RESULTS": "l2gnet_monai.evaluation.tables",
    "PAPER_TABLE_CHOICES": "l2gnet_monai.evaluation.tables",
    "format_table_row": "l2gnet_monai.evaluation.tables",
    "format_comparison": "l2gnet_monai.evaluation.tables",
    "format_scores": "l2gnet_monai.evaluation.tables",
    "format_report": "l2gnet_monai.evaluation.tables",
    "detect_paper_table": "l2gnet_monai.evaluation.tables",
    "resolve_paper_table": "l2gnet_monai.evaluation.tables",
    "network_label": "l2gnet_monai.evaluation.tables",
    "case_name_from_path": "l2gnet_monai.evaluation.folders",
    "infer_class_names": "l2gnet_monai.evaluation.folders",
    "evaluate_folders": "l2gnet_monai.evaluation.folders",
    "RUN_INFO_KEYS": "l2gnet_monai.evaluation.provenance",
    "describe_device": "l2gnet_monai.evaluation.provenance",
    "file_sha256": "l2gnet_monai._files",
    "run_provenance": "l2gnet_monai.evaluation.provenance",
    "ReportBuilder": "l2gnet_monai.evaluation.report",
    "REPORT_NAME": "l2gnet_monai.evaluation.report",
    "REPORT_FILES": "l2gnet_monai.evaluation.report",
    "REPORT_CSS": "l2gnet_monai.evaluation.report",
    "html_table": "l2gnet_monai.evaluation.report",
    "PaperMetricsHandler": "l2gnet_monai.evaluation.handler",
    "mean_dice_metric": "l2gnet_monai.evaluation.key_metric",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
