# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Voxels checked as each case is loaded: a bad case is named, skipped and listed, or stops the run."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from l2gnet_monai.data import CheckedDataLoader, CheckedDataset, CheckVoxelsd, DatasetError
from l2gnet_monai.transforms import volume_preprocessing


def _folder(tmp_path: Path, nan: int | None = None, truncated: int | None = None, label: int | None = None) -> list:
    items = []
    for case in range(4):
        image = np.random.default_rng(case).normal(0, 50, (20, 18, 4)).astype(np.float32)
        seg = np.zeros((20, 18, 4), np.uint8)
        seg[5:10, 5:10] = 1
        if case == nan:
            image[1, 2, 3] = np.nan
        if case == label:
            seg[0, 0, 0] = 7
        paths = {"image": tmp_path / f"c{case}.nii.gz", "label": tmp_path / f"c{case}_seg.nii.gz"}
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(paths["image"]))
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(paths["label"]))
        if case == truncated:
            data = paths["image"].read_bytes()
            paths["image"].write_bytes(data[: len(data) // 2])
        items.append({k: str(v) for k, v in paths.items()})
    return items


def _loader(items: list, num_workers: int = 0, on_bad_case: str = "skip", labels: bool = False) -> CheckedDataLoader:
    keys = ["image", "label"] if labels else ["image"]
    check = CheckVoxelsd(keys, class_names=2 if labels else None)
    transform = volume_preprocessing(
        "CT", (-125, 275), (16, 16), 2, label_key="label" if labels else None, label_grid="original", voxel_check=check
    )
    data = items if labels else [{"image": item["image"]} for item in items]
    return CheckedDataLoader(CheckedDataset(data, transform, on_bad_case), num_workers=num_workers)


def _names(loader: CheckedDataLoader) -> list[str]:
    return [Path(batch["image"].meta["filename_or_obj"][0]).name for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_voxels_and_corrupt_files_are_skipped_named_and_listed(tmp_path: Path, num_workers: int) -> None:
    items = _folder(tmp_path, nan=1, truncated=2)
    loader = _loader(items, num_workers)
    assert _names(loader) == ["c0.nii.gz", "c3.nii.gz"]
    assert len(loader.bad_cases) == 2
    nan = f"'{items[1]['image']}' holds 1 NaN or infinite voxel(s) (the first at index (1, 2, 3))"
    assert nan in loader.bad_cases[0]
    assert f"'{items[2]['image']}': truncated or corrupt" in loader.bad_cases[1]
    with pytest.raises(DatasetError, match="datalist: 2 of 4 cases were skipped") as info:
        loader.raise_for_bad_cases()
    assert items[1]["image"] in str(info.value) and items[2]["image"] in str(info.value)


def test_undeclared_label_values_are_a_bad_case(tmp_path: Path) -> None:
    items = _folder(tmp_path, label=3)
    loader = _loader(items, labels=True)
    assert _names(loader) == ["c0.nii.gz", "c1.nii.gz", "c2.nii.gz"]
    assert f"'{items[3]['label']}' holds label values [7] outside the declared classes 0..1" in loader.bad_cases[0]


def test_on_bad_case_stop_raises_at_the_bad_case(tmp_path: Path) -> None:
    items = _folder(tmp_path, nan=1)
    loader = _loader(items, on_bad_case="stop")
    seen = []
    with pytest.raises(DatasetError, match=r"holds 1 NaN .* \(on_bad_case is 'stop'\)"):
        for batch in loader:
            seen.append(batch)
    assert len(seen) == 1
    with pytest.raises(ValueError, match="on_bad_case must be one of"):
        CheckedDataset(items, None, on_bad_case="ignore")


def test_a_clean_folder_raises_nothing_and_one_case_starts_no_worker(tmp_path: Path) -> None:
    items = _folder(tmp_path)
    loader = _loader(items, num_workers=2)
    assert len(_names(loader)) == 4 and loader.bad_cases == []
    loader.raise_for_bad_cases()
    single = _loader(items[:1], num_workers=2)
    assert single.loader.num_workers == 0 and single.num_cases == 1
    assert not hasattr(loader, "__len__")  # the engine counts the good cases itself


def test_other_errors_are_not_taken_for_bad_data(tmp_path: Path) -> None:
    items = _folder(tmp_path)

    def broken(_: dict) -> dict:
        raise KeyError("a bug, not the data")

    with pytest.raises(RuntimeError) as info:  # MONAI's apply_transform wraps it
        list(CheckedDataLoader(CheckedDataset(items, broken)))
    assert isinstance(info.value.__cause__, KeyError)
