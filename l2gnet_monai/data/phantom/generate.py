# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Rendering phantom cases and writing them as a dataset in the Medical Segmentation Decathlon layout."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any, Union

import nibabel as nib
import numpy as np
from scipy import ndimage

from l2gnet_monai.data.phantom.canvas import Canvas, correlated_noise, smooth_field
from l2gnet_monai.data.phantom.geometry import Grid, phantom_affine
from l2gnet_monai.data.phantom.organs import Organs
from l2gnet_monai.data.phantom.spec import (
    DEFAULT_NUM_TRAINING,
    DEFAULT_NUM_VALIDATION,
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    GENERATOR_NAME,
    PHANTOM_GENERATOR_VERSION,
    PHANTOM_LABELS,
)
from l2gnet_monai.data.phantom.torso import Torso

__all__ = ["PathLike", "generate_phantom_case", "generate_phantom_dataset", "generator_entry"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


class _Anatomy(Torso, Organs):
    """One case's anatomy, sampled and painted in anatomical order (context first, bones last)."""

    def run(self) -> None:
        """Sample the case's parameters, then paint its structures; a later one covers an earlier one."""
        self.sample_case()
        self.plan_pancreas()
        self.body()
        self.bowel()
        self.muscles()
        self.liver()
        self.gallbladder()
        self.stomach()
        self.spleen()
        self.kidneys()
        self.pancreas_and_vessels()
        self.skeleton()


def _check_args(shape: Sequence[int], spacing: Sequence[float], seed: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(shape, spacing)`` as tuples of int and float; raises ``ValueError`` for invalid arguments."""
    shape_t = tuple(int(n) for n in shape)
    spacing_t = tuple(float(s) for s in spacing)
    if len(shape_t) != 3 or min(shape_t) < 1:
        raise ValueError(f"shape must be three positive integers (H, W, D), got {shape}.")
    if len(spacing_t) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ValueError(f"spacing must be three positive millimetre values (sx, sy, sz), got {spacing}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    return shape_t, spacing_t


def generate_phantom_case(
    case_index: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one phantom case.

    The case depends only on ``(seed, case_index)`` (random generator
    ``numpy.random.default_rng([seed, case_index])``), not on how many cases a dataset has. The anatomy
    is sampled in millimetres before anything depends on the grid, so the same case rendered with a
    different ``shape``/``spacing`` has the same organs (only texture and noise differ). The field of
    view is ``shape * spacing`` centred on the abdomen; the defaults cover 400 x 400 x 240 mm.

    Args:
        case_index: index of the case (non-negative).
        shape: ``(H, W, D)`` voxels; axes run to the patient's left, posterior and superior.
        spacing: ``(sx, sy, sz)`` voxel size in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        ``(image, label, affine)``: ``int16`` HU image, ``uint8`` label map in the Synapse order
        (:data:`~l2gnet_monai.data.phantom.PHANTOM_LABELS`), both of shape ``shape``, and the ``(4, 4)`` NIfTI affine
        (:func:`~l2gnet_monai.data.phantom.phantom_affine`).
    """
    shape_t, spacing_t = _check_args(shape, spacing, seed)
    if int(case_index) < 0:
        raise ValueError(f"case_index must be non-negative, got {case_index}.")
    rng = np.random.default_rng([int(seed), int(case_index)])
    texture_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))  # grid-dependent draws use their own stream
    z_shift = float(rng.uniform(-25.0, 25.0))  # which part of the abdomen the scan covers
    grid = Grid(shape_t, spacing_t, z_shift)
    canvas = Canvas(grid)
    canvas.textures = {
        "coarse": smooth_field(texture_rng, grid, 60.0),
        "medium": smooth_field(texture_rng, grid, 14.0),
        "fine": correlated_noise(texture_rng, shape_t, (0.8, 0.8, 0.5)),
    }
    anatomy = _Anatomy(rng, canvas)
    anatomy.run()
    # partial volume / reconstruction blur, then correlated quantum noise
    image = ndimage.gaussian_filter(canvas.image, sigma=(0.6, 0.6, 0.4), mode="nearest")
    image += np.float32(anatomy.noise_sd) * correlated_noise(texture_rng, shape_t, (0.6, 0.6, 0.0))
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    return image, canvas.label, phantom_affine(shape_t, spacing_t)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: str, is_label: bool) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if is_label:
        img.header.set_intent("label")
    nib.save(img, path)


def generator_entry(
    num_training: int, num_validation: int, shape: Sequence[int], spacing: Sequence[float], seed: int
) -> dict[str, Any]:
    """The ``generator`` record of ``dataset.json``: what produced it, in a JSON round-trip-stable form."""
    shape_t, spacing_t = _check_args(shape, spacing, seed)
    if int(num_training) < 1 or int(num_validation) < 0:
        raise ValueError(f"need num_training >= 1 and num_validation >= 0, got {num_training}, {num_validation}.")
    return {
        "name": GENERATOR_NAME,
        "version": PHANTOM_GENERATOR_VERSION,
        "num_training": int(num_training),
        "num_validation": int(num_validation),
        "shape": list(shape_t),
        "spacing": list(spacing_t),
        "seed": int(seed),
    }


def generate_phantom_dataset(
    dataset_dir: PathLike,
    num_training: int = DEFAULT_NUM_TRAINING,
    num_validation: int = DEFAULT_NUM_VALIDATION,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> str:
    """Write a phantom dataset in the Medical Segmentation Decathlon layout into ``dataset_dir``.

    Cases ``phantom_0000 ...`` are :func:`generate_phantom_case` ``(i, shape, spacing, seed)``; the first
    ``num_training`` go to ``training``, the next ``num_validation`` to ``validation``. Files are written
    in place (``dataset.json`` last); use :func:`~l2gnet_monai.data.phantom.ensure_phantom_dataset` for a safe,
    generate-once call.

    Args:
        dataset_dir: output folder (created if needed; existing files of the same names are overwritten).
        num_training: number of training cases (>= 1).
        num_validation: number of held-out validation cases (>= 0).
        shape: ``(H, W, D)`` voxels per volume.
        spacing: ``(sx, sy, sz)`` in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        the path of the written ``dataset.json``.
    """
    generator = generator_entry(num_training, num_validation, shape, spacing, seed)
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(dataset_dir, sub), exist_ok=True)
    start = time.perf_counter()
    entries = []
    for index in range(generator["num_training"] + generator["num_validation"]):
        image, label, affine = generate_phantom_case(index, generator["shape"], generator["spacing"], generator["seed"])
        name = f"phantom_{index:04d}.nii.gz"
        _save_nifti(image, affine, os.path.join(dataset_dir, "imagesTr", name), is_label=False)
        _save_nifti(label, affine, os.path.join(dataset_dir, "labelsTr", name), is_label=True)
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    ntr = generator["num_training"]
    description = (
        "Synthetic abdominal CT phantom (HU) with the 8 Synapse organs, generated by l2gnet_monai.data.phantom. "
        "Voxel axes run to the patient's left, posterior and superior (NIfTI affine diag(-sx, -sy, sz))."
    )
    dataset = {
        "name": "L2GNetAbdomenPhantom",
        "description": description,
        "reference": "l2gnet_monai.data.phantom",
        "licence": "Apache-2.0 (synthetic data)",
        "release": f"{PHANTOM_GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in PHANTOM_LABELS.items()},
        "numTraining": ntr,
        "numValidation": generator["num_validation"],
        "numTest": 0,
        "training": entries[:ntr],
        "validation": entries[ntr:],
        "test": [],
        "generator": generator,
    }
    json_path = os.path.join(dataset_dir, "dataset.json")
    with open(json_path + ".part", "w") as f:
        json.dump(dataset, f, indent=2)
    os.replace(json_path + ".part", json_path)
    logger.info(
        "Generated %d phantom cases of shape %s in %s (%.1f s).",
        len(entries),
        tuple(generator["shape"]),
        dataset_dir,
        time.perf_counter() - start,
    )
    return json_path
