# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Evaluation in the form of the paper's tables (Dice and HD95 per class on whole 3-D volumes).

One module per concern:

* :mod:`~l2gnet_monai.evaluation.metrics`: Dice and HD95 of one case (TransUNet's protocol, medpy's HD95
  definition by default; the module docstring explains how it differs from MONAI's);
* :mod:`~l2gnet_monai.evaluation.results`: averaging over cases and classes, :class:`EvaluationResults`, the
  per-case CSV and ``summary.json``;
* :mod:`~l2gnet_monai.evaluation.tables`: the paper's Table 1 / Table 2 and our row beside them (for the paper's
  classes), or a per-class table for any other dataset;
* :mod:`~l2gnet_monai.evaluation.folders`: scoring a folder of predicted NIfTI files against their ground truth.
"""

from l2gnet_monai.evaluation.folders import case_name_from_path, evaluate_folders
from l2gnet_monai.evaluation.metrics import HD95_METHODS, compute_case_metrics, dice_score, hd95, metric_percase
from l2gnet_monai.evaluation.results import EvaluationResults, aggregate, write_results
from l2gnet_monai.evaluation.tables import (
    ACDC_CLASSES,
    PAPER_RESULTS,
    PAPER_TABLE_CHOICES,
    SYNAPSE_CLASSES,
    TABLE_COLUMNS,
    detect_paper_table,
    format_comparison,
    format_report,
    format_scores,
    format_table_row,
    network_label,
    resolve_paper_table,
)

__all__ = [
    "SYNAPSE_CLASSES",
    "ACDC_CLASSES",
    "TABLE_COLUMNS",
    "PAPER_RESULTS",
    "HD95_METHODS",
    "dice_score",
    "hd95",
    "metric_percase",
    "compute_case_metrics",
    "aggregate",
    "EvaluationResults",
    "write_results",
    "format_table_row",
    "format_comparison",
    "format_scores",
    "format_report",
    "PAPER_TABLE_CHOICES",
    "detect_paper_table",
    "resolve_paper_table",
    "network_label",
    "case_name_from_path",
    "evaluate_folders",
]
