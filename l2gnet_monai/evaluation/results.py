# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Scores of one evaluation: averaging over cases and classes, and the per-case CSV and ``summary.json`` files."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l2gnet_monai.evaluation.metrics import _check_class_names

__all__ = ["aggregate", "EvaluationResults", "write_results"]


def aggregate(per_case: Mapping[str, Mapping[str, Mapping[str, float]]], class_names: Mapping[int, str]) -> dict:
    """Average over cases per class, then over classes, as in the paper's tables.

    Args:
        per_case: ``{case: {class name: {"dice": float, "hd95": float}}}``; every case must score every class.
        class_names: ``{class index: name}``, gives the classes and their order.

    Returns:
        ``{"mean_dsc", "mean_hd95", "per_class": {name: {"dsc", "hd95"}}, "num_cases"}``; DSC as a
        fraction in ``[0, 1]``.

    Raises:
        ValueError: no cases, or a case without a score for a class.
    """
    names = list(_check_class_names(class_names).values())
    if not per_case:
        raise ValueError("no cases to aggregate.")
    per_class = {}
    for name in names:
        missing = [case for case, scores in per_case.items() if name not in scores]
        if missing:
            raise ValueError(f"class {name!r} has no score for cases {missing}.")
        per_class[name] = {
            "dsc": float(np.mean([per_case[c][name]["dice"] for c in per_case])),
            "hd95": float(np.mean([per_case[c][name]["hd95"] for c in per_case])),
        }
    return {
        "mean_dsc": float(np.mean([v["dsc"] for v in per_class.values()])),
        "mean_hd95": float(np.mean([v["hd95"] for v in per_class.values()])),
        "per_class": per_class,
        "num_cases": len(per_case),
    }


@dataclass
class EvaluationResults:
    """Per-case, per-class scores of one evaluation.

    Args:
        class_names: ``{class index: name}`` of the scored classes.
        per_case: ``{case: {class name: {"dice": float, "hd95": float}}}``, e.g. from :func:`compute_case_metrics`.
        hd95_unit: ``"mm"`` when spacing was used, ``"voxel"`` otherwise.
        hd95_method: ``"medpy"`` or ``"monai"``.
        method: what was scored, e.g. ``"L2GNet (resnet50)"`` (see :func:`~l2gnet_monai.evaluation.network_label`);
            recorded in the summary as ``"method"`` and used as the row label of the tables.
        run_info: how the evaluation ran (:func:`~l2gnet_monai.evaluation.run_provenance`: precision, compile,
            device, versions, checkpoint SHA-256, plan); recorded in the summary as ``"run"``.
        codebook: the codebook's health over the evaluation (:func:`~l2gnet_monai.evaluation.codebook_health`),
            for networks with a vector quantizer; recorded in the summary as ``"codebook"`` (absent otherwise).
        skipped: the cases that were not scored because their files turned out bad when loaded, one message
            naming the file each (:class:`~l2gnet_monai.data.CheckedDataLoader`); in the summary as
            ``"skipped_cases"`` when there are any.
    """

    class_names: dict[int, str]
    per_case: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    hd95_unit: str = "voxel"
    hd95_method: str = "medpy"
    method: str | None = None
    run_info: dict[str, Any] | None = None
    codebook: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One ``{"case", "class", "dice", "hd95"}`` row per case and class, cases in insertion order."""
        names = _check_class_names(self.class_names).values()
        return [
            {"case": case, "class": name, "dice": scores[name]["dice"], "hd95": scores[name]["hd95"]}
            for case, scores in self.per_case.items()
            for name in names
        ]

    def summary(self) -> dict[str, Any]:
        """:func:`aggregate` plus ``hd95_unit``, ``hd95_method``, the class names and (when known) ``method``,
        ``run`` (how the evaluation ran) and ``codebook`` (its health)."""
        out = aggregate(self.per_case, self.class_names)
        out["hd95_unit"] = self.hd95_unit
        out["hd95_method"] = self.hd95_method
        if self.method is not None:
            out["method"] = self.method
        out["class_names"] = {str(k): v for k, v in _check_class_names(self.class_names).items()}
        if self.run_info is not None:
            out["run"] = dict(self.run_info)
        if self.codebook is not None:
            out["codebook"] = dict(self.codebook)
        if self.skipped:
            out["skipped_cases"] = list(self.skipped)
        return out


def _atomic_tmp(directory: str, name: str) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)


def write_results(results: EvaluationResults, output_dir: str) -> dict[str, str]:
    """Write ``metrics_per_case.csv`` (case, class, dice, hd95) and ``summary.json`` atomically.

    Both files are first written to temporary files in ``output_dir`` and then moved into place with
    ``os.replace``, so a reader never sees a partly written file, and nothing is replaced when
    computing either content fails.

    Args:
        results: the scores to write.
        output_dir: destination folder, created if needed.

    Returns:
        ``{"csv": path, "json": path}``.
    """
    summary = results.summary()  # validates; computed before anything is written: errors leave no files behind
    rows = results.rows()
    os.makedirs(output_dir, exist_ok=True)
    targets = {
        "csv": os.path.join(output_dir, "metrics_per_case.csv"),
        "json": os.path.join(output_dir, "summary.json"),
    }
    temps: dict[str, str] = {}
    try:
        fd, temps["csv"] = _atomic_tmp(output_dir, "metrics_per_case.csv")
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["case", "class", "dice", "hd95"])
            writer.writeheader()
            writer.writerows(rows)
        fd, temps["json"] = _atomic_tmp(output_dir, "summary.json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, allow_nan=False)
            f.write("\n")
        for key, tmp in temps.items():
            os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
            os.replace(tmp, targets[key])
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    return targets
