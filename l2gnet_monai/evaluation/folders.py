# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Scoring folders of NIfTI files: predictions paired with their ground truth by case name."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from l2gnet_monai.evaluation.metrics import HD95_METHODS, _check_class_names, _check_label_values, compute_case_metrics
from l2gnet_monai.evaluation.results import EvaluationResults, write_results

__all__ = ["case_name_from_path", "infer_class_names", "evaluate_folders"]

logger = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CASE_SUFFIXES = ("_gt", "_seg", "_pred", "_prediction", "_label", "_labels", "_mask")
_CASE_PREFIX = re.compile(r"^(label|labels|img|image|pred|seg|case)[_-]?(?=\d)", re.IGNORECASE)


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


def infer_class_names(label_paths: Sequence[str]) -> dict[int, str]:
    """Classes ``1..K`` named ``"class k"``, ``K`` the largest label value in the ground-truth files.

    For ground truth without a class map: reads every file once. A class that no ground truth holds but a
    prediction does is then reported as a label value out of range (give the classes explicitly).

    Args:
        label_paths: ground-truth NIfTI files (integer label maps).

    Returns:
        ``{1: "class 1", ..., K: "class K"}``.

    Raises:
        ValueError: a file with negative or non-integer values, or no foreground in any file.
    """
    import nibabel as nib

    largest = 0
    for path in label_paths:
        data = np.asanyarray(nib.load(path).dataobj)
        top = float(np.max(data)) if data.size else 0.0
        # checked against its own maximum: catches NaN, fractions and negative values, never the range
        _check_label_values(data, int(top) if np.isfinite(top) and top >= 0 else 0, f"ground truth {path}")
        largest = max(largest, int(top))
    if largest < 1:
        raise ValueError(f"the ground truth holds no foreground label (> 0) in any of {len(label_paths)} file(s).")
    return {k: f"class {k}" for k in range(1, largest + 1)}


def evaluate_folders(
    pred_dir: str,
    labels: str | Sequence[str | Mapping[str, Any]],
    class_names: Mapping[int, str] | None,
    output_dir: str | None = None,
    use_spacing: bool = True,
    hd95_method: str = "medpy",
    datalist_key: str = "test",
    label_key: str = "label",
    label_pattern: str = "*",
    case_name_fn: Callable[[str], str] | None = None,
    method: str | None = None,
    on_case: Callable[[str, np.ndarray, np.ndarray, np.ndarray, str], None] | None = None,
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
        class_names: ``{class index: name}`` of the classes to score, e.g. :data:`SYNAPSE_CLASSES` or a
            ``dataset.json``'s ``labels``; ``None`` infers them from the ground truth (:func:`infer_class_names`).
        output_dir: when given, :func:`write_results` writes the CSV and JSON there.
        use_spacing: read the voxel spacing from the ground-truth header and report HD95 in mm;
            ``False`` reports voxels, as TransUNet (and so the paper's tables) did.
        hd95_method: ``"medpy"`` (the protocol, default) or ``"monai"``, see :func:`hd95`.
        datalist_key: key of the list in a JSON datalist dict; ``"test"`` is the test list of the ``dataset.json``
            that ``l2gnet-monai prepare`` writes.
        label_key: key of the ground-truth path in datalist entries.
        label_pattern: ``fnmatch`` pattern selecting ground-truth files in a folder, e.g. ``"*_gt.nii.gz"``.
        case_name_fn: maps a file path to its case name; default :func:`case_name_from_path`.
        method: what was scored (the row label of the tables), recorded in the summary.
        on_case: called after each case is scored with ``(case, prediction, ground truth, affine, ground-truth
            path)``, e.g. :meth:`l2gnet_monai.evaluation.ReportBuilder.add_case` through a small adapter.

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
    names = None if class_names is None else _check_class_names(class_names)
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

    if names is None:
        names = infer_class_names(list(cases.values()))
    max_index = max(names)
    unit = "mm" if use_spacing else "voxel"
    results = EvaluationResults(class_names=names, hd95_unit=unit, hd95_method=hd95_method, method=method)
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
        if on_case is not None:
            on_case(case, pred, gt, gt_affine, label_path)
    if output_dir is not None:
        write_results(results, output_dir)
    return results
