# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Evaluation in the form of the paper's tables (Dice and HD95 per class on whole 3-D volumes).

The paper follows TransUNet's protocol (``utils.calculate_metric_percase``, which calls medpy):

* every case (a whole 3-D label volume) and every foreground class is scored separately:
  prediction and ground truth both non-empty -> ``(dice, hd95)``; prediction non-empty but
  ground truth empty -> ``(1, 0)``; prediction empty -> ``(0, 0)``, also when both are empty;
* each class is averaged over the cases, then the class means are averaged into the mean DSC and
  the mean HD95 of the tables.

TransUNet calls medpy's ``hd95`` without a voxel spacing, so the published HD values are in voxels.
Here the unit follows ``spacing``: millimetres when it is given, voxels when it is ``None``.

**HD95: medpy (the protocol) and MONAI differ.** Both extract the surface of a mask as the mask minus
its binary erosion (cross-shaped structuring element, zero outside the image) and both measure exact
Euclidean distances, with the spacing, from each surface voxel of one mask to the nearest surface voxel
of the other, so the two directed distance sets are the same (checked on random anisotropic volumes).
They aggregate them differently:

* medpy ``hd95``: the 95th percentile of the *union* of both directed sets;
* MONAI ``HausdorffDistanceMetric(percentile=95)``: the *maximum* of the two directed 95th percentiles.

Example: in an 8 x 20 image, the ground truth is the 4 x 4 square ``[2:6, 2:6]`` (12 surface pixels) and
the prediction is the same square plus one stray pixel at ``(3, 15)``, 10 pixels from the square. The
prediction-to-truth set is twelve 0s and one 10, the truth-to-prediction set twelve 0s. MONAI gives
``max(percentile([0]*12 + [10], 95), 0) = 4.0``; medpy gives ``percentile([0]*24 + [10], 95) = 0.0``.
The default here, ``hd95_method="medpy"``, is an independent scipy implementation of the protocol's
definition (``distance_transform_edt(sampling=spacing)`` and ``binary_erosion`` surfaces); it matches
medpy 0.5.2 to float precision. ``hd95_method="monai"`` calls MONAI's
:func:`monai.metrics.compute_hausdorff_distance` instead. Dice is MONAI's :func:`monai.metrics.compute_dice`
(the same ``2|A n B| / (|A| + |B|)`` as medpy's ``dc``).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

from l2gnet_monai.data.labels import ACDC_LABELS, SYNAPSE_LABELS

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
    "case_name_from_path",
    "evaluate_folders",
]

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]
Spacing = Union[float, Sequence[float], None]

#: Synapse labels after TransUNet's preprocessing (0 is background).
SYNAPSE_CLASSES: dict[int, str] = {k: v for k, v in SYNAPSE_LABELS.items() if k != 0}

#: ACDC labels (0 is background).
ACDC_CLASSES: dict[int, str] = {k: v for k, v in ACDC_LABELS.items() if k != 0}

#: Value columns of the paper's Table 1 (Synapse, class-wise DSC) and Table 2 (ACDC, class-wise DSC and HD).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "synapse": ("DSC", "HD", "Aorta", "GB", "KL", "KR", "Liver", "PC", "SP", "SM"),
    "acdc": ("DSC", "HD", "RV DSC", "Myo DSC", "LV DSC", "RV HD", "Myo HD", "LV HD"),
}

#: The paper's published rows, in the order of :data:`TABLE_COLUMNS` (DSC in percent).
PAPER_RESULTS: dict[str, dict[str, tuple[float, ...]]] = {
    "synapse": {
        "UNet": (77.54, 38.26, 85.52, 61.86, 80.57, 77.24, 94.37, 54.72, 87.95, 78.12),
        "AttnUNet": (75.57, 36.97, 55.92, 63.91, 79.20, 72.71, 93.56, 49.37, 87.19, 74.95),
        "TransUNet": (77.48, 30.45, 87.23, 63.13, 81.87, 77.02, 94.08, 55.86, 85.08, 75.62),
        "VQUNet": (63.44, 68.79, 78.99, 50.74, 67.32, 61.91, 89.94, 33.96, 73.83, 50.87),
        "SSNet": (78.36, 32.48, 86.42, 61.16, 83.55, 79.64, 94.44, 57.69, 85.67, 78.32),
        "TranSSNet": (78.74, 33.63, 85.79, 63.61, 82.73, 77.38, 94.90, 59.09, 86.44, 80.00),
        "SynergyNet*": (79.65, 23.59, 86.10, 65.49, 82.78, 79.23, 95.06, 58.28, 88.95, 81.30),
        "L2GNet(2-ref)": (78.98, 23.90, 87.75, 57.75, 83.48, 75.79, 94.43, 64.85, 90.43, 77.33),
        "L2GNet(4-ref)": (82.23, 14.17, 86.87, 69.06, 86.32, 79.54, 95.06, 67.49, 91.80, 81.77),
    },
    "acdc": {
        "UNet": (87.94, 1.98, 84.62, 84.52, 93.68, 3.81, 1.10, 1.05),
        "AttnUNet": (86.90, 2.10, 83.27, 84.33, 93.53, 3.84, 1.14, 1.11),
        "TransUNet": (89.71, 1.82, 86.67, 87.27, 95.18, 3.39, 1.06, 1.04),
        "VQUNet": (78.15, 3.16, 70.14, 74.13, 90.13, 5.09, 2.15, 2.24),
        "SSNet": (89.69, 1.54, 87.90, 86.62, 94.74, 2.49, 1.07, 1.08),
        "TranSSNet": (91.32, 1.30, 90.09, 88.34, 95.53, 1.85, 1.02, 1.04),
        "SynergyNet": (89.78, 1.86, 87.68, 86.60, 95.06, 2.76, 1.53, 1.15),
        "L2GNet(2-ref)": (91.36, 1.16, 90.04, 88.62, 95.55, 1.42, 1.02, 1.03),
        "L2GNet(4-ref)": (91.44, 1.24, 89.97, 88.84, 95.50, 1.64, 1.01, 1.10),
    },
}

_TABLE_TITLES = {
    "synapse": "Table 1 (Synapse multi-organ CT): mean DSC (%), mean HD95, class-wise DSC (%)",
    "acdc": "Table 2 (ACDC cardiac MRI): mean DSC (%), mean HD95, class-wise DSC (%), class-wise HD95",
}

# paper column -> accepted class names (compared after lower-casing and mapping "_"/"-" to spaces)
_CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "Aorta": ("aorta",),
    "GB": ("gallbladder", "gall bladder", "gb"),
    "KL": ("left kidney", "kidney left", "kidney l", "l kidney", "kl", "lk"),
    "KR": ("right kidney", "kidney right", "kidney r", "r kidney", "kr", "rk"),
    "Liver": ("liver",),
    "PC": ("pancreas", "pc"),
    "SP": ("spleen", "sp"),
    "SM": ("stomach", "sm"),
    "RV": ("rv", "right ventricle", "right ventricle cavity"),
    "Myo": ("myo", "myocardium"),
    "LV": ("lv", "left ventricle", "left ventricle cavity"),
}

HD95_METHODS = ("medpy", "monai")

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CASE_SUFFIXES = ("_gt", "_seg", "_pred", "_prediction", "_label", "_labels", "_mask")
_CASE_PREFIX = re.compile(r"^(label|labels|img|image|pred|seg|case)[_-]?(?=\d)", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# per-case metrics
# --------------------------------------------------------------------------------------------------


def _as_bool_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(bool, copy=False)


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _normalize_spacing(spacing: Spacing, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(f"spacing must have one value per spatial dimension ({ndim}), got {tuple(values)}.")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing values must be positive and finite, got {tuple(values)}.")
    return values


def _union_bbox(a: np.ndarray, b: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Bounding box of ``a | b`` grown by ``margin`` voxels and clipped to the image."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth must have the same shape, got {pred.shape} and {gt.shape}.")


def dice_score(pred: ArrayLike, gt: ArrayLike) -> float:
    """Dice similarity coefficient ``2|P n G| / (|P| + |G|)`` of two binary masks (MONAI's ``compute_dice``).

    Args:
        pred: binary prediction mask, any spatial shape (non-zero is foreground).
        gt: binary ground-truth mask of the same shape.

    Returns:
        The Dice coefficient in ``[0, 1]``; ``0`` when both masks are empty.
    """
    p, g = _as_bool_numpy(pred), _as_bool_numpy(gt)
    _check_pair(p, g)
    if not (p.any() or g.any()):
        return 0.0
    box = _union_bbox(p, g, margin=0)  # Dice does not depend on the background outside the union
    pt = torch.as_tensor(np.ascontiguousarray(p[box]), dtype=torch.float32)[None, None]
    gtt = torch.as_tensor(np.ascontiguousarray(g[box]), dtype=torch.float32)[None, None]
    return float(compute_dice(pt, gtt, include_background=True, ignore_empty=False)[0, 0])


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = generate_binary_structure(mask.ndim, 1)
    return mask & ~binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def _directed_surface_distances(
    src_surface: np.ndarray, dst_surface: np.ndarray, spacing: tuple[float, ...] | None
) -> np.ndarray:
    dist = distance_transform_edt(~dst_surface, sampling=spacing)
    return np.asarray(dist[src_surface], dtype=np.float64)


def hd95(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, method: str = "medpy") -> float:
    """95% Hausdorff distance between two non-empty binary masks.

    Args:
        pred: binary prediction mask (non-zero is foreground), 2-D or 3-D.
        gt: binary ground-truth mask of the same shape.
        spacing: voxel size per axis (a number for isotropic voxels); ``None`` measures in voxels.
        method: ``"medpy"`` (default, the TransUNet protocol): the 95th percentile of the union of the
            two directed surface-distance sets; ``"monai"``: the maximum of the two directed 95th
            percentiles (:func:`monai.metrics.compute_hausdorff_distance`). See the module docstring.

    Returns:
        HD95 in the unit of ``spacing`` (voxels when ``spacing`` is ``None``).

    Raises:
        ValueError: when a mask is empty, the shapes differ, or ``method``/``spacing`` is invalid.
    """
    if method not in HD95_METHODS:
        raise ValueError(f"method must be one of {HD95_METHODS}, got {method!r}.")
    p, g = _as_bool_numpy(pred), _as_bool_numpy(gt)
    _check_pair(p, g)
    if not p.any() or not g.any():
        raise ValueError(
            "hd95 needs non-empty prediction and ground truth masks; use metric_percase for the empty-mask convention."
        )
    sp = _normalize_spacing(spacing, p.ndim)
    # Surfaces and distances only involve voxels of the union's bounding box (plus one voxel, so that the
    # erosion sees the same zero neighbourhood as on the full image): cropping is exact and much faster.
    box = _union_bbox(p, g, margin=1)
    p, g = p[box], g[box]
    if method == "monai":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # MONAI-internal deprecated argument
            value = compute_hausdorff_distance(
                torch.as_tensor(p)[None, None],
                torch.as_tensor(g)[None, None],
                include_background=True,
                percentile=95,
                spacing=sp,
            )
        return float(value[0, 0])
    sp_p, sp_g = _surface(p), _surface(g)
    distances = np.concatenate(
        [_directed_surface_distances(sp_p, sp_g, sp), _directed_surface_distances(sp_g, sp_p, sp)]
    )
    return float(np.percentile(distances, 95))


def metric_percase(
    pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, hd95_method: str = "medpy"
) -> tuple[float, float]:
    """``(dice, hd95)`` of one class in one case with TransUNet's convention for empty masks.

    Args:
        pred: binary prediction mask of the class.
        gt: binary ground-truth mask of the class, same shape.
        spacing: voxel size per axis; ``None`` measures HD95 in voxels.
        hd95_method: ``"medpy"`` or ``"monai"``, see :func:`hd95`.

    Returns:
        ``(dice, hd95)`` when both masks are non-empty; ``(1.0, 0.0)`` when only the ground truth is
        empty; ``(0.0, 0.0)`` when the prediction is empty (whatever the ground truth).
    """
    p, g = _as_bool_numpy(pred), _as_bool_numpy(gt)
    _check_pair(p, g)
    if p.any() and g.any():
        return dice_score(p, g), hd95(p, g, spacing=spacing, method=hd95_method)
    if p.any():
        return 1.0, 0.0
    return 0.0, 0.0


def _check_class_names(class_names: Mapping[int, str]) -> dict[int, str]:
    """Validated ``{index: name}`` in index order, without the background (index 0 is never scored)."""
    out = {}
    for index, name in class_names.items():
        if int(index) != index or int(index) < 0:
            raise ValueError(f"class indices must be non-negative integers, got {index!r}.")
        if int(index) != 0:
            out[int(index)] = str(name)
    if not out:
        raise ValueError(
            f"class_names must map at least one foreground class index (> 0) to a name, got {class_names}."
        )
    names = list(out.values())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"class names must be unique, got duplicates {duplicates}.")
    return dict(sorted(out.items()))


def _check_label_values(values: np.ndarray, max_index: int, what: str) -> None:
    """Raise ``ValueError`` when a label map holds values that are not integers in ``[0, max_index]``."""
    if values.dtype.kind == "b":
        return
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what} contains NaN or infinite values; expected integer labels in [0, {max_index}].")
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise ValueError(
                f"{what} contains non-integer values (e.g. {float(fractional.flat[0])}); "
                f"expected integer labels in [0, {max_index}]."
            )
    elif values.dtype.kind not in "iu":
        raise ValueError(f"{what} has dtype {values.dtype}; expected integer labels in [0, {max_index}].")
    lo, hi = values.min(), values.max()
    if lo < 0 or hi > max_index:
        bad = np.unique(values[(values < 0) | (values > max_index)])
        raise ValueError(
            f"{what} contains label values {bad[:10].tolist()} outside the class range [0, {max_index}] "
            f"given by class_names."
        )


def compute_case_metrics(
    pred: ArrayLike,
    label: ArrayLike,
    class_names: Mapping[int, str],
    spacing: Spacing = None,
    hd95_method: str = "medpy",
) -> dict[str, dict[str, float]]:
    """Per-class ``dice`` and ``hd95`` of one case from two label maps (whole volumes).

    Args:
        pred: predicted label map (integers), e.g. ``(H, W, D)``.
        label: ground-truth label map of the same shape.
        class_names: ``{class index: name}`` of the classes to score; an entry for the background, index 0,
            is ignored (the protocol never scores it). Label values must lie in ``[0, max(class index)]``.
        spacing: voxel size per axis; ``None`` measures HD95 in voxels.
        hd95_method: ``"medpy"`` or ``"monai"``, see :func:`hd95`.

    Returns:
        ``{class name: {"dice": float, "hd95": float}}`` in class-index order.

    Raises:
        ValueError: shape mismatch, or label values outside the class range.
    """
    names = _check_class_names(class_names)
    p, g = _as_numpy(pred), _as_numpy(label)
    _check_pair(p, g)
    max_index = max(names)
    _check_label_values(p, max_index, "prediction")
    _check_label_values(g, max_index, "ground truth")
    out: dict[str, dict[str, float]] = {}
    for index, name in names.items():
        dice, hd = metric_percase(p == index, g == index, spacing=spacing, hd95_method=hd95_method)
        out[name] = {"dice": dice, "hd95": hd}
    return out


# --------------------------------------------------------------------------------------------------
# aggregation and results
# --------------------------------------------------------------------------------------------------


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
    """

    class_names: dict[int, str]
    per_case: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    hd95_unit: str = "voxel"
    hd95_method: str = "medpy"

    def rows(self) -> list[dict[str, Any]]:
        """One ``{"case", "class", "dice", "hd95"}`` row per case and class, cases in insertion order."""
        names = _check_class_names(self.class_names).values()
        return [
            {"case": case, "class": name, "dice": scores[name]["dice"], "hd95": scores[name]["hd95"]}
            for case, scores in self.per_case.items()
            for name in names
        ]

    def summary(self) -> dict[str, Any]:
        """:func:`aggregate` plus ``hd95_unit``, ``hd95_method`` and the class names."""
        out = aggregate(self.per_case, self.class_names)
        out["hd95_unit"] = self.hd95_unit
        out["hd95_method"] = self.hd95_method
        out["class_names"] = {str(k): v for k, v in _check_class_names(self.class_names).items()}
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


# --------------------------------------------------------------------------------------------------
# tables in the paper's form
# --------------------------------------------------------------------------------------------------


def _norm_name(name: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())


def _find_class(per_class: Mapping[str, Any], column: str) -> str:
    by_norm = {_norm_name(n): n for n in per_class}
    for alias in _CLASS_ALIASES[column]:
        if alias in by_norm:
            return by_norm[alias]
    raise ValueError(
        f"no class for the paper's column {column!r} (accepted names: {list(_CLASS_ALIASES[column])}); "
        f"the summary has classes {list(per_class)}."
    )


def _check_dataset(dataset: str) -> str:
    key = str(dataset).lower()
    if key not in TABLE_COLUMNS:
        raise ValueError(f"dataset must be one of {sorted(TABLE_COLUMNS)}, got {dataset!r}.")
    return key


def _as_summary(summary: EvaluationResults | Mapping[str, Any]) -> Mapping[str, Any]:
    return summary.summary() if isinstance(summary, EvaluationResults) else summary


def format_table_row(
    summary: EvaluationResults | Mapping[str, Any], dataset: str = "synapse", name: str = "L2GNet (ours)"
) -> list[str]:
    """Cells of one row in the layout of the paper's Table 1 (Synapse) or Table 2 (ACDC).

    Class columns are matched to the summary's classes by name (e.g. ``"KL"`` <- ``"left kidney"``),
    not by label index: the paper's column order differs from the label order.

    Args:
        summary: an :class:`EvaluationResults` or the dict from :meth:`EvaluationResults.summary` /
            :func:`aggregate`.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name in the first cell.

    Returns:
        ``[name, DSC, HD, ...]`` as strings, DSC in percent, all with 2 decimals, in :data:`TABLE_COLUMNS` order.

    Raises:
        ValueError: unknown dataset, or a paper column with no matching class.
    """
    key = _check_dataset(dataset)
    s = _as_summary(summary)
    per_class = s["per_class"]
    cells = [name, f"{100.0 * s['mean_dsc']:.2f}", f"{s['mean_hd95']:.2f}"]
    for column in TABLE_COLUMNS[key][2:]:
        cls, _, metric = column.partition(" ")
        scores = per_class[_find_class(per_class, cls)]
        value = scores["hd95"] if metric == "HD" else 100.0 * scores["dsc"]
        cells.append(f"{value:.2f}")
    return cells


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]]


def format_comparison(
    our_summary: EvaluationResults | Mapping[str, Any] | None,
    dataset: str = "synapse",
    name: str = "L2GNet (ours)",
) -> str:
    """A text table of our row below the paper's published rows (Table 1 or Table 2).

    Args:
        our_summary: our scores (see :func:`format_table_row`); ``None`` prints only the paper's rows.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name of our row.

    Returns:
        The table as a multi-line string, with a note on the HD95 unit.
    """
    key = _check_dataset(dataset)
    header = ["Method", *TABLE_COLUMNS[key]]
    rows = [[method, *(f"{v:.2f}" for v in values)] for method, values in PAPER_RESULTS[key].items()]
    notes = ["Paper rows as published; the TransUNet protocol they follow calls medpy's hd95 without spacing (voxels)."]
    if our_summary is not None:
        s = _as_summary(our_summary)
        rows.append(format_table_row(s, key, name))
        unit = s.get("hd95_unit", "unknown unit")
        method = s.get("hd95_method", "unknown method")
        notes.append(f"{name}: {s.get('num_cases', '?')} cases, HD95 in {unit} ({method} definition).")
    return "\n".join([_TABLE_TITLES[key], *_render(header, rows), *notes])


# --------------------------------------------------------------------------------------------------
# folders of NIfTI files
# --------------------------------------------------------------------------------------------------


def _strip_nifti(filename: str) -> str | None:
    lower = filename.lower()
    for suffix in _NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return filename[: -len(suffix)]
    return None


def case_name_from_path(path: str) -> str:
    """Case name of a NIfTI file, shared by an image, its ground truth and its prediction.

    The extension, trailing ``_gt``/``_seg``/``_pred``/``_label``/``_mask`` and a leading
    ``label``/``img``/``image``/``pred``/``seg``/``case`` before digits are removed:
    ``label0001.nii.gz``, ``img0001_seg.nii.gz`` and ``case0001_pred.nii.gz`` give ``"0001"``;
    ``patient001_frame01_gt.nii.gz`` and ``patient001_frame01_seg.nii.gz`` give ``"patient001_frame01"``.

    Args:
        path: a file path.

    Returns:
        The case name.
    """
    base = os.path.basename(str(path))
    stem = _strip_nifti(base)
    stem = base if stem is None else stem
    changed = True
    while changed:
        changed = False
        for suffix in _CASE_SUFFIXES:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem, changed = stem[: -len(suffix)], True
    return _CASE_PREFIX.sub("", stem) or stem


def _nifti_files(directory: str, pattern: str, recursive: bool) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(
            os.path.join(root, f)
            for f in sorted(files)
            if _strip_nifti(f) is not None and fnmatch.fnmatch(f, pattern) and not f.startswith(".")
        )
        if not recursive:
            break
    return found


def _label_items(
    labels: str | Sequence[str | Mapping[str, Any]], datalist_key: str, label_key: str, label_pattern: str
) -> list[tuple[str | None, str]]:
    """``[(case or None, label path)]`` from a folder, a JSON datalist, or a list of paths / dicts."""
    base_dir = None
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if os.path.isdir(path):
            files = _nifti_files(path, label_pattern, recursive=False)
            if not files:
                raise FileNotFoundError(f"no ground-truth NIfTI files matching {label_pattern!r} in {path}.")
            return [(None, f) for f in files]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ground truth {path} is neither a folder nor a JSON datalist file.")
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
        if isinstance(content, dict):
            if datalist_key not in content:
                raise ValueError(f"datalist {path} has no key {datalist_key!r} (keys: {sorted(content)}).")
            content = content[datalist_key]
        labels, base_dir = content, os.path.dirname(os.path.abspath(path))
    items: list[tuple[str | None, str]] = []
    for i, item in enumerate(labels):
        if isinstance(item, Mapping):
            if label_key not in item:
                raise ValueError(f"datalist entry {i} has no {label_key!r} key: {dict(item)}.")
            case, label_path = item.get("case"), item[label_key]
        else:
            case, label_path = None, item
        label_path = os.fspath(label_path)
        if base_dir is not None and not os.path.isabs(label_path):
            label_path = os.path.join(base_dir, label_path)
        items.append((None if case is None else str(case), label_path))
    if not items:
        raise ValueError("the ground-truth datalist is empty.")
    return items


def _load_label_map(path: str, max_index: int, what: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:  # (H, W, D, 1) as written by some savers
        data = data[..., 0]
    _check_label_values(data, max_index, f"{what} {path}")
    if data.dtype.kind == "f":
        data = np.rint(data).astype(np.int32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return data, img.affine, zooms


def _header_shape(path: str) -> tuple[int, ...]:
    import nibabel as nib

    shape = tuple(nib.load(path).shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def evaluate_folders(
    pred_dir: str,
    labels: str | Sequence[str | Mapping[str, Any]],
    class_names: Mapping[int, str],
    output_dir: str | None = None,
    use_spacing: bool = True,
    hd95_method: str = "medpy",
    datalist_key: str = "test",
    label_key: str = "label",
    label_pattern: str = "*",
    case_name_fn: Callable[[str], str] | None = None,
) -> EvaluationResults:
    """Score every ground-truth volume against its prediction NIfTI file, as in the paper's tables.

    Predictions are found recursively under ``pred_dir`` (MONAI's ``SaveImage`` writes
    ``<case>/<case>_seg.nii.gz``) and paired with the ground truth by case name
    (:func:`case_name_from_path`). Every pair is checked (present, same shape) before any metric is
    computed; files are written, atomically, only after every case has been scored.

    Args:
        pred_dir: folder with predicted label maps (``.nii`` / ``.nii.gz``), in the ground truth's voxel grid.
        labels: ground truth as a folder of NIfTI files, a JSON datalist file (a list, or a dict whose
            ``datalist_key`` entry is a list, of ``{label_key: path}`` entries; relative paths are
            relative to the JSON file; an optional ``"case"`` entry overrides the case name), or a list of
            paths or such dicts.
        class_names: ``{class index: name}`` of the classes to score, e.g. :data:`SYNAPSE_CLASSES`.
        output_dir: when given, :func:`write_results` writes the CSV and JSON there.
        use_spacing: read the voxel spacing from the ground-truth header and report HD95 in mm;
            ``False`` reports voxels, as TransUNet (and so the paper's tables) did.
        hd95_method: ``"medpy"`` (the protocol, default) or ``"monai"``, see :func:`hd95`.
        datalist_key: key of the list in a JSON datalist dict; ``"test"`` is the test list of the ``dataset.json``
            that ``l2gnet-monai prepare`` writes.
        label_key: key of the ground-truth path in datalist entries.
        label_pattern: ``fnmatch`` pattern selecting ground-truth files in a folder, e.g. ``"*_gt.nii.gz"``.
        case_name_fn: maps a file path to its case name; default :func:`case_name_from_path`.

    Returns:
        The :class:`EvaluationResults`; call ``.summary()`` for the table numbers.

    Raises:
        FileNotFoundError: a missing ground-truth file or prediction (the message names the file and the
            expected case name).
        ValueError: shape mismatch (naming both files), duplicate case names, label values outside the
            class range (naming the file), or invalid arguments.
    """
    if hd95_method not in HD95_METHODS:
        raise ValueError(f"hd95_method must be one of {HD95_METHODS}, got {hd95_method!r}.")
    names = _check_class_names(class_names)
    max_index = max(names)
    name_fn = case_name_fn or case_name_from_path
    pred_dir = os.fspath(pred_dir)
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist.")

    # ground truth and predictions, paired by case name
    cases: dict[str, str] = {}
    for case, label_path in _label_items(labels, datalist_key, label_key, label_pattern):
        if not os.path.isfile(label_path):
            raise FileNotFoundError(f"ground-truth file {label_path} does not exist.")
        case = case or name_fn(label_path)
        if case in cases:
            raise ValueError(f"ground-truth files {cases[case]} and {label_path} have the same case name {case!r}.")
        cases[case] = label_path
    preds: dict[str, str] = {}
    for path in _nifti_files(pred_dir, "*", recursive=True):
        case = name_fn(path)
        if case in preds:
            raise ValueError(f"prediction files {preds[case]} and {path} have the same case name {case!r}.")
        preds[case] = path
    missing = [c for c in cases if c not in preds]
    if missing:
        details = "; ".join(
            f"case {c!r} (ground truth {cases[c]}): expected a file like {c}_seg.nii.gz" for c in missing
        )
        raise FileNotFoundError(f"no prediction in {pred_dir} for {len(missing)} case(s): {details}.")
    for case, label_path in cases.items():
        shape_p, shape_g = _header_shape(preds[case]), _header_shape(label_path)
        if shape_p != shape_g:
            raise ValueError(
                f"case {case!r}: prediction {preds[case]} has shape {shape_p} but ground truth {label_path} "
                f"has shape {shape_g}; predictions must be in the ground truth's voxel grid."
            )

    results = EvaluationResults(class_names=names, hd95_unit="mm" if use_spacing else "voxel", hd95_method=hd95_method)
    for case, label_path in cases.items():
        gt, gt_affine, zooms = _load_label_map(label_path, max_index, "ground truth")
        pred, pred_affine, _ = _load_label_map(preds[case], max_index, "prediction")
        if not np.allclose(pred_affine, gt_affine, atol=1e-3):
            warnings.warn(
                f"case {case!r}: the affine of prediction {preds[case]} differs from that of {label_path}; "
                "the prediction may be flipped or resampled.",
                stacklevel=2,
            )
        results.per_case[case] = compute_case_metrics(
            pred, gt, names, spacing=zooms if use_spacing else None, hd95_method=hd95_method
        )
        logger.info(
            "%s: %s", case, {k: (round(v["dice"], 4), round(v["hd95"], 2)) for k, v in results.per_case[case].items()}
        )
    if output_dir is not None:
        write_results(results, output_dir)
    return results
