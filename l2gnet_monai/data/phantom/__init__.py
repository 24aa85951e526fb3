# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A synthetic abdominal CT phantom with the 8 Synapse organs: the bundle's default dataset.

Every case is a 3-D CT-like volume in Hounsfield units with an organ label map in the Synapse
order used by TransUNet and the L2GNet paper (:data:`PHANTOM_LABELS`). The anatomy is modelled in
millimetres and rasterised onto the requested grid: a body outline (skin fat, muscle wall), a
lumbar vertebra with discs and posterior elements, paraspinal and psoas muscles, ribs and lung
bases above the diaphragm, bowel loops, colon and duodenum with gas and fluid, the IVC, portal
vein and mesenteric vessels (all unlabelled context), and the eight labelled organs: liver on the
patient's right with gallbladder beneath it, spleen on the left, kidneys either side of the spine
(cortex, medulla and a darker sinus), aorta anterior-left of the vertebral body, pancreas across
the midline in front of it, stomach left-anterior with wall, fluid and air. Organs are random
ellipsoids and tubes deformed by smooth random modes; their sizes, positions, rotations, z extents
and intensities vary per case, and the scanned z range is shifted per case, so gallbladder,
kidneys, spleen or lung bases appear only in some slices. Several organs share intensities
(liver, spleen, pancreas, muscle, bowel wall, stomach wall), so a network has to use shape and
position, not thresholds. The image is blurred slightly (partial volume) and gets correlated
Gaussian noise.

Geometry and orientation: voxel ``(i, j, k)`` of an array of shape ``(H, W, D)`` lies at the
patient's left for growing ``i``, posterior for growing ``j`` and superior for growing ``k``. The
NIfTI affine is ``diag(-sx, -sy, sz)`` (the "LPS" voxel order of CT NIfTI files converted from
DICOM; nibabel's ``aff2axcodes`` gives ``("L", "P", "S")``), with the volume centred on the world
origin. Displayed radiologically (patient's right on the image's left, anterior up), an axial
slice is ``array[:, :, k].T``. MONAI's ``LoadImaged`` keeps this array order; ``Orientationd(
axcodes="RAS")`` flips the first two axes.

Images are ``int16`` HU, labels ``uint8``, both gzipped NIfTI-1 with qform and sform (code 1,
scanner) and millimetre units. Datasets use the Medical Segmentation Decathlon layout
(``imagesTr/``, ``labelsTr/``, ``dataset.json``), readable by
``monai.data.load_decathlon_datalist`` for the ``training`` and ``validation`` keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
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
    PHANTOM_HU,
    PHANTOM_LABELS,
)
from l2gnet_monai.data.phantom.torso import Torso

__all__ = [
    "PHANTOM_GENERATOR_VERSION",
    "PHANTOM_HU",
    "PHANTOM_LABELS",
    "ensure_phantom_dataset",
    "generate_phantom_case",
    "generate_phantom_dataset",
    "phantom_affine",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------------


class _Anatomy(Torso, Organs):
    """One case's anatomy, sampled and painted in anatomical order (context first, bones last)."""

    def run(self) -> None:
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


# --------------------------------------------------------------------------------------------
# cases and datasets
# --------------------------------------------------------------------------------------------


def _check_args(shape: Sequence[int], spacing: Sequence[float], seed: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
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
        (:data:`PHANTOM_LABELS`), both of shape ``shape``, and the ``(4, 4)`` NIfTI affine
        (:func:`phantom_affine`).
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


def _generator_entry(
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
    in place (``dataset.json`` last); use :func:`ensure_phantom_dataset` for a safe, generate-once call.

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
    generator = _generator_entry(num_training, num_validation, shape, spacing, seed)
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


# --------------------------------------------------------------------------------------------
# generate-once, concurrency-safe entry point
# --------------------------------------------------------------------------------------------

_TMP_TAG = ".phantom-tmp-"
_STALE_OTHER_HOST_S = 3600.0  # temp folders of other hosts are removed only when untouched this long
_STALE_DEAD_PID_S = 30.0  # temp folders of dead local processes, when untouched this long


def _host() -> str:
    """This machine's name as used in temporary folder names (no dashes or separators)."""
    return socket.gethostname().replace("-", "_").replace(os.sep, "_") or "host"


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _last_touched(path: str) -> float:
    times = [os.stat(path).st_mtime]
    for sub in ("imagesTr", "labelsTr"):
        p = os.path.join(path, sub)
        if os.path.isdir(p):
            times.append(os.stat(p).st_mtime)
    return max(times)


def _remove_stale_temps(parent: str, base: str) -> None:
    """Remove temporary folders that crashed generations left beside ``base`` (never a live one)."""
    prefix = f".{base}{_TMP_TAG}"
    host = _host()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        path = os.path.join(parent, name)
        try:
            tmp_host, pid, _ = name[len(prefix) :].rsplit("-", 2)
            age = time.time() - _last_touched(path)
            dead_here = tmp_host == host and int(pid) != os.getpid() and not _pid_alive(int(pid))
        except (ValueError, OSError):
            continue
        if (dead_here and age > _STALE_DEAD_PID_S) or age > _STALE_OTHER_HOST_S:
            logger.info("Removing the stale temporary phantom folder %s.", path)
            shutil.rmtree(path, ignore_errors=True)


def _check_existing(dataset_dir: str, expected: dict[str, Any]) -> str:
    """Return ``dataset.json`` of an existing, complete phantom generated with ``expected``; raise otherwise."""
    json_path = os.path.join(dataset_dir, "dataset.json")
    found = None
    if os.path.isfile(json_path):
        try:
            with open(json_path) as f:
                found = json.load(f).get("generator")
        except (OSError, ValueError, AttributeError):
            found = None
    if not isinstance(found, dict) or found.get("name") != GENERATOR_NAME:
        raise FileExistsError(
            f"'{dataset_dir}' exists but is not a phantom dataset generated by {GENERATOR_NAME} (no dataset.json "
            "with a 'generator' entry). It was left untouched: choose another folder for the phantom, or point the "
            "configuration at your real dataset."
        )
    if found != expected:
        raise ValueError(
            f"'{dataset_dir}' holds a phantom dataset generated with different arguments: found {found}, "
            f"requested {expected}. Delete the folder to regenerate it, or choose another dataset folder."
        )
    with open(json_path) as f:
        dataset = json.load(f)
    missing = [
        item[key]
        for item in dataset.get("training", []) + dataset.get("validation", [])
        for key in ("image", "label")
        if not os.path.isfile(os.path.join(dataset_dir, item[key]))
    ]
    if missing:
        raise ValueError(
            f"The phantom dataset in '{dataset_dir}' is incomplete ({len(missing)} files missing, e.g. {missing[0]}). "
            "Delete the folder to regenerate it."
        )
    return json_path


def ensure_phantom_dataset(
    dataset_dir: PathLike,
    num_training: int = DEFAULT_NUM_TRAINING,
    num_validation: int = DEFAULT_NUM_VALIDATION,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> str:
    """Return the phantom dataset's ``dataset.json`` in ``dataset_dir``, generating it on first use only.

    Safe for concurrent callers (several DDP ranks, several jobs): each generates into a temporary
    sibling folder ``.<name>.phantom-tmp-<host>-<pid>-<random>`` and renames it into place atomically;
    a caller that loses the race discards its copy and uses the winner's. ``dataset_dir`` never holds a
    partial dataset; temporary folders left by crashed callers are removed by later calls. An empty
    existing folder counts as absent.

    Args:
        dataset_dir: folder of the dataset; its parent is created if needed.
        num_training: number of training cases (>= 1).
        num_validation: number of validation cases (>= 0).
        shape: ``(H, W, D)`` voxels per volume.
        spacing: ``(sx, sy, sz)`` in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        the path of ``dataset.json``.

    Raises:
        ValueError: ``dataset_dir`` holds a phantom generated with other arguments (or an incomplete one).
        FileExistsError: ``dataset_dir`` exists, is not empty and is not a phantom dataset (left untouched).
    """
    expected = _generator_entry(num_training, num_validation, shape, spacing, seed)
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    if os.path.exists(dataset_dir) and not (os.path.isdir(dataset_dir) and not os.listdir(dataset_dir)):
        return _check_existing(dataset_dir, expected)
    parent, base = os.path.split(dataset_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temps(parent, base)
    tmp = tempfile.mkdtemp(prefix=f".{base}{_TMP_TAG}{_host()}-{os.getpid()}-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should be readable like any folder
    try:
        generate_phantom_dataset(
            tmp,
            num_training=expected["num_training"],
            num_validation=expected["num_validation"],
            shape=expected["shape"],
            spacing=expected["spacing"],
            seed=expected["seed"],
        )
        if os.path.isdir(dataset_dir):  # an empty placeholder (os.rename replaces it on POSIX, not on Windows)
            with contextlib.suppress(OSError):
                os.rmdir(dataset_dir)
        try:
            os.rename(tmp, dataset_dir)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError:
            if not os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
                raise
            logger.info("Another process generated the phantom in %s first; using it.", dataset_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _check_existing(dataset_dir, expected)
