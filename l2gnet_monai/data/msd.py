# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Shared helpers of the dataset converters: the Medical Segmentation Decathlon (MSD) output layout.

Every converter (:mod:`l2gnet_monai.data.synapse`, :mod:`l2gnet_monai.data.acdc`) writes one folder::

    DST/
      dataset.json
      imagesTr/<case>.nii.gz  labelsTr/<case>.nii.gz    # the "training" and "validation" lists
      imagesTs/<case>.nii.gz  labelsTs/<case>.nii.gz    # the "test" list (with labels, for evaluation)

``dataset.json`` holds the MSD fields (``name``, ``description``, ``tensorImageSize``, ``modality``, ``labels``,
``numTraining``, ``numTest``), three lists ``training``, ``validation`` and ``test`` of
``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}`` dicts that
:func:`monai.data.load_decathlon_datalist` reads, a ``source`` entry (layout converted from, source path,
converter and version, whether the voxel spacing is known, skipped and missing cases) and a ``cases`` entry
(per output case: split and original files, plus dataset-specific fields such as the ACDC cardiac phase).
``numTraining`` counts the volumes under ``imagesTr`` (training plus validation), as in the MSD releases.

The folder is built in a temporary sibling and renamed into place at the end, so a failure never leaves a
half-written output (see :class:`MSDWriter`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np

from l2gnet_monai.data.errors import DatasetError, one_line

__all__ = [
    "CONVERTER_VERSION",
    "SPLITS",
    "AFFINE_ATOL",
    "MSDWriter",
    "read_nifti",
    "relative_path",
    "source_folder",
    "image_array",
    "label_array",
    "check_same_grid",
    "new_nifti",
]

logger = logging.getLogger(__name__)

#: Version of the conversion rules; recorded in ``dataset.json`` (``source.converter_version``).
CONVERTER_VERSION = "1.0"

#: The three datalist keys of ``dataset.json``.
SPLITS = ("training", "validation", "test")

#: Largest difference (mm, per affine entry) tolerated between an image's and its label's affine.
AFFINE_ATOL = 1e-3

_SPLIT_FOLDERS = {
    "training": ("imagesTr", "labelsTr"),
    "validation": ("imagesTr", "labelsTr"),
    "test": ("imagesTs", "labelsTs"),
}


def nifti_path(stem: Path) -> Path:
    """The existing ``stem.nii.gz`` or ``stem.nii`` (``stem.nii.gz`` when neither exists).

    Args:
        stem: path without the NIfTI extension.
    """
    for ext in (".nii.gz", ".nii"):
        candidate = stem.with_name(stem.name + ext)
        if candidate.is_file():
            return candidate
    return stem.with_name(stem.name + ".nii.gz")


def source_folder(src: Path | str) -> Path:
    """``src`` as a path (``~`` expanded), or a :class:`DatasetError` when it is not an existing folder."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DatasetError(f"source folder {src} does not exist")
    return src


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it, else ``path`` itself (as a string).

    Args:
        path: a file.
        base: the source folder.
    """
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def read_nifti(path: Path | str) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Read a 3-D NIfTI volume fully (so that a truncated or corrupt file fails here, naming the file).

    Trailing singleton dimensions beyond the third are dropped.

    Args:
        path: the ``.nii`` or ``.nii.gz`` file.

    Returns:
        ``(data, image)``: the voxel array (scaling applied, as nibabel returns it) and the nibabel image whose
        header and affine describe it.

    Raises:
        DatasetError: the file is missing, unreadable, or not a 3-D volume.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel, gzip, zlib and numpy all raise their own types for damaged files
        raise DatasetError(f"cannot read {path} (truncated or corrupt NIfTI?): {one_line(err)}") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"{path} is not a 3-D volume: shape {tuple(data.shape)}")
    return data, img


def image_array(data: np.ndarray) -> np.ndarray:
    """The image array in the output dtype: int16 when the values are integers that fit, float32 otherwise.

    Args:
        data: voxel values.
    """
    integral = data.dtype.kind in "iub" or (data.dtype.kind == "f" and np.array_equal(data, np.round(data)))
    limits = np.iinfo(np.int16)
    if integral and data.size and data.min() >= limits.min and data.max() <= limits.max:
        return data.astype(np.int16)
    return data.astype(np.float32)


def label_array(data: np.ndarray, path: Path | str, max_label: int) -> np.ndarray:
    """Check that a label map holds integers in ``[0, max_label]`` and return it as uint8.

    Args:
        data: label values as read (any numeric dtype; float files are accepted when integer-valued).
        path: the file it came from (for the error message).
        max_label: largest valid label.

    Raises:
        DatasetError: non-finite, non-integer or out-of-range values; the message lists them.
    """
    if data.dtype.kind not in "iubf":
        raise DatasetError(f"label file {path} has non-numeric dtype {data.dtype}")
    if data.dtype.kind == "f":
        bad = data[~np.isfinite(data) | (data != np.round(data))]
        if bad.size:
            raise DatasetError(
                f"label file {path} has non-integer values {_few(np.unique(bad))}; expected integers 0..{max_label}"
            )
    values = np.unique(data)
    outside = values[(values < 0) | (values > max_label)]
    if outside.size:
        raise DatasetError(
            f"label file {path} has values {_few(outside)} outside the expected range 0..{max_label} "
            f"(values present: {_few(values)})"
        )
    return data.astype(np.uint8)


def _few(values: np.ndarray, limit: int = 12) -> str:
    items = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in np.asarray(values).tolist()]
    text = ", ".join(items[:limit])
    return "[" + text + (f", ... ({len(items)} in all)" if len(items) > limit else "") + "]"


def check_same_grid(
    image_path: Path | str,
    image_shape: Sequence[int],
    image_affine: np.ndarray,
    label_path: Path | str,
    label_shape: Sequence[int],
    label_affine: np.ndarray | None,
    atol: float = AFFINE_ATOL,
) -> None:
    """Check that an image and its label share shape, spacing and affine.

    Args:
        image_path: the image file (for messages).
        image_shape: its voxel shape.
        image_affine: its 4x4 affine.
        label_path: the label file (for messages).
        label_shape: its voxel shape.
        label_affine: its 4x4 affine, or ``None`` when the format has none.
        atol: largest tolerated difference per affine entry (mm).

    Raises:
        DatasetError: the grids differ; the message names both files and the values.
    """
    if tuple(image_shape) != tuple(label_shape):
        raise DatasetError(
            f"shape mismatch: image {image_path} is {tuple(int(s) for s in image_shape)} "
            f"but label {label_path} is {tuple(int(s) for s in label_shape)}"
        )
    if label_affine is None:
        return
    diff = float(np.max(np.abs(np.asarray(image_affine, float) - np.asarray(label_affine, float))))
    if diff > atol:
        img_sp = np.round(np.linalg.norm(np.asarray(image_affine, float)[:3, :3], axis=0), 4).tolist()
        lab_sp = np.round(np.linalg.norm(np.asarray(label_affine, float)[:3, :3], axis=0), 4).tolist()
        raise DatasetError(
            f"affine/spacing mismatch (largest difference {diff:.4g} > {atol:g}): image {image_path} has spacing "
            f"{img_sp} and affine {_affine_str(image_affine)}, label {label_path} has spacing {lab_sp} and affine "
            f"{_affine_str(label_affine)}"
        )


def _affine_str(affine: np.ndarray) -> str:
    return str(np.round(np.asarray(affine, float)[:3], 4).tolist())


def new_nifti(
    data: np.ndarray, reference: nib.Nifti1Image | None = None, affine: np.ndarray | None = None
) -> nib.Nifti1Image:
    """A NIfTI-1 image of ``data`` on the grid of ``reference`` (its header and affine are copied, nothing resampled).

    Args:
        data: the voxel array, already in the output dtype.
        reference: image whose header (spacing, orientation, qform/sform codes, units) and affine to keep.
        affine: the affine when there is no reference (default: identity, 1 mm voxels).

    Returns:
        The image, with its on-disk dtype set to ``data.dtype`` and no intensity scaling.
    """
    if reference is not None:
        # affine=None: the copied header's qform and sform (and their codes) are kept exactly
        out = nib.Nifti1Image(data, None, header=nib.Nifti1Header.from_header(reference.header))
    else:
        out = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
        out.header.set_xyzt_units("mm")
    out.set_data_dtype(data.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    out.header["cal_min"], out.header["cal_max"] = 0.0, 0.0  # display range of the source: not valid for labels
    return out


class MSDWriter:
    """Writes a dataset in the MSD layout, atomically.

    Everything goes into a temporary sibling folder ``.DST.partial-*``; leaving the ``with`` block normally
    renames it to ``DST``, leaving it by an exception deletes it, so ``DST`` is never half-written.

    Example::

        with MSDWriter(dst) as writer:
            writer.add_case("case0005", "training", image, label, info={"source_image": "..."})
            writer.write_datalist(name="Synapse", description="...", modality="CT", labels={0: "background"},
                                  source={"layout": "synapse-raw"})

    Args:
        dst: the output folder.
        overwrite: replace an existing non-empty ``dst`` (otherwise that is an error).
        protect: source folders that ``dst`` must neither equal nor contain (so that ``overwrite`` can never
            delete the input).
    """

    def __init__(self, dst: Path | str, overwrite: bool = False, protect: Sequence[Path | str] = ()) -> None:
        self.dst = Path(dst).expanduser().absolute()
        self.overwrite = overwrite
        self.protect = [Path(p).expanduser().resolve() for p in protect]
        self.tmp: Path | None = None
        self.entries: dict[str, list[dict[str, str]]] = {k: [] for k in SPLITS}
        self.cases: dict[str, dict[str, Any]] = {}
        self._datalist_written = False

    def _check_destination(self) -> None:
        resolved = self.dst.resolve()
        for src in self.protect:
            if resolved == src or resolved in src.parents:
                raise DatasetError(f"output folder {self.dst} would contain or replace the source folder {src}")
        if self.dst.is_symlink() or (self.dst.exists() and not self.dst.is_dir()):
            if not self.overwrite:
                raise DatasetError(f"output path {self.dst} exists and is not a folder (use overwrite to replace it)")
        elif self.dst.is_dir() and any(self.dst.iterdir()) and not self.overwrite:
            raise DatasetError(f"output folder {self.dst} exists and is not empty (use overwrite to replace it)")

    def __enter__(self) -> MSDWriter:
        self._check_destination()
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dst.with_name(f".{self.dst.name}.partial-{uuid.uuid4().hex[:8]}")
        self.tmp.mkdir()
        for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (self.tmp / folder).mkdir()
        return self

    def add_case(
        self,
        name: str,
        split: str,
        image: nib.Nifti1Image,
        label: nib.Nifti1Image,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one image/label pair and list it under ``split``.

        Args:
            name: case name, used as the file name ``<name>.nii.gz`` (unique in the dataset).
            split: ``"training"``, ``"validation"`` or ``"test"``.
            image: the image volume.
            label: the label volume.
            info: extra fields recorded under ``dataset.json``'s ``cases[name]``.
        """
        if self.tmp is None:
            raise RuntimeError("MSDWriter.add_case() called outside its with-block")
        if split not in _SPLIT_FOLDERS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if name in self.cases:
            raise ValueError(f"case {name!r} added twice")
        image_dir, label_dir = _SPLIT_FOLDERS[split]
        nib.save(image, str(self.tmp / image_dir / f"{name}.nii.gz"))
        nib.save(label, str(self.tmp / label_dir / f"{name}.nii.gz"))
        self.entries[split].append({"image": f"./{image_dir}/{name}.nii.gz", "label": f"./{label_dir}/{name}.nii.gz"})
        self.cases[name] = {"split": split, **dict(info or {})}
        logger.info("  %-22s -> %s", name, split)

    def write_datalist(
        self,
        name: str,
        description: str,
        modality: str,
        labels: Mapping[int, str],
        source: Mapping[str, Any],
        **extra: Any,
    ) -> dict[str, Any]:
        """Write ``dataset.json``.

        Args:
            name: dataset name.
            description: one-paragraph description (protocol, split, notes).
            modality: ``"CT"`` or ``"MRI"``.
            labels: label index to class name.
            source: provenance; ``converter_version`` and ``package_version`` are added.
            extra: further top-level fields (``reference``, ``licence``, ...).

        Returns:
            The written dictionary.

        Raises:
            DatasetError: the training or the test list is empty.
        """
        if self.tmp is None:
            raise RuntimeError("MSDWriter.write_datalist() called outside its with-block")
        for key in ("training", "test"):
            if not self.entries[key]:
                raise DatasetError(f"no {key} cases to write: nothing of the {key} split was found in the source")
        from l2gnet_monai import __version__

        entries = {k: sorted(v, key=lambda e: e["image"]) for k, v in self.entries.items()}
        datalist: dict[str, Any] = {
            "name": name,
            "description": description,
            **extra,
            "tensorImageSize": "3D",
            "modality": {"0": modality},
            "labels": {str(k): v for k, v in sorted(labels.items())},
            "numTraining": len(entries["training"]) + len(entries["validation"]),
            "numTest": len(entries["test"]),
            "training": entries["training"],
            "validation": entries["validation"],
            "test": entries["test"],
            "source": {**dict(source), "converter_version": CONVERTER_VERSION, "package_version": __version__},
            "cases": {k: self.cases[k] for k in sorted(self.cases)},
        }
        with open(self.tmp / "dataset.json", "w") as f:
            json.dump(datalist, f, indent=2)
            f.write("\n")
        self._datalist_written = True
        return datalist

    def _commit(self) -> None:
        assert self.tmp is not None
        self._check_destination()
        if self.dst.is_symlink() or self.dst.is_file():
            self.dst.unlink()
            os.rename(self.tmp, self.dst)
        elif self.dst.is_dir():
            if any(self.dst.iterdir()):  # overwrite=True, checked above
                old = self.dst.with_name(f".{self.dst.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(self.dst, old)
                os.rename(self.tmp, self.dst)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.dst.rmdir()
                os.rename(self.tmp, self.dst)
        else:
            os.rename(self.tmp, self.dst)
        self.tmp = None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                if not self._datalist_written:
                    raise RuntimeError("MSDWriter: write_datalist() was not called; nothing committed")
                self._commit()
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None
