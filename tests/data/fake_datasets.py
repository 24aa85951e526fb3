# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Tiny fake copies of the real dataset releases, laid out exactly as the downloads are.

* :func:`make_synapse_raw`: BTCV ``RawData/Training/{img,label}/{img,label}NNNN.nii.gz`` (int16 HU images, uint8
  labels 0..13, anisotropic spacing, oblique and flipped affine, qform/sform code 1) plus an unlabelled
  ``RawData/Testing/img``.
* :func:`make_synapse_transunet`: TransUNet's ``train_npz/caseNNNN_sliceKKK.npz`` (``image`` float32 (H, W) in
  [0, 1], ``label`` float32 (H, W) in 0..8), ``test_vol_h5/caseNNNN.npy.h5`` (``image``, ``label`` (D, H, W)) and
  ``lists/lists_Synapse/{train.txt,test_vol.txt}``. H != W so that a transposition shows.
* :func:`make_acdc`: ``training/patientNNN/{Info.cfg, patientNNN_4d.nii.gz, patientNNN_frameXX[_gt].nii.gz}`` and
  ``testing/patientNNN/...`` (patients 101-150), ED/ES frames as named by ``Info.cfg``.

The content is deterministic per case (:func:`synapse_raw_case`, :func:`transunet_case`, :func:`acdc_frame`) so
tests can compare converted volumes with what was written. Reusable for smoke-training tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np

from l2gnet_monai.data.acdc import ACDC_TEST_PATIENTS, ACDC_TRAIN_PATIENTS, ACDC_VAL_PATIENTS
from l2gnet_monai.data.synapse import SYNAPSE_TEST_CASES, SYNAPSE_TRAIN_CASES

__all__ = [
    "SYNAPSE_CASES",
    "ACDC_PATIENT_NUMBERS",
    "oblique_affine",
    "save_nifti",
    "synapse_raw_case",
    "make_synapse_raw",
    "transunet_case",
    "make_synapse_transunet",
    "acdc_phases",
    "acdc_frame",
    "acdc_spacing",
    "make_acdc",
    "read_datalist",
    "no_leftovers",
]

#: The 30 labelled BTCV cases of the TransUNet protocol.
SYNAPSE_CASES = tuple(sorted(SYNAPSE_TRAIN_CASES + SYNAPSE_TEST_CASES))
#: Patient numbers of the ACDC 70/10/20 split (1..100).
ACDC_PATIENT_NUMBERS = tuple(sorted(int(p[7:]) for p in ACDC_TRAIN_PATIENTS + ACDC_VAL_PATIENTS + ACDC_TEST_PATIENTS))


def oblique_affine(
    spacing: Sequence[float], angle_deg: float = 7.0, origin: Sequence[float] = (172.4, 180.1, -360.5)
) -> np.ndarray:
    """A realistic non-identity affine: x and y flipped (LPS-like storage), rotated in-plane by ``angle_deg``."""
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = origin
    return affine


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, code: int = 1) -> Path:
    """Save as a scanner-style NIfTI-1 (qform and sform set with ``code``, units mm/s, on-disk dtype = data.dtype)."""
    img = nib.Nifti1Image(data, None)
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(data.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Synapse raw (BTCV RawData)
# ---------------------------------------------------------------------------------------------------------------


def synapse_raw_case(case: str, shape: Sequence[int] = (32, 28, 5)) -> tuple[np.ndarray, np.ndarray]:
    """The fake (image int16 HU, label uint8 0..13) of a BTCV case; every label value occurs in every case."""
    rng = np.random.default_rng(int(case))
    image = rng.integers(-1024, 1500, size=tuple(shape)).astype(np.int16)
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    label = ((x + 2 * y + 3 * z + int(case)) % 14).astype(np.uint8)
    return image, label


def make_synapse_raw(
    root: Path,
    cases: Iterable[str] = SYNAPSE_CASES,
    shape: Sequence[int] = (32, 28, 5),
    spacing: Sequence[float] = (0.78, 0.78, 3.0),
    testing_cases: Iterable[str] = ("0061",),
) -> Path:
    """Write a BTCV raw release under ``root`` (``root/RawData/Training/...``); returns ``root``."""
    root = Path(root)
    training = root / "RawData" / "Training"
    for case in cases:
        image, label = synapse_raw_case(case, shape)
        affine = oblique_affine(spacing)
        save_nifti(training / "img" / f"img{case}.nii.gz", image, affine)
        save_nifti(training / "label" / f"label{case}.nii.gz", label, affine)
    for case in testing_cases:
        image, _ = synapse_raw_case(case, shape)
        save_nifti(root / "RawData" / "Testing" / "img" / f"img{case}.nii.gz", image, oblique_affine(spacing))
    return root


# ---------------------------------------------------------------------------------------------------------------
# Synapse, TransUNet's preprocessed release
# ---------------------------------------------------------------------------------------------------------------


def transunet_case(case: str, shape: Sequence[int] = (32, 24), n_slices: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The fake (image float32 in [0, 1], label float32 in 0..8) of a case, both shaped (D, H, W) as in the h5."""
    rng = np.random.default_rng(1000 + int(case))
    image = rng.random((n_slices, *shape), dtype=np.float32)
    image[0, 0, 0], image[-1, -1, -1] = 0.0, 1.0  # the ends of the window
    d, r, c = np.meshgrid(np.arange(n_slices), np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    label = ((d + 2 * r + 3 * c + int(case)) % 9).astype(np.float32)
    return image, label


def make_synapse_transunet(
    root: Path,
    train_cases: Iterable[str] = SYNAPSE_TRAIN_CASES,
    test_cases: Iterable[str] = SYNAPSE_TEST_CASES,
    shape: Sequence[int] = (32, 24),
    n_slices: int = 4,
    with_lists: bool = True,
) -> Path:
    """Write TransUNet's preprocessed Synapse under ``root`` (``train_npz/``, ``test_vol_h5/``, ``lists/``)."""
    import h5py

    root = Path(root)
    (root / "train_npz").mkdir(parents=True, exist_ok=True)
    (root / "test_vol_h5").mkdir(parents=True, exist_ok=True)
    train_names, test_names = [], []
    for case in train_cases:
        image, label = transunet_case(case, shape, n_slices)
        for k in range(n_slices):
            name = f"case{case}_slice{k:03d}"
            np.savez(root / "train_npz" / f"{name}.npz", image=image[k], label=label[k])
            train_names.append(name)
    for case in test_cases:
        image, label = transunet_case(case, shape, n_slices)
        with h5py.File(root / "test_vol_h5" / f"case{case}.npy.h5", "w") as f:
            f.create_dataset("image", data=image)
            f.create_dataset("label", data=label)
        test_names.append(f"case{case}")
    if with_lists:
        lists = root / "lists" / "lists_Synapse"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / "train.txt").write_text("".join(n + "\n" for n in train_names))
        (lists / "test_vol.txt").write_text("".join(n + "\n" for n in test_names))
    return root


# ---------------------------------------------------------------------------------------------------------------
# ACDC
# ---------------------------------------------------------------------------------------------------------------

_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")


def acdc_phases(number: int) -> tuple[int, int, int]:
    """(ED, ES, NbFrame) of a fake patient: ED is 1 for most, 2 for some; ES varies."""
    ed = 2 if number % 9 == 0 else 1
    es = 7 + number % 6
    return ed, es, 14 + number % 4


def acdc_spacing(number: int) -> tuple[float, float, float]:
    """Per-patient anisotropic spacing, as in the release (1.37..1.56 mm in-plane, 5..10 mm slices)."""
    inplane = 1.5625 - 0.0195 * (number % 10)
    return (inplane, inplane, 10.0 if number % 3 else 5.0)


def acdc_frame(number: int, frame: int, shape: Sequence[int] = (32, 28, 4)) -> tuple[np.ndarray, np.ndarray]:
    """(image int16, label uint8 0..3) of a frame; the image values encode the frame (``frame * 1000 + noise``)."""
    rng = np.random.default_rng(number)
    base = rng.integers(0, 500, size=tuple(shape))
    image = (base + frame * 1000).astype(np.int16)
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    label = ((x + y + z + frame) % 4).astype(np.uint8)
    return image, label


def _info_cfg(number: int) -> str:
    ed, es, nb = acdc_phases(number)
    group = _GROUPS[number % 5]
    lines = [f"ED: {ed}", f"ES: {es}", f"Group: {group}", f"Height: {160 + number % 30}.0", f"NbFrame: {nb}"]
    return "\n".join([*lines, f"Weight: {60 + number % 40}.0"]) + "\n"


def make_acdc(
    root: Path,
    patients: Iterable[int] = ACDC_PATIENT_NUMBERS,
    testing: Iterable[int] = (101, 102),
    shape: Sequence[int] = (32, 28, 4),
    with_4d: bool = True,
) -> Path:
    """Write an ACDC release under ``root``: ``training/patientNNN/`` (1..100) and ``testing/patientNNN/``."""
    root = Path(root)
    for number in list(patients) + list(testing):
        folder = root / ("training" if number <= 100 else "testing") / f"patient{number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Info.cfg").write_text(_info_cfg(number))
        ed, es, nb = acdc_phases(number)
        affine = oblique_affine(acdc_spacing(number), angle_deg=-23.0, origin=(-120.0, 95.5, 40.2))
        if with_4d:
            frames = np.stack([acdc_frame(number, f, shape)[0] for f in range(1, nb + 1)], axis=-1)
            save_nifti(folder / f"patient{number:03d}_4d.nii.gz", frames, affine)
        for frame in (ed, es):
            image, label = acdc_frame(number, frame, shape)
            save_nifti(folder / f"patient{number:03d}_frame{frame:02d}.nii.gz", image, affine)
            save_nifti(folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz", label, affine)
    return root


def read_datalist(out: Path) -> dict:
    """The ``dataset.json`` a converter wrote into ``out``."""
    with open(out / "dataset.json") as f:
        return json.load(f)


def no_leftovers(dst: Path) -> bool:
    """``dst`` was not created and no temporary ``.<dst>.*`` sibling was left behind (an atomic failure)."""
    return not dst.exists() and not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")]
