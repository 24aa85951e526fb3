# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What training needs to know about its dataset, read from ``dataset.json`` and NIfTI headers only.

:func:`describe_dataset` gives the classes, modality, median spacing and slicing axis of a Decathlon-layout dataset
(or of the synthetic phantom, without generating it); :func:`check_slice_axis` warns about a volume whose own
geometry disagrees with the axis the model slices across.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from l2gnet_monai.data.datalist import dataset_labels, dataset_modality, load_split, resolve_datalist
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.phantom.spec import DEFAULT_SPACING, PHANTOM_LABELS
from l2gnet_monai.planning.geometry import AXIS_NAMES, lowest_resolution_axis, ras_spacing
from l2gnet_monai.planning.plan import read_plan

__all__ = ["describe_dataset", "check_slice_axis"]

logger = logging.getLogger(__name__)

_NO_DATASET = ("", "None", "null")


def _read_spacing(path: str) -> np.ndarray:
    try:
        return ras_spacing(nib.load(path).affine)  # the header only: no voxel data is read
    except Exception as e:
        raise DatasetError(f"{path!r}: cannot read its NIfTI header ({' '.join(str(e).split())}).") from e


def check_slice_axis(
    items: Sequence[Mapping[str, Any]], slice_axis: int, name: str = "datalist", key: str = "image"
) -> list:
    """Warn, once per volume, when a volume's own lowest-resolution axis is not the axis it will be sliced across.

    Such a volume is still processed (across ``slice_axis``, as the model was trained), but its slices are blurred
    through-plane images. Reads NIfTI headers only.

    Args:
        items: datalist entries with file paths under ``key``.
        slice_axis: the RAS axis that is sliced across.
        name: what the list is, for messages.
        key: the key holding the image path.

    Returns:
        ``items``, unchanged.
    """
    for index, item in enumerate(items):
        if not item.get(key):
            continue
        spacing = _read_spacing(os.fspath(item[key]))
        own = lowest_resolution_axis(spacing)
        if own != slice_axis and spacing[own] > spacing[slice_axis] * 1.05:
            logger.warning(
                "%s[%d]: %s has its lowest resolution across the %s axis (RAS spacing %s mm), but the model slices "
                "across the %s axis, as chosen for its training data.",
                name,
                index,
                item[key],
                AXIS_NAMES[own],
                np.round(spacing, 3).tolist(),
                AXIS_NAMES[slice_axis],
            )
    return list(items)


def describe_dataset(
    dataset_dir: str | os.PathLike | None,
    phantom: Mapping[str, Any] | None = None,
    plan_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What training needs to know about its dataset, read without generating or writing anything.

    * a Decathlon-layout dataset: class names and modality from its ``dataset.json``; the median RAS spacing of
      its training images and the slicing axis from their NIfTI headers (a warning names each volume whose own
      geometry disagrees);
    * no dataset (``None``) and an existing ``plan_file``: that plan (a trained bundle that MONAI Label trains
      further on its own datalist keeps its classes);
    * otherwise the synthetic phantom, whose classes and spacing are known without generating it.

    Args:
        dataset_dir: the dataset folder or its ``dataset.json``; ``None`` for the phantom.
        phantom: the phantom's arguments (its ``spacing`` gives the slicing axis).
        plan_file: a plan to take the description from when there is no ``dataset_dir``.

    Returns:
        ``{"class_names": {0: "background", ...}, "modality": "CT" | "MRI", "median_spacing": [x, y, z],
        "slice_axis": 0 | 1 | 2, "dataset": <dataset.json path, or "phantom">}``.

    Raises:
        DatasetError: the dataset, its ``dataset.json`` or one of its headers is unusable.
    """
    if dataset_dir is None or str(dataset_dir).strip() in _NO_DATASET:
        planned = read_plan(plan_file) if plan_file is not None else {}
        if planned:
            keys = ("class_names", "modality", "median_spacing", "slice_axis", "dataset")
            return {key: planned.get(key) for key in keys}
        spacing = [float(s) for s in dict(phantom or {}).get("spacing", DEFAULT_SPACING)]
        return {
            "class_names": dict(PHANTOM_LABELS),
            "modality": "CT",
            "median_spacing": spacing,
            "slice_axis": lowest_resolution_axis(spacing),  # the phantom's affine is diagonal: no reorientation
            "dataset": "phantom",
        }
    datalist_file = resolve_datalist(dataset_dir, phantom_dir=os.devnull)
    items = load_split(datalist_file, "training", holdout_fraction=0.0, require_labels=False)
    spacings = np.stack([_read_spacing(item["image"]) for item in items])
    median = np.median(spacings, axis=0)
    slice_axis = lowest_resolution_axis(median)
    logger.info(
        "dataset %s: median RAS spacing %s mm over %d training volumes; slicing across the %s axis.",
        datalist_file,
        np.round(median, 3).tolist(),
        len(items),
        AXIS_NAMES[slice_axis],
    )
    check_slice_axis(items, slice_axis, name=f"{datalist_file} training")
    return {
        "class_names": dataset_labels(datalist_file),
        "modality": dataset_modality(datalist_file),
        "median_spacing": [round(float(s), 6) for s in median],
        "slice_axis": slice_axis,
        "dataset": datalist_file,
    }
