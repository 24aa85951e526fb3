# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""ACDC cardiac cine-MRI (MICCAI 2017 Automated Cardiac Diagnosis Challenge), official release layout.

The source layout (``acdc``)::

    <root>/training/patient001/Info.cfg                       # ED: 1 / ES: 12 / Group: DCM / Height / NbFrame / Weight
    <root>/training/patient001/patient001_4d.nii.gz
    <root>/training/patient001/patient001_frame01.nii.gz      # the ED frame named by Info.cfg
    <root>/training/patient001/patient001_frame01_gt.nii.gz
    <root>/training/patient001/patient001_frame12.nii.gz      # the ES frame
    <root>/training/patient001/patient001_frame12_gt.nii.gz
    <root>/testing/patient101/...                             # patients 101-150, same form

(``<root>`` may also be a flat folder of ``patientNNN/`` folders, or hold ``database/training``.) The two
labelled frames of a patient are the ED and ES frames that ``Info.cfg`` names. Labels: 0 background, 1 RV,
2 Myo, 3 LV. Images, spacing, orientation and headers are kept.

Split: the 70 / 10 / 20 patients of SSL4MIS (``data/ACDC/{train,val,test}.list`` of HiLab-git/SSL4MIS), which
SS-Net and the methods built on it reuse; both frames of a patient go to the same split, giving 140 / 20 / 40
volumes. Patients 101-150 (the official challenge test set) are not in this split and are skipped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.labels import ACDC_LABELS as _ACDC_LABELS
from l2gnet_monai.data.msd import (
    MSDWriter,
    check_same_grid,
    image_array,
    label_array,
    new_nifti,
    nifti_path,
    read_nifti,
    relative_path,
    source_folder,
)

__all__ = [
    "ACDC_TRAIN_PATIENTS",
    "ACDC_VAL_PATIENTS",
    "ACDC_TEST_PATIENTS",
    "ACDC_LABELS",
    "read_info_cfg",
    "find_acdc_patients",
    "locate_acdc",
    "prepare_acdc",
]

logger = logging.getLogger(__name__)


def _patients(numbers: str) -> tuple[str, ...]:
    return tuple(f"patient{int(n):03d}" for n in numbers.split())


#: Training patients (SSL4MIS ``data/ACDC/train.list``), 70.
ACDC_TRAIN_PATIENTS = _patients(
    "3 4 5 6 9 10 12 14 15 16 17 18 20 21 23 25 26 27 29 31 32 34 35 36 37 38 40 41 42 43 44 46 47 48 49 50 51 53 54 "
    "55 56 57 58 60 61 62 63 67 69 70 71 72 73 74 76 77 79 86 88 89 90 91 92 94 95 96 97 98 99 100"
)
#: Validation patients (SSL4MIS ``data/ACDC/val.list``), 10.
ACDC_VAL_PATIENTS = _patients("2 19 28 30 39 45 78 82 85 87")
#: Test patients (SSL4MIS ``data/ACDC/test.list``), 20.
ACDC_TEST_PATIENTS = _patients("1 7 8 11 13 22 24 33 52 59 64 65 66 68 75 80 81 83 84 93")

#: Classes of the ACDC ground truth.
ACDC_LABELS = _ACDC_LABELS

_SPLIT_OF = {
    **dict.fromkeys(ACDC_TRAIN_PATIENTS, "training"),
    **dict.fromkeys(ACDC_VAL_PATIENTS, "validation"),
    **dict.fromkeys(ACDC_TEST_PATIENTS, "test"),
}
_PATIENT = re.compile(r"^patient(\d{3})$")
_DESCRIPTION = (
    "ACDC cardiac cine-MRI (MICCAI 2017 Automated Cardiac Diagnosis Challenge), end-diastolic (ED) and end-systolic "
    "(ES) frames with RV, myocardium and LV labels. Split of SSL4MIS (HiLab-git/SSL4MIS data/ACDC/*.list): 70 "
    "training, 10 validation and 20 test patients, both frames of a patient in the same split (140 / 20 / 40 volumes)."
)
_SPLIT_NOTE = (
    "SSL4MIS ACDC lists (HiLab-git/SSL4MIS data/ACDC/{train,val,test}.list, as used by SS-Net): 70 / 10 / 20 patients"
)


def read_info_cfg(path: Path | str) -> dict[str, str]:
    """Read an ACDC ``Info.cfg`` (``Key: value`` lines: ``ED``, ``ES``, ``Group``, ``Height``, ``NbFrame``, ``Weight``).

    Args:
        path: the file.

    Returns:
        Its fields as strings.

    Raises:
        DatasetError: missing or unreadable file, malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path} (it names the ED and ES frames)")
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise DatasetError(f"{path} line {number}: expected 'Key: value', got {line.strip()!r}")
        fields[key.strip()] = value.strip()
    return fields


def _frame_number(fields: dict[str, str], key: str, path: Path) -> int:
    if key not in fields:
        raise DatasetError(f"{path} has no '{key}:' line (found: {', '.join(fields) or 'nothing'})")
    try:
        value = float(fields[key])
    except ValueError:
        value = float("nan")
    if not value.is_integer() or value < 0:
        raise DatasetError(f"{path}: '{key}: {fields[key]}' is not a frame number")
    return int(value)


def find_acdc_patients(path: Path | str) -> dict[str, Path]:
    """Patient folders (``patientNNN/``) of an ACDC release under ``path``.

    ``path`` may hold ``training/`` and ``testing/`` (possibly under ``database/``), or be a flat folder of patient
    folders (``training/`` itself, say).

    Args:
        path: the folder to search.

    Returns:
        Patient ID (``"patient001"``) to folder; empty when there are none.

    Raises:
        DatasetError: the same patient appears in two folders.
    """
    path = Path(path)
    patients: dict[str, Path] = {}
    for base in (path, path / "database"):
        for folder in (base, base / "training", base / "testing"):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                if p.is_dir() and _PATIENT.match(p.name):
                    if p.name in patients and patients[p.name].resolve() != p.resolve():
                        raise DatasetError(f"{p.name} appears twice: {patients[p.name]} and {p}")
                    patients[p.name] = p
    return patients


def locate_acdc(path: Path | str) -> Path | None:
    """``path`` when it holds an ACDC release (patient folders with ``Info.cfg`` or frame files), else None.

    Args:
        path: the folder to test.
    """
    try:
        patients = find_acdc_patients(path)
    except DatasetError:
        return Path(path)  # it is ACDC, just malformed; prepare_acdc reports the problem
    for pid, folder in patients.items():
        if (folder / "Info.cfg").is_file() or any(folder.glob(f"{pid}_frame*.nii*")):
            return Path(path)
    return None


def prepare_acdc(src: Path | str, dst: Path | str, overwrite: bool = False, allow_missing: bool = False) -> Path:
    """Convert the official ACDC release to the MSD layout: ED and ES frames, SSL4MIS 70/10/20 patient split.

    Each patient's ``Info.cfg`` names its ED and ES frames; ``patientNNN_frameXX.nii.gz`` and ``..._gt.nii.gz``
    of both are converted to cases ``patientNNN_frameXX`` (recorded with their phase under ``cases`` in
    ``dataset.json``). Patients outside the split (101-150, the challenge's test set) are reported and skipped.

    Args:
        src: the folder holding ``training/`` (and ``testing/``), or a flat folder of patient folders.
        dst: output folder.
        overwrite: replace a non-empty ``dst``.
        allow_missing: convert what exists when split patients are missing (otherwise an error lists them).

    Returns:
        ``dst`` (holding ``dataset.json``).

    Raises:
        DatasetError: layout not found, missing patients, ``Info.cfg`` or frame files, bad label values,
            image/label grid mismatch, unreadable files. Nothing is written then.
    """
    src = source_folder(src)
    patients = find_acdc_patients(src)
    if not patients:
        raise DatasetError(
            f"no ACDC patient folders under {src}: expected training/patient001/patient001_frame01.nii.gz, ... "
            "(or a folder of patientNNN/ folders)"
        )
    skipped = sorted(p for p in patients if p not in _SPLIT_OF)
    if skipped:
        logger.warning(
            "skipping %d patient(s) outside the SSL4MIS split (patients 101-150 are the challenge's test set): %s",
            len(skipped),
            ", ".join(skipped),
        )
    missing = sorted(p for p in _SPLIT_OF if p not in patients)
    if missing and not allow_missing:
        raise DatasetError(
            f"{len(missing)} patient(s) of the 70/10/20 split missing under {src}: {', '.join(missing)} "
            "(use allow_missing to convert a partial download)"
        )
    if missing:
        logger.warning("allow_missing: %d patient(s) missing and left out: %s", len(missing), ", ".join(missing))

    # plan every case (Info.cfg, frame and label files) before converting anything
    plan = []
    for pid in sorted(p for p in patients if p in _SPLIT_OF):
        folder = patients[pid]
        cfg_path = folder / "Info.cfg"
        cfg = read_info_cfg(cfg_path)
        ed, es = _frame_number(cfg, "ED", cfg_path), _frame_number(cfg, "ES", cfg_path)
        if ed == es:
            raise DatasetError(f"{cfg_path}: ED and ES name the same frame ({ed})")
        for phase, frame in (("ED", ed), ("ES", es)):
            name = f"{pid}_frame{frame:02d}"
            image, label = nifti_path(folder / name), nifti_path(folder / f"{name}_gt")
            if not image.is_file():
                raise DatasetError(f"{cfg_path} names {phase} frame {frame} but {image} is missing")
            if not label.is_file():
                raise DatasetError(f"{phase} frame {image} has no label file {label}")
            info = {"patient": pid, "phase": phase, "frame": frame, "group": cfg.get("Group")}
            info.update({"source_image": relative_path(image, src), "source_label": relative_path(label, src)})
            plan.append((name, _SPLIT_OF[pid], image, label, info))

    logger.info("converting %d ACDC volumes (%d patients) from %s", len(plan), len(plan) // 2, src)
    with MSDWriter(dst, overwrite=overwrite, protect=[src]) as writer:
        for name, split, image_path, label_path, info in plan:
            img_data, img = read_nifti(image_path)
            lab_data, lab = read_nifti(label_path)
            check_same_grid(image_path, img_data.shape, img.affine, label_path, lab_data.shape, lab.affine)
            label = label_array(lab_data, label_path, max_label=max(ACDC_LABELS))
            writer.add_case(name, split, new_nifti(image_array(img_data), img), new_nifti(label, img), info=info)
        writer.write_datalist(
            name="ACDC",
            description=_DESCRIPTION,
            reference="https://www.creatis.insa-lyon.fr/Challenge/acdc",
            modality="MRI",
            labels=ACDC_LABELS,
            source={
                "layout": "acdc",
                "path": str(src.resolve()),
                "converter": "l2gnet_monai.data.acdc.prepare_acdc",
                "split": _SPLIT_NOTE,
                "spacing_known": True,
                "frames": "ED and ES frame numbers from each patient's Info.cfg",
                "skipped": skipped,
                "missing": missing,
            },
        )
    logger.info("wrote %s", Path(dst) / "dataset.json")
    return Path(dst)
