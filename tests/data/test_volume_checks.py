# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The voxel checks of check_datalist: label values, NaN/Inf, affine mismatch, empty labels, one decode per file."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import l2gnet_monai.data.datalist as datalist_module
from l2gnet_monai.data.datalist import DatalistError, check_datalist
from l2gnet_monai.data.volume_checks import declared_classes

CLASSES = {0: "background", 1: "liver", 2: "tumour"}
SHAPE = (8, 7, 4)


def _save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 4.0, 1.0]) if affine is None else affine), str(path))
    return str(path)


def _case(tmp_path: Path, label: np.ndarray | None = None, image: np.ndarray | None = None, **kw) -> dict[str, str]:
    if label is None:
        label = np.zeros(SHAPE, np.uint8)
        label[2:5, 2:5, 1:3] = 1
    if image is None:
        image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    return {
        "image": _save(tmp_path / "img.nii.gz", image, kw.get("image_affine")),
        "label": _save(tmp_path / "lab.nii.gz", label, kw.get("label_affine")),
    }


def _refused(item: dict[str, str], *fragments: str, **kwargs) -> str:
    with pytest.raises(DatalistError) as info:
        check_datalist([item], "train#dataset#data", class_names=kwargs.pop("class_names", CLASSES), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_good_case_passes_silently(tmp_path: Path) -> None:
    item = _case(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_datalist([item], "train", class_names=CLASSES, warn_empty_labels=True) == [item]
    assert check_datalist([item], "train", class_names=3) == [item]  # a class count works too


@pytest.mark.parametrize(
    ("dtype", "value"),
    [(np.uint8, 7), (np.int16, 300), (np.int16, 258), (np.int16, -1), (np.float32, 3.0), (np.int32, 70000)],
)
def test_label_values_outside_the_declared_classes(tmp_path: Path, dtype, value) -> None:
    label = np.zeros(SHAPE, dtype)
    label[1, 1, 1] = value
    item = _case(tmp_path, label=label)
    # 258 would wrap to 2 (a valid class) in train.json's uint8 labels: refused from the file's own values
    _refused(
        item,
        "train#dataset#data[0]['label']",
        item["label"],
        f"label values [{int(value)}] outside the declared classes 0..2 (0 background, 1 liver, 2 tumour)",
        "declare every class in dataset.json's 'labels'",
    )


def test_many_out_of_range_values_are_summarised(tmp_path: Path) -> None:
    label = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    message = _refused(_case(tmp_path, label=label), "[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, '...']")
    assert len(message) < 600


def test_non_integer_and_nan_labels(tmp_path: Path) -> None:
    label = np.zeros(SHAPE, np.float32)
    label[0, 0, 0] = 0.5
    _refused(_case(tmp_path, label=label), "non-integer label values (e.g. 0.5)", "was an image given as the label?")
    label[0, 0, 0] = np.nan
    _refused(_case(tmp_path, label=label), "NaN or infinite label values")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_image_voxels(tmp_path: Path, bad: float) -> None:
    image = np.ones(SHAPE, np.float32)
    image[3, 2, 1] = bad
    image[4, 2, 1] = bad
    item = _case(tmp_path, image=image)
    _refused(
        item,
        f"train#dataset#data[0]['image']: '{item['image']}' holds 2 NaN or infinite voxel(s)",
        "index (3, 2, 1)",
        "replace them",
    )
    # also without declared classes (inference lists, images only)
    with pytest.raises(DatalistError, match="NaN or infinite voxel"):
        check_datalist([{"image": item["image"]}], "datalist", keys=["image"])


def test_affine_or_spacing_mismatch(tmp_path: Path) -> None:
    spacing = np.diag([1.5, 1.5, 4.0, 1.0])
    other = np.diag([1.5, 1.5, 5.0, 1.0])
    item = _case(tmp_path, image_affine=spacing, label_affine=other)
    _refused(
        item,
        "train#dataset#data[0]: affine/spacing mismatch",
        f"image {item['image']} has spacing [1.5, 1.5, 4.0]",
        f"label {item['label']} has spacing [1.5, 1.5, 5.0]",
        "resample it onto the image",
    )
    shifted = spacing.copy()
    shifted[:3, 3] = [0.0, 0.0, 2.0]  # same spacing, origin half a slice away
    _refused(_case(tmp_path, image_affine=spacing, label_affine=shifted), "affine/spacing mismatch")
    rounding = spacing.copy()
    rounding[0, 3] = 2e-4  # float32 header rounding is tolerated
    check_datalist([_case(tmp_path, image_affine=spacing, label_affine=rounding)], "train", class_names=CLASSES)


def test_empty_training_label_warns_but_passes(tmp_path: Path) -> None:
    item = _case(tmp_path, label=np.zeros(SHAPE, np.uint8))
    with pytest.warns(UserWarning, match=r"train\[0\]\['label'\]: '.*lab.nii.gz' has no foreground"):
        assert check_datalist([item], "train", class_names=CLASSES, warn_empty_labels=True) == [item]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # validation and test lists: an empty label is a legitimate case
        check_datalist([item], "validate", class_names=CLASSES)


def test_declared_classes() -> None:
    assert declared_classes(CLASSES) == CLASSES and declared_classes({"0": "bg", "1": "x"}) == {0: "bg", 1: "x"}
    assert declared_classes(3) == {0: "class 0", 1: "class 1", 2: "class 2"}
    with pytest.raises(DatalistError, match="numbered 0..N-1"):
        declared_classes({0: "bg", 2: "x"})
    with pytest.raises(DatalistError, match="do not fit the uint8 labels"):
        declared_classes(300)


def test_each_file_is_decoded_once(tmp_path: Path, monkeypatch) -> None:
    decoded: list[str] = []
    original = datalist_module.read_voxels

    def counting(path, image, key):
        decoded.append(path)
        return original(path, image, key)

    monkeypatch.setattr(datalist_module, "read_voxels", counting)
    item = _case(tmp_path)
    check_datalist([item], "train", class_names=CLASSES, warn_empty_labels=True)
    assert decoded == [item["image"], item["label"]]
    decoded.clear()
    check_datalist([item], "train", check_integrity=False)  # headers only
    assert decoded == []
