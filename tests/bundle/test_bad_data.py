# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Bad voxels stop the bundle in ``initialize``: undeclared label values, image/label grids that differ, NaN."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundle.conftest import bundle_workflow, config_files, run_cli

# MONAI rewrites "#" in expressions to its "::" separator, so the config keys in messages read "train::dataset::data".
from tests.bundle.test_datasets_and_bad_input import _error_text, make_msd_dataset


def _written(bundle: Path) -> list[str]:
    return [p.name for p in (bundle / "models").iterdir() if p.name != ".gitkeep"]


def _stops_in_initialize(bundle: Path, names: tuple[str, ...], *fragments: str, **override) -> None:
    workflow = bundle_workflow(config_files(bundle, *names), "train", **override)
    with pytest.raises(Exception) as info:
        workflow.initialize()
    text = _error_text(info.value)
    for fragment in fragments:
        assert fragment in text, text
    assert _written(bundle) == [], "nothing may be written after bad input"
    assert not (bundle / "eval").exists(), "nothing may be written after bad input"


def _rewrite(path: Path, change) -> None:
    image = nib.load(str(path))
    data, affine = change(np.asanyarray(image.dataobj).copy(), image.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), str(path))


@pytest.mark.parametrize("value", [4, 300, -2])
def test_label_values_outside_the_declared_classes_stop_training(fresh_bundle: Path, tmp_path: Path, value) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_labels", validation=True)  # 4 classes: 0..3
    victim = dataset / "labelsTr" / "c1.nii.gz"

    def add_value(data, affine):
        data = data.astype(np.int16)  # 300 wraps to 44 in uint8 (and to 0..3 after a modulo): refused before that
        data[0, 0, 0] = value
        return data, affine

    _rewrite(victim, add_value)
    _stops_in_initialize(
        fresh_bundle,
        ("train",),
        f"dataset::data[1]['label']: '{victim}' holds label values [{value}] outside the declared classes 0..3",
        "(0 background, 1 RV, 2 Myo, 3 LV)",
        dataset_dir=str(dataset),
    )


def test_image_label_affine_mismatch_stops_training_and_evaluation(fresh_bundle: Path, tmp_path: Path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_affine", validation=True)
    victim = dataset / "labelsTr" / "c3.nii.gz"  # the validation case

    def other_spacing(data, affine):
        affine[2, 2] = 6.0  # the image has 5 mm slices
        return data, affine

    _rewrite(victim, other_spacing)
    expected = ("validate::dataset::data[0]: affine/spacing mismatch", f"label {victim} has spacing [1.5, 1.5, 6.0]")
    _stops_in_initialize(fresh_bundle, ("train",), *expected, dataset_dir=str(dataset))
    torch.save({}, fresh_bundle / "models" / "model.pt")  # evaluation gets past its checkpoint check
    workflow = bundle_workflow(config_files(fresh_bundle, "train", "evaluate"), "train")
    with pytest.raises(Exception) as info:
        workflow.parser.update({"dataset_dir": str(dataset)})
        workflow.initialize()
    assert all(fragment in _error_text(info.value) for fragment in expected)
    assert not (fresh_bundle / "eval").exists()


def test_nan_image_stops_training_on_the_command_line(fresh_bundle: Path, tmp_path: Path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_nan", validation=True)
    victim = dataset / "imagesTr" / "c0.nii.gz"

    def add_nan(data, affine):
        data[5, 6, 2] = np.nan
        return data, affine

    _rewrite(victim, add_nan)
    files = ",".join(f"'{f}'" for f in config_files(fresh_bundle, "train"))
    args = ["-m", "monai.bundle", "run", "--config_file", f"[{files}]", "--dataset_dir", str(dataset)]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode != 0
    assert f"train::dataset::data[0]['image']: '{victim}' holds 1 NaN or infinite voxel(s)" in result.stderr
    assert _written(fresh_bundle) == [] and not (fresh_bundle / "eval").exists()
    assert json.loads((dataset / "dataset.json").read_text())["training"]  # the dataset itself is untouched


def test_fewer_slices_than_one_batch_stop_training_instead_of_training_nothing(fresh_bundle: Path, tmp_path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_small", validation=True)  # 3 training volumes of 6 slices
    _stops_in_initialize(
        fresh_bundle,
        ("train",),
        "train::dataloader: 18 training slices per process make no full batch of 24",
        "set --batch_size to at most that",
        dataset_dir=str(dataset),
        batch_size=24,
    )
