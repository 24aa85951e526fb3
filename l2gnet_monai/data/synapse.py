# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Synapse multi-organ CT (BTCV, MICCAI 2015 Multi-Atlas Abdomen Labeling) in the TransUNet protocol.

Two source layouts are converted to the MSD layout of :mod:`l2gnet_monai.data.msd`:

* ``synapse-raw``, the BTCV "RawData" release::

      <root>/RawData/Training/img/img0001.nii.gz
      <root>/RawData/Training/label/label0001.nii.gz

  (``<root>`` may also be ``RawData/`` or ``RawData/Training/``). The 13 BTCV labels are mapped to the
  paper's 8 organs (:data:`BTCV_TO_SYNAPSE`); HU values, spacing, orientation and header are kept.

* ``synapse-transunet``, TransUNet's preprocessed release::

      <root>/train_npz/case0005_slice000.npz     # keys image (H, W) float32 in [0, 1], label (H, W)
      <root>/test_vol_h5/case0001.npy.h5        # datasets image, label of shape (D, H, W)
      <root>/lists/lists_Synapse/{train.txt,test_vol.txt}   # optional

  Intensities there are HU clipped to [-125, 275] and scaled to [0, 1]; they are mapped back with
  ``hu = x * 400 - 125`` so that the bundle's CT window [-125, 275] -> [0, 1] gives the original values back.
  Labels are already in the 8-class order. A slice's (row, col) becomes the NIfTI (x, y) plane and the slice
  index the z axis, for the npz slices and the h5 volumes alike. These files carry no spacing: 1 mm voxels
  and an identity affine are written and ``source.spacing_known`` is ``false``.

Both give output cases named ``caseNNNN``: 18 in ``training``, 12 in ``test`` (:data:`SYNAPSE_TRAIN_CASES`,
:data:`SYNAPSE_TEST_CASES`, TransUNet's ``lists_Synapse``). The protocol has no validation set, so the
``validation`` list is empty.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from l2gnet_monai.data.errors import DatasetError, one_line
from l2gnet_monai.data.labels import SYNAPSE_LABELS as _SYNAPSE_LABELS
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
    "SYNAPSE_TRAIN_CASES",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_LABELS",
    "BTCV_LABELS",
    "BTCV_TO_SYNAPSE",
    "TRANSUNET_HU_RANGE",
    "btcv_to_synapse",
    "transunet_to_hu",
    "locate_synapse_raw",
    "locate_synapse_transunet",
    "prepare_synapse_raw",
    "prepare_synapse_transunet",
]

logger = logging.getLogger(__name__)

#: Training cases of the TransUNet protocol (``lists/lists_Synapse/train.txt``).
SYNAPSE_TRAIN_CASES = (
    "0005", "0006", "0007", "0009", "0010", "0021", "0023", "0024", "0026",
    "0027", "0028", "0030", "0031", "0033", "0034", "0037", "0039", "0040",
)  # fmt: skip
#: Test cases of the TransUNet protocol (``lists/lists_Synapse/test_vol.txt``).
SYNAPSE_TEST_CASES = ("0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038")

#: The paper's classes (TransUNet's 8 organs plus background).
SYNAPSE_LABELS = _SYNAPSE_LABELS

#: The 13 labels of the BTCV raw release.
BTCV_LABELS = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior vena cava",
    10: "portal vein and splenic vein",
    11: "pancreas",
    12: "right adrenal gland",
    13: "left adrenal gland",
}

#: BTCV label -> paper label; BTCV labels not listed (esophagus, IVC, veins, adrenal glands) become background.
BTCV_TO_SYNAPSE = {1: 1, 2: 2, 3: 3, 4: 4, 6: 5, 7: 6, 8: 7, 11: 8}

#: The HU window TransUNet clipped to before scaling to [0, 1].
TRANSUNET_HU_RANGE = (-125.0, 275.0)

_LUT = np.zeros(max(BTCV_LABELS) + 1, dtype=np.uint8)
for _k, _v in BTCV_TO_SYNAPSE.items():
    _LUT[_k] = _v

_SOURCE_NOTE = "TransUNet protocol (Chen et al. 2021, lists/lists_Synapse): 18 training / 12 test cases, no validation"
_DESCRIPTION = (
    "Synapse multi-organ abdominal CT (BTCV, MICCAI 2015 Multi-Atlas Abdomen Labeling Challenge) in the TransUNet "
    "protocol: 18 training and 12 test volumes, 8 organs. The protocol has no validation set, so 'validation' is "
    "empty; labels of the test volumes are included for evaluation."
)
_REFERENCE = "https://www.synapse.org/#!Synapse:syn3193805/wiki/217789"


def btcv_to_synapse(label: np.ndarray) -> np.ndarray:
    """Map a BTCV label map (0..13) to the paper's 8 organs (0..8) by :data:`BTCV_TO_SYNAPSE`.

    Args:
        label: integer label map with values in 0..13.

    Returns:
        uint8 label map with values in 0..8.
    """
    return _LUT[np.asarray(label, dtype=np.intp)]


def transunet_to_hu(x: np.ndarray) -> np.ndarray:
    """Map TransUNet's [0, 1] intensities back to HU: ``x * 400 - 125`` (computed in float64, returned as float32).

    The bundle's window ``(hu + 125) / 400`` then gives ``x`` back to float32 precision.

    Args:
        x: intensities in [0, 1].
    """
    lo, hi = TRANSUNET_HU_RANGE
    return (np.asarray(x, dtype=np.float64) * (hi - lo) + lo).astype(np.float32)


def _split_cases(
    train_found: Iterable[str], test_found: Iterable[str], allow_missing: bool, where: str
) -> tuple[list[str], list[str], list[str]]:
    """Assign the found cases to the protocol's splits.

    Returns:
        (present training cases, present test cases, missing protocol cases); missing cases are an error unless
        ``allow_missing``.
    """
    train_set, test_set = set(train_found), set(test_found)
    train = [c for c in SYNAPSE_TRAIN_CASES if c in train_set]
    test = [c for c in SYNAPSE_TEST_CASES if c in test_set]
    missing_train = [c for c in SYNAPSE_TRAIN_CASES if c not in train_set]
    missing_test = [c for c in SYNAPSE_TEST_CASES if c not in test_set]
    missing = missing_train + missing_test
    if missing:
        text = "; ".join(
            f"{len(m)} {what} case(s): {', '.join(m)}"
            for what, m in (("training", missing_train), ("test", missing_test))
            if m
        )
        if not allow_missing:
            raise DatasetError(
                f"cases of the TransUNet protocol missing in {where}: {text} "
                "(use allow_missing to convert a partial download)"
            )
        logger.warning("allow_missing: cases missing and left out: %s", text)
    return train, test, missing


# ---------------------------------------------------------------------------------------------------------------
# synapse-raw
# ---------------------------------------------------------------------------------------------------------------

_RAW_IMG = re.compile(r"^img(\d{4})\.nii(\.gz)?$")


def locate_synapse_raw(path: Path | str) -> Path | None:
    """The ``Training`` folder (holding ``img/`` and ``label/``) of a BTCV raw release under ``path``, or None.

    Args:
        path: ``<root>``, ``<root>/RawData`` or ``<root>/RawData/Training`` (``Abdomen/RawData`` is also tried).
    """
    path = Path(path)
    for cand in (path, path / "Training", path / "RawData" / "Training", path / "Abdomen" / "RawData" / "Training"):
        img_dir = cand / "img"
        if img_dir.is_dir() and any(_RAW_IMG.match(p.name) for p in img_dir.iterdir()):
            return cand
    return None


def prepare_synapse_raw(src: Path | str, dst: Path | str, overwrite: bool = False, allow_missing: bool = False) -> Path:
    """Convert the BTCV raw release (``RawData/Training/{img,label}``) to the MSD layout, TransUNet split.

    Cases present but outside the protocol's 30 are reported and skipped; ``RawData/Testing`` (no labels) is not
    used. HU values, spacing, orientation and the header are kept; labels are mapped by :data:`BTCV_TO_SYNAPSE`.

    Args:
        src: ``<root>``, ``<root>/RawData`` or ``<root>/RawData/Training``.
        dst: output folder.
        overwrite: replace a non-empty ``dst``.
        allow_missing: convert what exists when protocol cases are missing (otherwise an error lists them).

    Returns:
        ``dst`` (holding ``dataset.json``).

    Raises:
        DatasetError: layout not found, missing cases or labels, bad label values, image/label grid mismatch,
            unreadable files. Nothing is written then.
    """
    src = source_folder(src)
    root = locate_synapse_raw(src)
    if root is None:
        raise DatasetError(f"no BTCV raw release under {src}: expected RawData/Training/img/img0001.nii.gz, ...")
    found: dict[str, Path] = {}
    for p in sorted((root / "img").iterdir()):
        m = _RAW_IMG.match(p.name)
        if m:
            found[m.group(1)] = p
    protocol = set(SYNAPSE_TRAIN_CASES + SYNAPSE_TEST_CASES)
    skipped = sorted(set(found) - protocol)
    if skipped:
        logger.warning("skipping %d case(s) outside the TransUNet protocol: %s", len(skipped), ", ".join(skipped))
    train, test, missing = _split_cases(found, found, allow_missing, str(root / "img"))
    plan = [(c, "training") for c in train] + [(c, "test") for c in test]
    # every label must exist before anything is converted
    labels = {c: nifti_path(root / "label" / f"label{c}") for c, _ in plan}
    for c, _ in plan:
        if not labels[c].is_file():
            raise DatasetError(f"case {c}: image {found[c]} has no label file {labels[c]}")

    logger.info("converting %d Synapse cases from %s", len(plan), root)
    with MSDWriter(dst, overwrite=overwrite, protect=[src, root]) as writer:
        for case, split in plan:
            img_data, img = read_nifti(found[case])
            lab_data, lab = read_nifti(labels[case])
            check_same_grid(found[case], img_data.shape, img.affine, labels[case], lab_data.shape, lab.affine)
            label = btcv_to_synapse(label_array(lab_data, labels[case], max_label=max(BTCV_LABELS)))
            writer.add_case(
                f"case{case}",
                split,
                new_nifti(image_array(img_data), img),
                new_nifti(label, img),
                info={
                    "source_image": relative_path(found[case], src),
                    "source_label": relative_path(labels[case], src),
                },
            )
        writer.write_datalist(
            name="Synapse",
            description=_DESCRIPTION,
            reference=_REFERENCE,
            modality="CT",
            labels=SYNAPSE_LABELS,
            source={
                "layout": "synapse-raw",
                "path": str(src.resolve()),
                "converter": "l2gnet_monai.data.synapse.prepare_synapse_raw",
                "split": _SOURCE_NOTE,
                "spacing_known": True,
                "label_mapping": {f"{k} {BTCV_LABELS[k]}": int(_LUT[k]) for k in sorted(BTCV_LABELS) if k},
                "skipped": [f"case{c}" for c in skipped],
                "missing": [f"case{c}" for c in missing],
            },
        )
    logger.info("wrote %s", Path(dst) / "dataset.json")
    return Path(dst)


# ---------------------------------------------------------------------------------------------------------------
# synapse-transunet
# ---------------------------------------------------------------------------------------------------------------

_NPZ = re.compile(r"^case(\d{4})_slice(\d+)\.npz$")
_H5 = re.compile(r"^case(\d{4})\.npy\.h5$")
_VALUE_TOL = 1e-4


def locate_synapse_transunet(path: Path | str) -> Path | None:
    """The folder holding ``train_npz/`` and/or ``test_vol_h5/`` of TransUNet's release under ``path``, or None.

    Args:
        path: the folder itself, or its parent (``Synapse/`` and ``data/Synapse/`` are tried).
    """
    path = Path(path)
    for cand in (path, path / "Synapse", path / "data" / "Synapse"):
        npz_dir, h5_dir = cand / "train_npz", cand / "test_vol_h5"
        if (npz_dir.is_dir() and any(_NPZ.match(p.name) for p in npz_dir.iterdir())) or (
            h5_dir.is_dir() and any(_H5.match(p.name) for p in h5_dir.iterdir())
        ):
            return cand
    return None


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "reading TransUNet's test volumes (test_vol_h5/*.npy.h5) needs h5py: "
            "pip install 'l2gnet-monai[h5]' (or: pip install h5py)"
        ) from err
    return h5py


def _check_image_values(image: np.ndarray, path: Path) -> None:
    if image.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: image has non-numeric dtype {image.dtype}")
    if image.size and not np.all(np.isfinite(image)):
        raise DatasetError(f"{path}: image has non-finite values")
    if image.size and (image.min() < -_VALUE_TOL or image.max() > 1 + _VALUE_TOL):
        raise DatasetError(
            f"{path}: image values span [{float(image.min()):g}, {float(image.max()):g}], expected [0, 1] "
            "(TransUNet's CT clipped to [-125, 275] HU and scaled); is this TransUNet's preprocessed release?"
        )


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if "image" not in keys or "label" not in keys:
                raise DatasetError(f"{path} lacks the 'image' and/or 'label' array (has: {', '.join(keys) or 'none'})")
            image, label = np.asarray(z["image"]), np.asarray(z["label"])
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"cannot read {path} (truncated or corrupt npz?): {one_line(err)}") from err
    if image.ndim != 2 or label.shape != image.shape:
        raise DatasetError(
            f"{path}: expected 2-D 'image' and 'label' of the same shape, got {image.shape} and {label.shape}"
        )
    return image, label


def _read_h5(path: Path, h5py: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            if "image" not in keys or "label" not in keys:
                raise DatasetError(
                    f"{path} lacks the 'image' and/or 'label' dataset (has: {', '.join(keys) or 'none'})"
                )
            image, label = np.asarray(f["image"][()]), np.asarray(f["label"][()])
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"cannot read {path} (truncated or corrupt HDF5?): {one_line(err)}") from err
    if image.ndim != 3 or label.shape != image.shape:
        raise DatasetError(
            f"{path}: expected 3-D (slices, rows, cols) 'image' and 'label' of the same shape, "
            f"got {image.shape} and {label.shape}"
        )
    return image, label


def _read_lists(root: Path) -> tuple[Path | None, set[str], set[str]]:
    """Optional ``lists_Synapse``: (folder, training slice names, test volume names)."""
    for cand in (root / "lists" / "lists_Synapse", root / "lists_Synapse"):
        if cand.is_dir():
            names: list[set[str]] = []
            for fname in ("train.txt", "test_vol.txt"):
                f = cand / fname
                names.append(
                    {line.strip() for line in f.read_text().splitlines() if line.strip()} if f.is_file() else set()
                )
            return cand, names[0], names[1]
    return None, set(), set()


def _slices_by_case(npz_dir: Path) -> dict[str, dict[int, Path]]:
    slices: dict[str, dict[int, Path]] = {}
    if not npz_dir.is_dir():
        return slices
    for p in npz_dir.iterdir():
        m = _NPZ.match(p.name)
        if m:
            per_case = slices.setdefault(m.group(1), {})
            index = int(m.group(2))
            if index in per_case:
                raise DatasetError(f"slice {index} of case{m.group(1)} appears twice: {per_case[index]} and {p}")
            per_case[index] = p
    return slices


def _assemble_case(case: str, slices: dict[int, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Stack a case's npz slices (sorted by index, no gaps) along z: (rows, cols, slices)."""
    indices = sorted(slices)
    gaps = sorted(set(range(indices[-1] + 1)) - set(indices))
    if gaps:
        shown = ", ".join(str(g) for g in gaps[:20]) + (" ..." if len(gaps) > 20 else "")
        raise DatasetError(
            f"case{case}: slice files missing in {slices[indices[0]].parent} (slices must run 0..{indices[-1]} "
            f"without gaps): missing slice index {shown}"
        )
    images, labels = [], []
    shape = None
    for i in indices:
        image, label = _read_npz(slices[i])
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise DatasetError(
                f"case{case}: slice {slices[i]} has shape {image.shape} but {slices[indices[0]]} has {shape}"
            )
        _check_image_values(image, slices[i])
        images.append(image)
        labels.append(label_array(label, slices[i], max_label=max(SYNAPSE_LABELS)))
    return np.stack(images, axis=-1), np.stack(labels, axis=-1)


def prepare_synapse_transunet(
    src: Path | str, dst: Path | str, overwrite: bool = False, allow_missing: bool = False
) -> Path:
    """Convert TransUNet's preprocessed Synapse (``train_npz/``, ``test_vol_h5/``) to the MSD layout.

    Training slices ``caseNNNN_sliceKKK.npz`` are stacked (by slice index, which must run from 0 without gaps)
    into one volume per case; test volumes ``caseNNNN.npy.h5`` (``(slices, rows, cols)``) are transposed to
    ``(rows, cols, slices)`` the same way. Intensities are mapped back to HU (:func:`transunet_to_hu`); labels are
    kept (already 0..8). Spacing is unknown: 1 mm, identity affine, ``source.spacing_known = false``.

    Args:
        src: the folder holding ``train_npz/`` and ``test_vol_h5/`` (optionally ``lists/lists_Synapse/``).
        dst: output folder.
        overwrite: replace a non-empty ``dst``.
        allow_missing: convert what exists when protocol cases are missing (otherwise an error lists them).

    Returns:
        ``dst`` (holding ``dataset.json``).

    Raises:
        DatasetError: layout not found, missing cases or slices, values out of range, unreadable files.
        ImportError: test volumes present but h5py is not installed (the message says what to install).
    """
    src = source_folder(src)
    root = locate_synapse_transunet(src)
    if root is None:
        raise DatasetError(
            f"no TransUNet Synapse release under {src}: expected train_npz/case0005_slice000.npz, ... and "
            "test_vol_h5/case0001.npy.h5, ..."
        )
    npz_dir, h5_dir = root / "train_npz", root / "test_vol_h5"
    slices = _slices_by_case(npz_dir)
    volumes = {m.group(1): p for p in (h5_dir.iterdir() if h5_dir.is_dir() else ()) if (m := _H5.match(p.name))}

    lists_dir, list_train, list_test = _read_lists(root)
    if lists_dir is not None:
        absent = sorted(n for n in list_train if not (npz_dir / f"{n}.npz").is_file())
        absent += sorted(n for n in list_test if not (h5_dir / f"{n}.npy.h5").is_file())
        if absent and not allow_missing:
            raise DatasetError(
                f"{len(absent)} file(s) listed in {lists_dir} are missing: "
                + ", ".join(absent[:10])
                + (" ..." if len(absent) > 10 else "")
                + " (use allow_missing to convert a partial download)"
            )

    skipped = sorted(f"case{c} (train_npz)" for c in set(slices) - set(SYNAPSE_TRAIN_CASES))
    skipped += sorted(f"case{c} (test_vol_h5)" for c in set(volumes) - set(SYNAPSE_TEST_CASES))
    if skipped:
        logger.warning("skipping %d case(s) outside the TransUNet protocol: %s", len(skipped), ", ".join(skipped))
    train, test, missing = _split_cases(slices, volumes, allow_missing, f"{npz_dir} and {h5_dir}")
    h5py = _import_h5py() if test else None

    logger.info("converting %d training and %d test Synapse cases from %s", len(train), len(test), root)
    with MSDWriter(dst, overwrite=overwrite, protect=[src, root]) as writer:
        for case in train:
            image, label = _assemble_case(case, slices[case])
            first = slices[case][min(slices[case])]
            writer.add_case(
                f"case{case}",
                "training",
                new_nifti(transunet_to_hu(image)),
                new_nifti(label),
                info={
                    "source_image": relative_path(first.parent, src) + f"/case{case}_slice*.npz",
                    "slices": image.shape[-1],
                },
            )
        for case in test:
            image, label = _read_h5(volumes[case], h5py)
            _check_image_values(image, volumes[case])
            label = label_array(label, volumes[case], max_label=max(SYNAPSE_LABELS))
            writer.add_case(
                f"case{case}",
                "test",
                new_nifti(transunet_to_hu(np.transpose(image, (1, 2, 0)))),
                new_nifti(np.ascontiguousarray(np.transpose(label, (1, 2, 0)))),
                info={"source_image": relative_path(volumes[case], src), "slices": image.shape[0]},
            )
        writer.write_datalist(
            name="Synapse",
            description=_DESCRIPTION
            + " Converted from TransUNet's preprocessed release: intensities mapped back to HU (x * 400 - 125), "
            "voxel spacing unknown (1 mm written).",
            reference=_REFERENCE,
            modality="CT",
            labels=SYNAPSE_LABELS,
            source={
                "layout": "synapse-transunet",
                "path": str(src.resolve()),
                "converter": "l2gnet_monai.data.synapse.prepare_synapse_transunet",
                "split": _SOURCE_NOTE,
                "spacing_known": False,
                "intensity": "hu = x * 400 - 125 (x: TransUNet's [0, 1] values; HU window [-125, 275])",
                "axes": "npz slice (row, col) and h5 (slice, row, col) -> NIfTI (x=row, y=col, z=slice)",
                "lists": str(lists_dir) if lists_dir is not None else None,
                "skipped": skipped,
                "missing": [f"case{c}" for c in missing],
            },
        )
    logger.info("wrote %s", Path(dst) / "dataset.json")
    return Path(dst)
