# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The bundle's evaluation on a user's own 3-class MRI dataset: its test split, a per-class table, no paper columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.bundle.conftest import config_files, run_cli, run_workflow
from tests.bundle.test_datasets_and_bad_input import _expect_failure, make_msd_dataset

LABELS = {"0": "background", "1": "liver", "2": "tumour"}


def _with_test_split(dataset: Path) -> Path:
    """Copies of the validation volumes as the test split (imagesTs/labelsTs), as MSD datasets hold it."""
    content = json.loads((dataset / "dataset.json").read_text())
    content["test"] = []
    for item in content["validation"]:
        entry = {}
        for key, folder in (("image", "imagesTs"), ("label", "labelsTs")):
            source = dataset / item[key]
            (dataset / folder).mkdir(exist_ok=True)
            shutil.copy(source, dataset / folder / f"t_{source.name}")
            entry[key] = f"./{folder}/t_{source.name}"
        content["test"].append(entry)
    (dataset / "dataset.json").write_text(json.dumps(content))
    return dataset


def test_evaluation_split_test_on_a_3_class_mri_dataset(fresh_bundle: Path, tmp_path: Path) -> None:
    dataset = _with_test_split(make_msd_dataset(tmp_path / "Task_mri", labels=LABELS, validation=True))
    # an explicit paper table that the classes do not fit stops in initialize, before anything is written
    _expect_failure(
        fresh_bundle,
        ("train", "evaluate"),
        "paper_table: 'synapse' needs the paper's classes, but the dataset's classes ['liver', 'tumour'] lack",
        dataset_dir=str(dataset),
        evaluation_split="test",
        paper_table="synapse",
    )
    run_workflow(config_files(fresh_bundle, "train"), "train", dataset_dir=str(dataset))

    # the command line: the default paper_table ("auto") prints a per-class table and exits 0
    files = ",".join(f"'{f}'" for f in config_files(fresh_bundle, "train", "evaluate"))
    args = ["-m", "monai.bundle", "run", "evaluating", "--config_file", f"[{files}]", "--dataset_dir", str(dataset)]
    result = run_cli([*args, "--evaluation_split", "test"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    title = next(line for line in result.stdout.splitlines() if line.startswith("L2GNet (resnet18): "))
    assert "(mm, medpy definition)" in title and "over 1 cases" in title
    assert "Aorta" not in result.stdout and "Table 1" not in result.stdout
    summary = json.loads((fresh_bundle / "eval" / "summary.json").read_text())
    assert list(summary["per_class"]) == ["liver", "tumour"] and summary["method"] == "L2GNet (resnet18)"
    with open(fresh_bundle / "eval" / "metrics_per_case.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["t_c3.nii.gz", "t_c3.nii.gz"]

    # "none" on the command line (MONAI drops a None value) selects the per-class table explicitly
    result = run_cli([*args, "--evaluation_split", "test", "--paper_table", "none"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "L2GNet (resnet18): mean DSC" in result.stdout
