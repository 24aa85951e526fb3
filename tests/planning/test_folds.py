"""Cross-validation splits: stored, reused, refused when they no longer fit, and a fold's cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning import (
    cross_validation_fold,
    ensure_splits,
    evaluation_split,
    fold_dir,
    make_splits,
    read_splits,
    split_cases,
)


def write_datalist(folder: Path, training: int, validation: int = 0, test: int = 0) -> Path:
    """A ``dataset.json`` (the files themselves are not needed to split it)."""

    def cases(prefix: str, count: int, offset: int = 0) -> list[dict]:
        return [
            {"image": f"./images{prefix}/case_{i:03d}.nii.gz", "label": f"./labels{prefix}/case_{i:03d}.nii.gz"}
            for i in range(offset, offset + count)
        ]

    content = {"labels": {"0": "background", "1": "organ"}, "modality": {"0": "CT"}, "training": cases("Tr", training)}
    if validation:
        content["validation"] = cases("Tr", validation, offset=training)
    if test:
        content["test"] = cases("Ts", test, offset=training + validation)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset.json"
    path.write_text(json.dumps(content))
    return path


def test_make_splits_holds_out_every_case_once_and_is_seeded():
    cases = [f"case_{i:03d}" for i in range(11)]
    folds = make_splits(cases, num_folds=5, seed=7)
    held = [c for fold in folds for c in fold["val"]]
    assert sorted(held) == cases  # every case held out exactly once
    assert sorted(len(fold["val"]) for fold in folds) == [2, 2, 2, 2, 3]
    for fold in folds:
        assert sorted(fold["train"] + fold["val"]) == cases
    assert make_splits(list(reversed(cases)), 5, seed=7) == folds  # the order of the datalist does not matter
    assert make_splits(cases, 5, seed=8) != folds
    with pytest.raises(DatasetError, match="num_folds"):
        make_splits(cases[:3], num_folds=5)


def test_splits_are_stored_once_and_reused(tmp_path):
    datalist = write_datalist(tmp_path / "data", training=10)
    splits_file = tmp_path / "models" / "splits.json"
    first = ensure_splits(splits_file, datalist, num_folds=5, seed=1)
    assert read_splits(splits_file) == first
    # an existing file wins over the seed: runs of one study (or two studies) hold out the same cases
    assert ensure_splits(splits_file, datalist, num_folds=5, seed=999) == first
    # nnU-Net's splits_final.json of the same cases is used as it is
    names = [f"case_{i:03d}" for i in range(10)]
    nnunet = [{"train": names[1 - k :: 2], "val": names[k::2]} for k in (0, 1)]
    splits_file.write_text(json.dumps(nnunet))
    assert ensure_splits(splits_file, datalist, num_folds=2) == nnunet
    with pytest.raises(DatasetError, match="holds 2 folds, but num_folds is 5"):
        ensure_splits(splits_file, datalist, num_folds=5)


def test_a_split_that_no_longer_fits_the_dataset_is_refused(tmp_path):
    splits_file = tmp_path / "splits.json"
    ensure_splits(splits_file, write_datalist(tmp_path / "old", training=6), num_folds=3)
    grown = write_datalist(tmp_path / "new", training=7)
    with pytest.raises(DatasetError, match=r"1 of the dataset are in no fold \['case_006'\]"):
        ensure_splits(splits_file, grown, num_folds=3)
    shrunk = write_datalist(tmp_path / "smaller", training=5)
    with pytest.raises(DatasetError, match=r"names are not in the dataset \['case_005'\]"):
        ensure_splits(splits_file, shrunk, num_folds=3)
    splits_file.write_text(json.dumps([{"train": ["case_000"], "val": ["case_000"]}]))
    with pytest.raises(DatasetError, match="trains on cases it holds out"):
        read_splits(splits_file)


def test_a_fold_trains_and_validates_on_its_own_cases(tmp_path):
    datalist = write_datalist(tmp_path / "data", training=9, validation=2, test=2)
    splits_file = tmp_path / "models" / "splits.json"
    folds = [cross_validation_fold(k, datalist, splits_file, num_folds=3) for k in range(3)]
    pool = {f"case_{i:03d}" for i in range(9)}  # the dataset's own validation and test lists stay out
    assert set().union(*(set(f["val"]) for f in folds)) == pool
    for fold in folds:
        training = {Path(c["image"]).name for c in split_cases(datalist, "training", 0.2, fold)}
        held_out = {Path(c["image"]).name for c in split_cases(datalist, "validation", 0.2, fold)}
        assert training == {f"{c}.nii.gz" for c in fold["train"]} and held_out == {f"{c}.nii.gz" for c in fold["val"]}
        assert not training & held_out
        assert {Path(c["image"]).name for c in split_cases(datalist, "test", 0.2, fold)} == {
            "case_011.nii.gz",
            "case_012.nii.gz",
        }
    # the weights' plan wins: evaluating or resuming fold 1 uses fold 1's cases whatever --fold says
    assert cross_validation_fold(None, datalist, splits_file, 3, plan={"fold": folds[1]}) == folds[1]
    assert cross_validation_fold(None, datalist, splits_file) is None
    with pytest.raises(DatasetError, match="3 is not one of the 3 folds"):
        cross_validation_fold(3, datalist, splits_file, num_folds=3)
    assert fold_dir("/m", None) == "/m" and fold_dir("/m", 2) == "/m/fold_2"


def test_which_cases_a_fold_and_an_ensemble_are_scored_on(tmp_path):
    no_lists = write_datalist(tmp_path / "a", training=6)
    with_validation = write_datalist(tmp_path / "b", training=6, validation=2)
    with_test = write_datalist(tmp_path / "c", training=6, validation=2, test=2)
    fold_plan = {"fold": {"fold": 0, "train": [], "val": ["case_000"]}}
    ensemble_plan = {"ensemble": {"folds": [0, 1, 2]}}
    assert evaluation_split("auto", with_test, plan=fold_plan) == "validation"  # its held-out cases, not the test
    assert evaluation_split("auto", with_test, plan=ensemble_plan) == "test"
    assert evaluation_split("auto", with_validation, plan=ensemble_plan) == "validation"
    with pytest.raises(DatasetError, match="only be scored on a labelled test or validation list"):
        evaluation_split("auto", no_lists, plan=ensemble_plan)
    with pytest.raises(DatasetError, match="not on .training."):
        evaluation_split("training", with_test, plan=ensemble_plan)
    assert evaluation_split("auto", with_test) == "test" and evaluation_split("auto", no_lists) == "validation"
