# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""TransUNet's preprocessed Synapse release (``synapse-transunet``: npz slices, h5 volumes) in the MSD layout."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from l2gnet_monai.data.errors import DatasetError, one_line
from l2gnet_monai.data.msd import MSDWriter, label_array, new_nifti, relative_path, source_folder
from l2gnet_monai.data.synapse.protocol import (
    DESCRIPTION,
    REFERENCE,
    SOURCE_NOTE,
    SYNAPSE_LABELS,
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAIN_CASES,
    split_cases,
    transunet_to_hu,
)

__all__ = ["locate_synapse_transunet", "prepare_synapse_transunet"]

logger = logging.getLogger(__name__)

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
    train, test, missing = split_cases(slices, volumes, allow_missing, f"{npz_dir} and {h5_dir}")
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
            description=DESCRIPTION
            + " Converted from TransUNet's preprocessed release: intensities mapped back to HU (x * 400 - 125), "
            "voxel spacing unknown (1 mm written).",
            reference=REFERENCE,
            modality="CT",
            labels=SYNAPSE_LABELS,
            source={
                "layout": "synapse-transunet",
                "path": str(src.resolve()),
                "converter": "l2gnet_monai.data.synapse.prepare_synapse_transunet",
                "split": SOURCE_NOTE,
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
