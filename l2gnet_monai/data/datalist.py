# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Datalists for the bundle: which ``dataset.json`` to read, its splits and classes, and checks of its files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.phantom.cache import ensure_phantom_dataset
from l2gnet_monai.data.volume_checks import (
    ClassNames,
    check_image_label_grid,
    check_image_voxels,
    check_label_voxels,
    declared_classes,
    read_voxels,
)

__all__ = [
    "DatalistError",
    "resolve_datalist",
    "load_split",
    "dataset_labels",
    "dataset_num_classes",
    "dataset_modality",
    "check_datalist",
    "list_images",
]

logger = logging.getLogger(__name__)

#: Splits a ``dataset.json`` may hold (MSD uses ``training`` and ``test``; our converters add ``validation``).
SPLITS = ("training", "validation", "test")


#: A dataset, datalist or data file that the workflows cannot use; the message names the file or key.
DatalistError = DatasetError


def resolve_datalist(
    dataset_dir: str | os.PathLike | None,
    phantom_dir: str | os.PathLike,
    phantom: Mapping[str, Any] | None = None,
) -> str:
    """The ``dataset.json`` to train and validate on.

    Args:
        dataset_dir: a dataset in the Medical Segmentation Decathlon layout (a folder with ``dataset.json``,
            or the ``dataset.json`` file itself). ``None`` or ``""`` selects the synthetic CT phantom.
        phantom_dir: where the phantom lives; it is generated there on first use.
        phantom: arguments of :func:`~l2gnet_monai.data.phantom.ensure_phantom_dataset` (number of cases,
            shape, spacing, seed).

    Returns:
        The path of the ``dataset.json`` file.

    Raises:
        DatalistError: ``dataset_dir`` does not exist or has no ``dataset.json``.
    """
    if dataset_dir is None or str(dataset_dir).strip() in ("", "None", "null"):
        return ensure_phantom_dataset(phantom_dir, **dict(phantom or {}))
    path = os.path.abspath(os.fspath(dataset_dir))
    if os.path.isfile(path) and path.endswith(".json"):
        return path
    if not os.path.isdir(path):
        raise DatalistError(f"dataset_dir: folder {path!r} does not exist (set dataset_dir to a dataset folder).")
    datalist = os.path.join(path, "dataset.json")
    if not os.path.isfile(datalist):
        raise DatalistError(
            f"dataset_dir: {path!r} has no dataset.json; expected the Medical Segmentation Decathlon layout "
            "(imagesTr/, labelsTr/, dataset.json). Convert raw data with `l2gnet-monai prepare SRC DST`."
        )
    return datalist


def _read_json(datalist_file: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(datalist_file) as f:
            content = json.load(f)
    except FileNotFoundError as e:
        raise DatalistError(f"datalist: no such file {os.fspath(datalist_file)!r}.") from e
    except json.JSONDecodeError as e:
        raise DatalistError(f"datalist: {os.fspath(datalist_file)!r} is not valid JSON ({e}).") from e
    if not isinstance(content, dict):
        raise DatalistError(f"datalist: {os.fspath(datalist_file)!r} must hold a JSON object.")
    return content


def _holdout(items: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Deterministic split: every ``round(1 / fraction)``-th case (in file order) is held out."""
    if len(items) < 2 or fraction <= 0:
        return items, []
    step = max(2, round(1 / fraction))
    held = [item for i, item in enumerate(items) if i % step == step - 1] or items[-1:]
    kept = [item for item in items if item not in held]
    return kept, held


def load_split(
    datalist_file: str | os.PathLike,
    split: str,
    holdout_fraction: float = 0.2,
    require_labels: bool = True,
) -> list[dict[str, Any]]:
    """Cases of one split of a ``dataset.json``, with absolute paths.

    When the file has no (or an empty) ``validation`` list, as the Decathlon's own files, every fifth
    training case (``holdout_fraction``) is held out for validation and left out of ``training``.
    ``holdout_fraction=0`` keeps every training case for training (the Synapse protocol, which has no
    validation set); the ``validation`` split of such a file is then empty.

    Args:
        datalist_file: the ``dataset.json``.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        holdout_fraction: fraction of training cases held out when there is no validation list, in ``[0, 1)``.
        require_labels: every case must have a ``label`` (evaluation needs it; inference does not).

    Returns:
        A list of ``{"image": path, "label": path, ...}`` dicts.

    Raises:
        DatalistError: unknown split, ``holdout_fraction`` outside ``[0, 1)``, no cases in the split, or cases
            without labels.
    """
    if split not in SPLITS:
        raise DatalistError(f"datalist: unknown split {split!r}; expected one of {SPLITS}.")
    if not 0 <= holdout_fraction < 1:
        raise DatalistError(f"datalist: holdout_fraction must be in [0, 1), got {holdout_fraction!r}.")
    content = _read_json(datalist_file)
    base = os.path.dirname(os.path.abspath(datalist_file))

    def read(key: str) -> list[dict]:
        if not content.get(key):
            return []
        items = load_decathlon_datalist(datalist_file, is_segmentation=require_labels, data_list_key=key, base_dir=base)
        return [item if isinstance(item, dict) else {"image": item} for item in items]

    if split == "test":
        items = read("test")
    elif content.get("validation"):
        items = read(split)
    else:
        training, validation = _holdout(read("training"), holdout_fraction)
        items = training if split == "training" else validation
    if not items:
        hint = ""
        if split == "validation" and holdout_fraction <= 0:
            hint = " (it has no validation list and holdout_fraction is 0: validate on another split)"
        raise DatalistError(f"datalist: {os.fspath(datalist_file)!r} has no {split!r} cases{hint}.")
    if require_labels:
        missing = [item["image"] for item in items if not item.get("label")]
        if missing:
            raise DatalistError(
                f"datalist: {split!r} cases without a label in {os.fspath(datalist_file)!r}: {missing[:5]}"
            )
    return items


def list_images(source: str | os.PathLike | Sequence[str], split: str = "validation") -> list[dict[str, str]]:
    """Volumes to segment, as ``[{"image": path}, ...]``.

    Args:
        source: a folder of NIfTI files (all ``*.nii``/``*.nii.gz`` in it, sorted), a dataset folder with a
            ``dataset.json`` or that file itself (the images of ``split``), one NIfTI file, or a list of paths.
        split: the ``dataset.json`` split to take when ``source`` is a dataset.

    Raises:
        DatalistError: ``source`` does not exist or holds no NIfTI volumes.
    """
    if isinstance(source, (list, tuple)):
        return [{"image": os.path.abspath(os.fspath(p))} for p in source]
    path = os.path.abspath(os.fspath(source))
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "dataset.json")):
        path = os.path.join(path, "dataset.json")
    if os.path.isfile(path) and path.endswith(".json"):
        return [{"image": item["image"]} for item in load_split(path, split, require_labels=False)]
    if os.path.isfile(path) and path.endswith((".nii", ".nii.gz")):
        return [{"image": path}]
    if not os.path.isdir(path):
        raise DatalistError(f"input: {path!r} is neither a folder, a dataset.json nor a NIfTI file.")
    images = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".nii", ".nii.gz")))
    if not images:
        raise DatalistError(f"input: folder {path!r} holds no .nii or .nii.gz files.")
    return [{"image": image} for image in images]


def dataset_labels(datalist_file: str | os.PathLike) -> dict[int, str]:
    """Class names of a ``dataset.json`` (``labels``), ``{0: "background", 1: ...}``, background included."""
    content = _read_json(datalist_file)
    labels = content.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatalistError(f"datalist: {os.fspath(datalist_file)!r} has no 'labels' mapping of class names.")
    try:
        mapping = {int(k): str(v) for k, v in labels.items()}
    except ValueError as e:
        raise DatalistError(f"datalist: 'labels' keys of {os.fspath(datalist_file)!r} must be integers ({e}).") from e
    if sorted(mapping) != list(range(len(mapping))):
        raise DatalistError(
            f"datalist: 'labels' of {os.fspath(datalist_file)!r} must number the classes 0..N-1, got {sorted(mapping)}."
        )
    return mapping


def dataset_num_classes(datalist_file: str | os.PathLike) -> int:
    """Number of classes (background included) declared by a ``dataset.json``."""
    return len(dataset_labels(datalist_file))


def dataset_modality(datalist_file: str | os.PathLike) -> str:
    """``"CT"`` or ``"MRI"``: the first channel's modality declared by a ``dataset.json`` (``CT`` if absent)."""
    modality = _read_json(datalist_file).get("modality", {"0": "CT"})
    value = str(modality.get("0", "CT") if isinstance(modality, dict) else modality).upper()
    return "CT" if value == "CT" else "MRI"


def _load_header(path: str, key: str) -> tuple[tuple[int, ...], Any]:
    """Spatial shape (trailing singleton dimensions dropped) and the nibabel image, without reading the data."""
    if not os.path.isfile(path):
        raise DatalistError(f"{key}: file not found: {path!r}.")
    try:
        image = nib.load(path)
    except Exception as e:
        raise DatalistError(f"{key}: cannot read {path!r} as NIfTI ({e}).") from e
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape, image


def check_datalist(
    items: Sequence[dict[str, Any]],
    name: str = "datalist",
    keys: Sequence[str] = ("image", "label"),
    spatial_dims: int = 3,
    check_integrity: bool = True,
    class_names: ClassNames | None = None,
    warn_empty_labels: bool = False,
) -> list[dict[str, Any]]:
    """Check every file of a datalist before any work starts, so bad input stops with a clear message.

    Checks that the list is not empty, that every file exists and is a readable NIfTI volume with
    ``spatial_dims`` dimensions (a 2-D image where a volume is expected is refused) of integer or floating-point
    voxels, and that image and label of a case have the same shape and the same affine (spacing, origin and
    direction, within :data:`~l2gnet_monai.data.msd.AFFINE_ATOL` mm). With ``check_integrity`` every file is
    decoded once, which finds truncated or corrupt files, and its voxels are checked
    (:mod:`~l2gnet_monai.data.volume_checks`): images must hold no NaN or infinite values; labels (when
    ``class_names`` is given) only the declared class indices ``0..N-1``; with ``warn_empty_labels`` a label
    without foreground gives a warning.

    Training checks everything up front (it reads every case many times). Inference and evaluation check headers
    only (``check_integrity=False``) and each case's voxels as it is loaded
    (:class:`~l2gnet_monai.data.streaming.CheckVoxelsd`), so every volume is decoded once and the first output
    does not wait for the last file.

    Args:
        items: ``[{"image": path, "label": path}, ...]``.
        name: what the list is, for messages (e.g. the config key ``"train#dataset#data"``).
        keys: keys holding file paths; those absent from an item are skipped (``label`` for inference). The
            ``"label"`` key holds label maps, every other key images.
        spatial_dims: required number of spatial dimensions.
        check_integrity: decode every file once and check its voxels (without it only headers are read).
        class_names: the declared classes, ``{index: name}`` with the background (the bundle's
            ``class_names``) or their number; ``None`` skips the label-value check.
        warn_empty_labels: warn about label volumes without foreground (for the training split).

    Returns:
        ``items``, unchanged.

    Raises:
        DatalistError: with the key and the file concerned, what is wrong and what to do.
    """
    if not items:
        raise DatalistError(f"{name}: the datalist is empty; there is nothing to process.")
    classes = None if class_names is None else declared_classes(class_names)
    for index, item in enumerate(items):
        shapes: dict[str, tuple[int, ...]] = {}
        affines: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in item or item[key] is None:
                continue
            path = os.fspath(item[key])
            where = f"{name}[{index}]['{key}']"
            shape, image = _load_header(path, where)
            if len(shape) != spatial_dims:
                raise DatalistError(f"{where}: {path!r} has shape {shape}; expected a {spatial_dims}-D volume.")
            dtype = np.dtype(image.get_data_dtype())
            if dtype.kind not in "biuf":
                raise DatalistError(
                    f"{where}: {path!r} stores {dtype} voxels; expected integer or floating-point intensities "
                    "(convert RGB or complex volumes to one scalar channel)."
                )
            if check_integrity:
                voxels = read_voxels(path, image, where)
                if key != "label":
                    check_image_voxels(voxels, path, where)
                elif classes is not None:
                    check_label_voxels(voxels, path, where, classes, warn_if_empty=warn_empty_labels)
                del voxels
            shapes[key], affines[key] = shape, image.affine
        if len(set(shapes.values())) > 1:
            described = ", ".join(f"{k} {os.fspath(item[k])!r} {s}" for k, s in shapes.items())
            raise DatalistError(f"{name}[{index}]: image and label shapes differ: {described}.")
        if "image" in affines and "label" in affines:
            check_image_label_grid(
                os.fspath(item["image"]),
                affines["image"],
                os.fspath(item["label"]),
                affines["label"],
                shapes["image"],
                f"{name}[{index}]",
            )
    logger.info("%s: %d cases checked.", name, len(items))
    return list(items)
