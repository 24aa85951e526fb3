"""Datalists: which dataset.json, its splits (with the hold-out rule), classes, modality, and the file checks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from l2gnet_monai.data.datalist import (
    DatalistError,
    check_datalist,
    dataset_labels,
    dataset_modality,
    dataset_num_classes,
    list_images,
    load_split,
    resolve_datalist,
)


def _write(path: Path, shape=(6, 5, 4)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path))
    return str(path)


def _dataset(root: Path, cases: int = 6, validation: int = 0, **extra) -> Path:
    items = [
        {"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"} for i in range(cases + validation)
    ]
    for item in items:
        _write(root / item["image"])
        _write(root / item["label"])
    content = {"labels": {"0": "background", "1": "a", "2": "b"}, "training": items[:cases], **extra}
    if validation:
        content["validation"] = items[cases:]
    (root / "dataset.json").write_text(json.dumps(content))
    return root / "dataset.json"


def test_splits_with_a_validation_list_are_read_as_given(tmp_path) -> None:
    datalist = _dataset(tmp_path, cases=4, validation=2)
    assert [Path(i["image"]).name for i in load_split(datalist, "training")] == [
        "c0.nii.gz",
        "c1.nii.gz",
        "c2.nii.gz",
        "c3.nii.gz",
    ]
    validation = load_split(datalist, "validation")
    assert [Path(i["image"]).name for i in validation] == ["c4.nii.gz", "c5.nii.gz"]
    assert all(Path(i["image"]).is_absolute() and Path(i["label"]).is_file() for i in validation)


def test_without_validation_every_fifth_training_case_is_held_out(tmp_path) -> None:
    datalist = _dataset(tmp_path, cases=10)
    training = [Path(i["image"]).name for i in load_split(datalist, "training")]
    validation = [Path(i["image"]).name for i in load_split(datalist, "validation")]
    assert validation == ["c4.nii.gz", "c9.nii.gz"]
    assert set(training) | set(validation) == {f"c{i}.nii.gz" for i in range(10)}
    assert not set(training) & set(validation)
    assert len(load_split(datalist, "training", holdout_fraction=0.0)) == 10
    with pytest.raises(DatalistError, match="'validation'"):
        load_split(datalist, "validation", holdout_fraction=0.0)


def test_classes_and_modality_come_from_the_file(tmp_path) -> None:
    datalist = _dataset(tmp_path, modality={"0": "MR"})
    assert dataset_labels(datalist) == {0: "background", 1: "a", 2: "b"}
    assert dataset_num_classes(datalist) == 3
    assert dataset_modality(datalist) == "MRI"
    (tmp_path / "gap.json").write_text(json.dumps({"labels": {"0": "bg", "2": "x"}}))
    with pytest.raises(DatalistError, match="0..N-1"):
        dataset_labels(tmp_path / "gap.json")


def test_resolve_datalist_names_what_is_missing(tmp_path) -> None:
    with pytest.raises(DatalistError, match="dataset_dir: folder .* does not exist"):
        resolve_datalist(tmp_path / "nowhere", tmp_path / "phantom")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatalistError, match="has no dataset.json"):
        resolve_datalist(tmp_path / "empty", tmp_path / "phantom")
    datalist = _dataset(tmp_path / "ds")
    assert resolve_datalist(tmp_path / "ds", tmp_path / "phantom") == str(datalist)
    assert resolve_datalist(str(datalist), tmp_path / "phantom") == str(datalist)


def test_no_dataset_generates_the_phantom_where_asked(tmp_path) -> None:
    phantom = {"num_training": 1, "num_validation": 1, "shape": [32, 32, 4], "spacing": [12.0, 12.0, 60.0]}
    path = resolve_datalist(None, tmp_path / "phantom", phantom)
    assert path == str(tmp_path / "phantom" / "dataset.json")
    assert len(load_split(path, "training")) == 1 and len(load_split(path, "validation")) == 1


def test_list_images_accepts_folders_datasets_files_and_lists(tmp_path) -> None:
    datalist = _dataset(tmp_path / "ds", cases=2, validation=1)
    assert [Path(i["image"]).name for i in list_images(tmp_path / "ds")] == ["c2.nii.gz"]
    assert len(list_images(datalist, split="training")) == 2
    assert len(list_images(tmp_path / "ds" / "imagesTr")) == 3
    assert list_images(str(tmp_path / "ds" / "imagesTr" / "c0.nii.gz"))[0]["image"].endswith("c0.nii.gz")
    assert list_images(["a.nii.gz"])[0]["image"].endswith("a.nii.gz")
    (tmp_path / "none").mkdir()
    with pytest.raises(DatalistError, match="no .nii"):
        list_images(tmp_path / "none")


def test_check_datalist_accepts_good_data_and_names_each_problem(tmp_path) -> None:
    good = {"image": _write(tmp_path / "i.nii.gz"), "label": _write(tmp_path / "l.nii.gz")}
    assert check_datalist([good], "train") == [good]
    with pytest.raises(DatalistError, match="train: the datalist is empty"):
        check_datalist([], "train")
    missing = {"image": str(tmp_path / "nope.nii.gz")}
    with pytest.raises(DatalistError, match=r"train\[0\]\['image'\]: file not found"):
        check_datalist([missing], "train")
    other = {"image": good["image"], "label": _write(tmp_path / "l2.nii.gz", (6, 5, 3))}
    with pytest.raises(DatalistError, match="image and label shapes differ"):
        check_datalist([other], "train")
    flat = {"image": _write(tmp_path / "flat.nii.gz", (6, 5))}
    with pytest.raises(DatalistError, match="expected a 3-D volume"):
        check_datalist([flat], "train", keys=["image"])
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(Path(_write(tmp_path / "big.nii.gz", (40, 40, 40))).read_bytes()[:200])
    with pytest.raises(DatalistError, match="truncated or corrupt"):
        check_datalist([{"image": str(truncated)}], "train", keys=["image"])
    uncompressed = tmp_path / "u.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(uncompressed))
    uncompressed.write_bytes(uncompressed.read_bytes()[:-100])
    with pytest.raises(DatalistError, match="is truncated"):
        check_datalist([{"image": str(uncompressed)}], "train", keys=["image"])
