# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What a dataset is, read from ``dataset.json`` and NIfTI headers only, and where a trained model's data is.

:func:`describe_dataset` gives the classes, modality, median spacing and slicing axis of a Decathlon-layout dataset
(or of the synthetic phantom, without generating it), or of the dataset a trained model was trained on (a resumed
or further-trained model keeps its plan); :func:`dataset_datalist` finds that data again for training and
evaluation; :func:`evaluation_split` picks the held-out cases to score; :func:`check_slice_axis` warns about a
volume whose own geometry disagrees with the axis the model slices across.
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
from l2gnet_monai.data.phantom.spec import (
    DEFAULT_NUM_TRAINING,
    DEFAULT_NUM_VALIDATION,
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    PHANTOM_LABELS,
)
from l2gnet_monai.planning.geometry import AXIS_NAMES, lowest_resolution_axis, ras_spacing

__all__ = ["describe_dataset", "dataset_datalist", "evaluation_split", "check_slice_axis"]

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


def _phantom_record(
    phantom: Mapping[str, Any] | None, phantom_dir: str | os.PathLike | None, bundle_root: str | os.PathLike | None
) -> dict[str, Any]:
    settings = dict(phantom or {})
    record = {
        "num_training": int(settings.get("num_training", DEFAULT_NUM_TRAINING)),
        "num_validation": int(settings.get("num_validation", DEFAULT_NUM_VALIDATION)),
        "shape": [int(s) for s in settings.get("shape", DEFAULT_SHAPE)],
        "spacing": [float(s) for s in settings.get("spacing", DEFAULT_SPACING)],
        "seed": int(settings.get("seed", 0)),
    }
    if phantom_dir is not None:
        folder = os.path.abspath(os.fspath(phantom_dir))
        root = os.path.abspath(os.fspath(bundle_root)) if bundle_root is not None else None
        # inside the bundle: recorded relative to it, so that a packaged or moved bundle finds it again
        inside = root is not None and os.path.commonpath([folder, root]) == root
        record["dir"] = os.path.relpath(folder, root) if inside else folder
    return record


def _names(class_names: Mapping[Any, str]) -> dict[int, str]:
    return {int(k): str(v) for k, v in class_names.items()}


def describe_dataset(
    dataset_dir: str | os.PathLike | None,
    phantom: Mapping[str, Any] | None = None,
    phantom_dir: str | os.PathLike | None = None,
    trained_plan: Mapping[str, Any] | None = None,
    bundle_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What training needs to know about its dataset, read without generating or writing anything.

    * ``trained_plan`` (a resumed training, or a trained model trained further, e.g. by MONAI Label): the plan's
      classes, modality and slicing axis, and its dataset unless ``dataset_dir`` names another one with the same
      classes;
    * a Decathlon-layout dataset: class names and modality from its ``dataset.json``; the median RAS spacing of
      its training images and the slicing axis from their NIfTI headers (a warning names each volume whose own
      geometry disagrees);
    * otherwise the synthetic phantom, whose classes and spacing are known without generating it.

    Args:
        dataset_dir: the dataset folder or its ``dataset.json``; ``None`` for the phantom (or the plan's dataset).
        phantom: the phantom's arguments (its ``spacing`` gives the slicing axis).
        phantom_dir: where the phantom is (recorded, so that evaluation finds the same cases).
        trained_plan: the plan of the weights this training continues (``{}``/``None``: a new training).
        bundle_root: the bundle's folder: a phantom inside it is recorded relative to it.

    Returns:
        ``{"class_names": {0: "background", ...}, "modality": "CT" | "MRI", "median_spacing": [x, y, z],
        "slice_axis": 0 | 1 | 2, "dataset": {"datalist": <dataset.json> | None, "phantom": <settings> | None}}``.

    Raises:
        DatasetError: the dataset, its ``dataset.json`` or one of its headers is unusable, or ``dataset_dir``'s
            classes differ from the trained plan's.
    """
    given = dataset_dir is not None and str(dataset_dir).strip() not in _NO_DATASET
    if trained_plan:
        keys = ("class_names", "modality", "median_spacing", "slice_axis")
        description = {key: trained_plan.get(key) for key in keys}
        description["dataset"] = trained_plan.get("dataset") or {"datalist": None, "phantom": None}
        if given:
            datalist_file = resolve_datalist(dataset_dir, phantom_dir=os.devnull)
            classes = dataset_labels(datalist_file)
            if classes != _names(trained_plan["class_names"]):
                raise DatasetError(
                    f"dataset_dir: {datalist_file} declares the classes {classes}, but the weights being trained "
                    f"further were trained on {_names(trained_plan['class_names'])}; give a dataset with the same "
                    "classes, or start a new training in another --ckpt_dir."
                )
            description["dataset"] = {"datalist": datalist_file, "phantom": None}
        return description
    if not given:
        record = _phantom_record(phantom, phantom_dir, bundle_root)
        return {
            "class_names": dict(PHANTOM_LABELS),
            "modality": "CT",
            "median_spacing": record["spacing"],
            "slice_axis": lowest_resolution_axis(record["spacing"]),  # the phantom's affine is diagonal
            "dataset": {"datalist": None, "phantom": record},
        }
    datalist_file = resolve_datalist(dataset_dir, phantom_dir=os.devnull)
    items = load_split(datalist_file, "training", holdout_fraction=0.0, require_labels=False)
    spacings = np.stack([_read_spacing(item["image"]) for item in items])
    median = np.median(spacings, axis=0)
    slice_axis = lowest_resolution_axis(median)
    logger.info(
        "dataset %s: median RAS spacing %s mm over %d training volumes; its thickest axis is the %s axis.",
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
        "dataset": {"datalist": datalist_file, "phantom": None},
    }


def dataset_datalist(
    description: Mapping[str, Any],
    dataset_dir: str | os.PathLike | None = None,
    bundle_root: str | os.PathLike | None = None,
    fallback: str | os.PathLike | None = None,
) -> str:
    """The ``dataset.json`` of a dataset description (:func:`describe_dataset`'s, or a plan's): the same data again.

    Args:
        description: has ``"dataset"``: ``{"datalist": path}`` or ``{"phantom": settings with "dir"}``, and
            ``"class_names"``.
        dataset_dir: another dataset to use instead (its classes must be the description's).
        bundle_root: the bundle's folder, for a phantom recorded relative to it.
        fallback: what to return when the description names no dataset (weights without a plan); ``None`` raises.

    Returns:
        The path of the ``dataset.json`` (the phantom is generated where the plan says, if it is not there).

    Raises:
        DatasetError: the dataset is gone, or ``dataset_dir``'s classes differ.
    """
    if dataset_dir is not None and str(dataset_dir).strip() not in _NO_DATASET:
        datalist_file = resolve_datalist(dataset_dir, phantom_dir=os.devnull)
        classes, expected = dataset_labels(datalist_file), _names(description.get("class_names") or {})
        if expected and classes != expected:
            raise DatasetError(
                f"dataset_dir: {datalist_file} declares the classes {classes}, but the model was trained on {expected}."
            )
        return datalist_file
    dataset = dict(description.get("dataset") or {})
    if dataset.get("datalist"):
        path = os.fspath(dataset["datalist"])
        if not os.path.isfile(path):
            raise DatasetError(
                f"dataset: the model was trained on {path!r}, which is gone; give the dataset with --dataset_dir."
            )
        return path
    phantom = dict(dataset.get("phantom") or {})
    if not phantom.get("dir") and fallback is not None:
        return os.fspath(fallback)
    if not phantom.get("dir"):
        raise DatasetError("dataset: the plan names no dataset this model was trained on; give one with --dataset_dir.")
    folder = phantom.pop("dir")
    if not os.path.isabs(folder):
        folder = os.path.join(os.fspath(bundle_root) if bundle_root is not None else os.getcwd(), folder)
    return resolve_datalist(None, phantom_dir=folder, phantom=phantom)


def evaluation_split(
    split: str,
    datalist_file: str | os.PathLike,
    validation_split: str = "validation",
    plan: Mapping[str, Any] | None = None,
) -> str:
    """The datalist key to evaluate: ``split`` itself, or for ``"auto"`` the labelled ``test`` list when the dataset
    has one (``imagesTs``/``labelsTs``), else the validation cases the training held out.

    A fold of a cross-validation (the plan's ``"fold"``) is evaluated on the cases it held out (``"auto"`` gives
    ``"validation"``, which are those cases); an ensemble of folds, whose folds trained on every case of the
    ``training`` list between them, only on the dataset's ``test`` list or its own ``validation`` list (``"auto"``:
    the first of them it has).

    Args:
        split: ``"auto"``, ``"test"``, ``"validation"`` or ``"training"``.
        datalist_file: the dataset's ``dataset.json``.
        validation_split: the key the training validated on (the plan's).
        plan: the plan of the evaluated weights.

    Raises:
        DatasetError: an ensemble of folds asked to score cases that some fold trained on, or a dataset without
            cases it can score.
    """
    plan = plan or {}
    if split == "auto" and plan.get("fold"):
        return "validation"
    ensemble_folds = list((plan.get("ensemble") or {}).get("folds") or [])
    if len(ensemble_folds) > 1:
        return _ensemble_split(split, datalist_file, ensemble_folds)
    if split != "auto":
        return split
    return "test" if _labelled_cases(datalist_file, "test") else validation_split


def _labelled_cases(datalist_file: str | os.PathLike, split: str) -> bool:
    try:
        return bool(load_split(datalist_file, split, holdout_fraction=0, require_labels=True))
    except (DatasetError, ValueError, KeyError):  # no such list, or images without labels: nothing to score
        return False


def _ensemble_split(split: str, datalist_file: str | os.PathLike, folds: list) -> str:
    """The split an ensemble of folds is scored on: ``test``, or the dataset's own ``validation`` list; never cases
    of the cross-validation, each of which some fold trained on."""
    if split in ("auto", "test") and _labelled_cases(datalist_file, "test"):
        return "test"
    if split in ("auto", "validation") and _labelled_cases(datalist_file, "validation"):
        return "validation"  # with holdout_fraction 0: the dataset's own list, which cross-validation leaves out
    raise DatasetError(
        f"evaluation_split: the folds {folds} of the ensemble trained on every case of {os.fspath(datalist_file)!r}'s "
        f"training list between them, so it can only be scored on a labelled test or validation list"
        + (f" (asked for {split!r}, which it lacks)" if split in ("test", "validation") else f", not on {split!r}")
        + ". Each fold's scores on its held-out cases come from evaluating it with --fold K."
    )
