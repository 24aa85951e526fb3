# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Per-case metrics of the paper's protocol: Dice and HD95 per class on whole 3-D volumes.

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

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

__all__ = ["HD95_METHODS", "dice_score", "hd95", "metric_percase", "compute_case_metrics"]

ArrayLike = Union[np.ndarray, torch.Tensor]
Spacing = Union[float, Sequence[float], None]

HD95_METHODS = ("medpy", "monai")


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
