# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Checks of a volume's voxels, run once per file before any work: readable to the end, finite, valid labels.

:func:`~l2gnet_monai.data.datalist.check_datalist` decodes every file once with :func:`read_voxels` (which is
also what detects a truncated or corrupt file) and hands the array to :func:`check_image_voxels` or
:func:`check_label_voxels`. Each check makes one or two passes over the array (``min``/``max``) and looks
closer only when something is wrong, to name the offending values.
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from l2gnet_monai.data.errors import DatasetError, one_line
from l2gnet_monai.data.msd import AFFINE_ATOL, check_same_grid

__all__ = [
    "LABEL_DTYPE_CLASSES",
    "ClassNames",
    "declared_classes",
    "read_voxels",
    "check_image_voxels",
    "check_label_voxels",
    "check_image_label_grid",
]

#: Number of classes that the training's label dtype (``uint8`` in ``train.json``'s ``EnsureTyped``) can hold.
LABEL_DTYPE_CLASSES = 256

#: Declared classes: ``{index: name}`` (``dataset.json``'s ``labels``, background included) or their number.
ClassNames = Union[Mapping[Any, str], int]


def declared_classes(class_names: ClassNames) -> dict[int, str]:
    """``{index: name}`` for ``0..N-1``, from a class map or a class count; checked to fit the label dtype.

    Args:
        class_names: ``{index: name}`` with the background (as :func:`~l2gnet_monai.data.dataset_labels` gives)
            or the number of classes ``N`` (background included).

    Raises:
        DatasetError: no classes, indices that are not ``0..N-1``, or more classes than ``uint8`` labels hold.
    """
    if isinstance(class_names, Mapping):
        classes = {int(k): str(v) for k, v in class_names.items()}
    else:
        classes = {k: f"class {k}" for k in range(int(class_names))}
    if sorted(classes) != list(range(len(classes))) or len(classes) < 2:
        raise DatasetError(
            f"class_names: expected classes numbered 0..N-1 with N >= 2 (background and at least one class), "
            f"got indices {sorted(classes)}."
        )
    if len(classes) > LABEL_DTYPE_CLASSES:
        raise DatasetError(
            f"class_names: {len(classes)} classes do not fit the uint8 labels of train.json's preprocessing "
            f"(at most {LABEL_DTYPE_CLASSES}); set its EnsureTyped label dtype to torch.int16."
        )
    return classes


def read_voxels(path: str, image: Any, key: str) -> np.ndarray:
    """Every voxel of a NIfTI file, in its stored type (scaled as the header says); the file is decoded once.

    Args:
        path: the file, for messages.
        image: the ``nibabel`` image loaded from ``path`` (header only so far).
        key: the datalist entry, for messages, e.g. ``"train#dataset#data[3]['label']"``.

    Raises:
        DatasetError: the file is truncated or corrupt (a short file, a broken gzip stream).
    """
    try:
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise DatasetError(
            f"{key}: {path!r} is truncated or corrupt ({one_line(e)}); copy or convert the file again."
        ) from e


def check_image_voxels(voxels: np.ndarray, path: str, key: str) -> None:
    """Refuse NaN or infinite intensities: they propagate through normalisation into the loss as NaN.

    Raises:
        DatasetError: naming the file, the number of such voxels and the first one's index.
    """
    if voxels.dtype.kind not in "fc":
        return
    if np.isfinite(voxels.min()) and np.isfinite(voxels.max()):  # min/max propagate NaN and reach +-inf
        return
    bad = ~np.isfinite(voxels)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise DatasetError(
        f"{key}: {path!r} holds {int(bad.sum())} NaN or infinite voxel(s) (the first at index {first}); "
        "replace them, e.g. with the volume's minimum intensity, before training or evaluation."
    )


def check_label_voxels(
    voxels: np.ndarray, path: str, key: str, classes: Mapping[int, str], warn_if_empty: bool = False
) -> None:
    """Refuse label values that are not one of the declared classes ``0..N-1``; optionally warn on empty labels.

    Values above 255 or below 0 are refused here, before the training's ``uint8`` conversion would wrap them
    into valid-looking classes, and before an index beyond ``N - 1`` reaches the loss (``index out of bounds``,
    a device-side assert on CUDA).

    Args:
        voxels: the label map's voxels (integer, or float holding integers).
        path: the file, for messages.
        key: the datalist entry, for messages.
        classes: ``{index: name}`` for ``0..N-1`` (see :func:`declared_classes`).
        warn_if_empty: warn when the volume has no foreground (a training case that teaches background only).

    Raises:
        DatasetError: NaN/infinite or fractional values, or values outside ``0..N-1``; the message names them,
            the declared classes and what to do.
    """
    top = len(classes) - 1
    declared = ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
    if voxels.dtype.kind == "b":
        lo, hi = int(voxels.min()), int(voxels.max())
    elif voxels.dtype.kind in "iuf":
        lo, hi = voxels.min(), voxels.max()
        if voxels.dtype.kind == "f":
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise DatasetError(
                    f"{key}: {path!r} holds NaN or infinite label values; a label map holds the class indices "
                    f"0..{top} ({declared})."
                )
            fractional = voxels != np.rint(voxels)
            if fractional.any():
                raise DatasetError(
                    f"{key}: {path!r} holds non-integer label values (e.g. {float(voxels[fractional][0])}); a label "
                    f"map holds the class indices 0..{top} ({declared}): was an image given as the label?"
                )
    else:
        raise DatasetError(f"{key}: {path!r} has data type {voxels.dtype}; expected an integer label map.")
    if lo < 0 or hi > top:
        outside = np.unique(voxels[(voxels < 0) | (voxels > top)])
        shown = [int(v) for v in outside[:10]] + (["..."] if outside.size > 10 else [])
        raise DatasetError(
            f"{key}: {path!r} holds label values {shown} outside the declared classes 0..{top} ({declared}); "
            "declare every class in dataset.json's 'labels' or map the values in the label file."
        )
    if warn_if_empty and hi == 0:
        warnings.warn(
            f"{key}: {path!r} has no foreground (every voxel is background): this case trains background only; "
            "remove it from the training list if that is not intended.",
            UserWarning,
            stacklevel=3,
        )


def check_image_label_grid(
    image_path: str,
    image_affine: np.ndarray,
    label_path: str,
    label_affine: np.ndarray,
    shape: tuple[int, ...],
    key: str,
    atol: float = AFFINE_ATOL,
) -> None:
    """Refuse an image and a label whose affines (spacing, origin, direction) differ by more than ``atol``.

    The label is then not where the image is in space: MONAI's ``Orientationd``/``Invertd`` and the evaluation
    (HD95 in millimetres) would silently use different grids for the two.

    Args:
        image_path: the image file.
        image_affine: its 4x4 affine.
        label_path: the label file.
        label_affine: its 4x4 affine.
        shape: the spatial shape both share (checked before).
        key: the datalist entry, for messages.
        atol: largest tolerated difference per affine entry (mm), :data:`~l2gnet_monai.data.msd.AFFINE_ATOL`.

    Raises:
        DatasetError: naming both files, their spacings and affines, and what to do.
    """
    try:
        check_same_grid(image_path, shape, image_affine, label_path, shape, label_affine, atol=atol)
    except DatasetError as e:
        raise DatasetError(
            f"{key}: {e}; the label must lie on the image's voxel grid: resample it onto the image "
            f"(e.g. with MONAI's ResampleToMatch) or fix the header that is wrong ({os.path.basename(label_path)})."
        ) from e
