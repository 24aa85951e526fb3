# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The paper's protocol end to end, on tiny fake copies of the three releases.

For each layout (Synapse raw, TransUNet's npz/h5, ACDC) a fake download is converted with
:func:`~l2gnet_monai.data.prepare.prepare_dataset`, then the bundle is trained and evaluated with the protocol override
(``configs/synapse.json`` or ``configs/acdc.json``) and the smoke override, as a user would run it. The CLI's
``evaluate``, ``compare`` and ``table`` commands are tested in subprocesses. Each training runs one or two
iterations of the smoke network (64 x 64 slices, batch 8): every fake training split holds exactly 8 slices.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from monai.bundle import ConfigParser

from l2gnet_monai.cli import main
from l2gnet_monai.data import dataset_labels
from l2gnet_monai.data.prepare import prepare_dataset
from l2gnet_monai.evaluation import ACDC_CLASSES, PAPER_RESULTS, SYNAPSE_CLASSES
from tests.bundle.conftest import REPO, SMOKE, copy_bundle, run_cli, run_workflow
from tests.data.fake_datasets import make_acdc, make_synapse_raw, make_synapse_transunet

BUNDLE_CONFIGS = REPO / "bundle" / "configs"
OVERRIDES = REPO / "configs"

#: Fake volumes: 2 axial slices each, so that 4 training volumes (Synapse) or 2 patients x 2 frames (ACDC) give the
#: 8 slices of one smoke batch.
SHAPE = (24, 20, 2)
SYNAPSE_TRAIN = ("0005", "0006", "0007", "0009")
SYNAPSE_TEST = ("0001", "0002")
ACDC_TRAIN, ACDC_VAL, ACDC_TEST = (3, 4), (2, 19), (1,)
#: Training slices of the real datasets: TransUNet's train_npz (Synapse) and SSL4MIS' 140 ACDC training volumes.
SLICES = {"synapse": 2211, "acdc": 1312}


def _synapse_raw(root: Path) -> Path:
    return make_synapse_raw(root, cases=SYNAPSE_TRAIN + SYNAPSE_TEST, shape=SHAPE, testing_cases=())


def _synapse_transunet(root: Path) -> Path:
    pytest.importorskip("h5py")
    return make_synapse_transunet(
        root, train_cases=SYNAPSE_TRAIN, test_cases=SYNAPSE_TEST, shape=SHAPE[:2], n_slices=SHAPE[2]
    )


def _acdc(root: Path) -> Path:
    return make_acdc(root, patients=ACDC_TRAIN + ACDC_VAL + ACDC_TEST, testing=(), shape=SHAPE, with_4d=False)


#: layout -> (fake release writer, protocol override, paper classes, modality)
LAYOUTS: dict[str, tuple[Callable[[Path], Path], str, dict[int, str], str]] = {
    "synapse-raw": (_synapse_raw, "synapse", SYNAPSE_CLASSES, "CT"),
    "synapse-transunet": (_synapse_transunet, "synapse", SYNAPSE_CLASSES, "CT"),
    "acdc": (_acdc, "acdc", ACDC_CLASSES, "MRI"),
}


@dataclass
class ProtocolRun:
    """What a user's prepare -> train -> evaluate run produced, for the assertions."""

    layout: str
    override: str
    dataset: Path
    datalist: dict[str, Any]
    bundle: Path
    parsed: dict[str, Any]
    out_channels: int
    eval_stdout: str


def _paths(items: list[dict[str, Any]], base: Path, key: str = "image") -> list[str]:
    return [str((base / item[key]).resolve()) for item in items]


def _resolved(items: list[dict[str, Any]]) -> list[str]:
    return sorted(str(Path(item["image"]).resolve()) for item in items)


@pytest.fixture(scope="module", params=list(LAYOUTS))
def protocol_run(request, tmp_path_factory) -> ProtocolRun:
    """Prepare a fake release, train the bundle with the protocol override (smoke settings), evaluate it."""
    layout = request.param
    make_release, override, _, _ = LAYOUTS[layout]
    root = tmp_path_factory.mktemp(layout)
    dataset = prepare_dataset(make_release(root / "download"), root / "msd", layout=layout, allow_missing=True)
    datalist = json.loads((dataset / "dataset.json").read_text())
    bundle = copy_bundle(root / "l2gnet_segmentation")
    protocol = str(OVERRIDES / f"{override}.json")
    # Synapse: two epochs, validating (on the test split) only after the last one, as configs/synapse.json does
    # with val_interval = max_epochs; the smoke override sets val_interval to 1, so it is set back here.
    extra = {"max_epochs": 2, "val_interval": "@max_epochs"} if override == "synapse" else {}
    train = run_workflow(
        [str(bundle / "configs" / "train.json"), protocol, str(SMOKE)], "train", dataset_dir=str(dataset), **extra
    )
    parsed = {
        key: train.parser.get_parsed_content(key)
        for key in ("train#dataset#data", "validate#dataset#data", "class_names", "modality", "max_epochs")
    }
    out_channels = train.parser.get_parsed_content("network").out_channels
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        files = [str(bundle / "configs" / "train.json"), str(bundle / "configs" / "evaluate.json"), protocol]
        run_workflow([*files, str(SMOKE)], "train", dataset_dir=str(dataset))
    return ProtocolRun(layout, override, dataset, datalist, bundle, parsed, out_channels, stdout.getvalue())


# ---------------------------------------------------------------------------------------------------------------
# the overrides themselves (no data needed)
# ---------------------------------------------------------------------------------------------------------------


def _parse(*files: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return parser


@pytest.mark.parametrize("override", ["synapse", "acdc"])
def test_overrides_hold_the_paper_protocol(override: str) -> None:
    parser = _parse(BUNDLE_CONFIGS / "train.json", OVERRIDES / f"{override}.json")
    value = parser.get_parsed_content
    assert value("slice_size") == [224, 224] and value("batch_size") == 24 and value("seed") == 1234
    assert value("learning_rate") == 0.01 and value("ct_window") == [-125, 275]
    assert parser["optimizer"]["_target_"] == "torch.optim.SGD"
    assert parser["optimizer"]["momentum"] == 0.9 and parser["optimizer"]["weight_decay"] == 1e-4
    assert parser["lr_scheduler"]["_target_"].endswith("PolynomialLR") and parser["lr_scheduler"]["power"] == 0.9
    assert parser["train"]["dataloader"]["drop_last"] is True
    assert value("holdout_fraction") == 0  # never hold training cases out
    assert value("evaluation_split") == "test" and value("paper_table") == override
    assert value("hd95_in_mm") is False  # the protocol's medpy hd95 without spacing: voxels
    # an epoch is iterations_per_epoch iterations: one pass over the real training slices in batches of 24
    assert value("iterations_per_epoch") == SLICES[override] // value("batch_size")
    iterations = value("max_epochs") * value("iterations_per_epoch")
    if override == "synapse":
        # TransUNet: 150 epochs of the 2211 training slices, ~14k iterations; no validation set, so the test split
        # is scored once, after the last epoch, and models/model.pt is the final model
        assert value("max_epochs") == 150 and value("val_interval") == 150 and 13_500 <= iterations <= 14_000
        assert value("validation_split") == "test"
        assert value("train#checkpoint_saver#save_interval") == 10  # resumable checkpoints all the same
    else:
        # SSL4MIS' fully supervised ACDC recipe: 30k iterations, best checkpoint on the validation split
        assert value("validation_split") == "validation" and value("val_interval") == 5
        assert 29_500 <= iterations <= 30_500


@pytest.mark.parametrize("override", ["synapse", "acdc"])
def test_overrides_merge_with_evaluate_and_smoke(override: str) -> None:
    files = [BUNDLE_CONFIGS / "train.json", BUNDLE_CONFIGS / "evaluate.json", OVERRIDES / f"{override}.json", SMOKE]
    parser = _parse(*files)
    assert parser.get_parsed_content("evaluation_split") == "test"  # the override comes after evaluate.json
    assert parser.get_parsed_content("paper_table") == override
    assert parser.get_parsed_content("slice_size") == [64, 64] and parser.get_parsed_content("max_epochs") == 1
    assert "scored_split" in parser["validate#dataset#data"] and parser["scored_split"]["split"] == "@evaluation_split"


# ---------------------------------------------------------------------------------------------------------------
# prepare -> train -> evaluate through the bundle
# ---------------------------------------------------------------------------------------------------------------


def test_classes_and_modality_come_from_the_converted_dataset(protocol_run: ProtocolRun) -> None:
    _, _, classes, modality = LAYOUTS[protocol_run.layout]
    labels = dataset_labels(protocol_run.dataset / "dataset.json")
    assert labels == {0: "background", **classes}  # the paper's classes, in the paper's label order
    assert protocol_run.parsed["class_names"] == labels and protocol_run.parsed["modality"] == modality
    assert protocol_run.out_channels == len(classes) + 1
    weights = torch.load(protocol_run.bundle / "models" / "model.pt", map_location="cpu", weights_only=True)["model"]
    heads = [v for k, v in weights.items() if k.startswith("segmentation_head") and k.endswith("weight")]
    assert heads and heads[-1].shape[0] == len(classes) + 1


def test_training_and_validation_splits(protocol_run: ProtocolRun) -> None:
    datalist, base = protocol_run.datalist, protocol_run.dataset
    train = _resolved(protocol_run.parsed["train#dataset#data"])
    validate = _resolved(protocol_run.parsed["validate#dataset#data"])
    # every training case is trained on: no fifth held out
    assert train == sorted(_paths(datalist["training"], base))
    if protocol_run.override == "synapse":
        assert datalist["validation"] == [] and len(train) == len(SYNAPSE_TRAIN)
        assert validate == sorted(_paths(datalist["test"], base))  # scored once, at the end
    else:
        assert len(train) == 2 * len(ACDC_TRAIN)  # ED and ES frames
        assert validate == sorted(_paths(datalist["validation"], base)) and len(validate) == 2 * len(ACDC_VAL)


def test_model_is_written_after_the_final_epoch(protocol_run: ProtocolRun) -> None:
    models = protocol_run.bundle / "models"
    best = torch.load(models / "model.pt", map_location="cpu", weights_only=True)["model"]
    final = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    trainer = final["trainer"]
    assert trainer["max_epochs"] == protocol_run.parsed["max_epochs"]
    assert trainer["iteration"] == trainer["max_epochs"] * trainer["epoch_length"]  # the run completed
    if protocol_run.override == "synapse":
        # validation ran only after the last of 2 epochs: model.pt holds the final weights, as in TransUNet
        assert trainer["max_epochs"] == 2
        assert best.keys() == final["model"].keys()
        for key, tensor in best.items():
            torch.testing.assert_close(tensor, final["model"][key], msg=key)


def test_evaluation_scores_the_test_split_in_the_paper_table(protocol_run: ProtocolRun) -> None:
    _, _, classes, _ = LAYOUTS[protocol_run.layout]
    test_labels = _paths(protocol_run.datalist["test"], protocol_run.dataset, key="label")
    eval_dir = protocol_run.bundle / "eval"
    with open(eval_dir / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} == set(classes.values())
    assert {r["case"] for r in rows} == {Path(p).name for p in test_labels}
    assert len(rows) == len(test_labels) * len(classes)
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["num_cases"] == len(test_labels) and summary["hd95_unit"] == "voxel"
    assert list(summary["per_class"]) == list(classes.values())
    title = "Table 1 (Synapse" if protocol_run.override == "synapse" else "Table 2 (ACDC"
    assert title in protocol_run.eval_stdout and "\nL2GNet (resnet18) " in protocol_run.eval_stdout  # the network
    assert summary["method"] == "L2GNet (resnet18)"
    assert f"{PAPER_RESULTS[protocol_run.override]['L2GNet(4-ref)'][0]:.2f}" in protocol_run.eval_stdout


# ---------------------------------------------------------------------------------------------------------------
# the CLI: evaluate, compare, table
# ---------------------------------------------------------------------------------------------------------------


def _one_line_error(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("l2gnet-monai: error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def acdc_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("acdc_cli")
    return prepare_dataset(_acdc(root / "download"), root / "msd", allow_missing=True)


def test_cli_evaluate_perfect_predictions_and_a_missing_one(acdc_dataset: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    test_labels = sorted((acdc_dataset / "labelsTs").glob("*.nii.gz"))
    assert len(test_labels) == 2 * len(ACDC_TEST)
    for label in test_labels:  # the ground truth as prediction, named as the bundle's inference names its outputs
        shutil.copy(label, preds / label.name.replace(".nii.gz", "_seg.nii.gz"))
    out = tmp_path / "scores"
    args = ["-m", "l2gnet_monai", "evaluate", str(preds), str(acdc_dataset), "--dataset", "acdc"]
    done = run_cli([*args, "--output_dir", str(out)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Table 2 (ACDC" in done.stdout and "L2GNet(4-ref)" in done.stdout
    ours = next(line for line in done.stdout.splitlines() if line.startswith("ours "))  # no --name: "ours"
    assert ours.split()[1:] == ["100.00", "0.00", "100.00", "100.00", "100.00", "0.00", "0.00", "0.00"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_dsc"] == 1.0 and summary["num_cases"] == len(test_labels) and summary["hd95_unit"] == "voxel"
    with open(out / "metrics_per_case.csv") as f:
        assert len(list(csv.DictReader(f))) == len(test_labels) * 3

    # millimetres on request
    done = run_cli([*args, "--output_dir", str(tmp_path / "mm"), "--hd95_in_mm"], cwd=tmp_path)
    assert done.returncode == 0 and json.loads((tmp_path / "mm" / "summary.json").read_text())["hd95_unit"] == "mm"

    # a missing prediction: one line naming the case, exit status 1, nothing written
    missing = sorted(preds.iterdir())[0]
    missing.unlink()
    done = run_cli([*args, "--output_dir", str(tmp_path / "none")], cwd=tmp_path)
    assert done.returncode == 1
    _one_line_error(done.stderr, "no prediction", missing.name.replace("_seg.nii.gz", ""))
    assert not (tmp_path / "none").exists()


def test_cli_compare(protocol_run: ProtocolRun, tmp_path: Path) -> None:
    summary_file = protocol_run.bundle / "eval" / "summary.json"
    summary = json.loads(summary_file.read_text())
    dataset = protocol_run.override
    done = run_cli(["-m", "l2gnet_monai", "compare", str(summary_file), "--dataset", dataset], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    ours = next(line for line in lines if line.startswith(summary["method"] + " "))  # named after the network
    assert ours.split()[2] == f"{100 * summary['mean_dsc']:.2f}" and ours.split()[3] == f"{summary['mean_hd95']:.2f}"
    assert lines[0].startswith("Table 1 (Synapse" if dataset == "synapse" else "Table 2 (ACDC")
    assert all(name in done.stdout for name in PAPER_RESULTS[dataset])
    if protocol_run.layout == "acdc":  # a summary of the other dataset: one line, exit status 1
        done = run_cli(["-m", "l2gnet_monai", "compare", str(summary_file), "--dataset", "synapse"], cwd=tmp_path)
        assert done.returncode == 1
        _one_line_error(done.stderr, "does not fit the synapse table", "RV")


@pytest.mark.parametrize("dataset", ["synapse", "acdc"])
def test_cli_table(dataset: str, tmp_path: Path) -> None:
    done = run_cli(["-m", "l2gnet_monai", "table", "--dataset", dataset], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("Table 1 (Synapse" if dataset == "synapse" else "Table 2 (ACDC")
    assert all(name in done.stdout for name in PAPER_RESULTS[dataset]) and "ours" not in done.stdout
    assert f"{PAPER_RESULTS[dataset]['L2GNet(4-ref)'][0]:.2f}" in done.stdout


def test_cli_bad_input_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["table", "--dataset", "brats"]) == 1
    _one_line_error(capsys.readouterr().err, "--dataset", "synapse", "acdc", "brats")
    assert main(["compare", str(tmp_path / "nowhere.json"), "--dataset", "synapse"]) == 1
    _one_line_error(capsys.readouterr().err, "does not exist")
    (tmp_path / "bad.json").write_text('{"mean_dsc": 0.5}')
    assert main(["compare", str(tmp_path / "bad.json"), "--dataset", "synapse"]) == 1
    _one_line_error(capsys.readouterr().err, "not an evaluation summary", "per_class")
    (tmp_path / "preds").mkdir()
    assert main(["evaluate", str(tmp_path / "preds"), str(tmp_path / "no_labels"), "--dataset", "acdc"]) == 1
    _one_line_error(capsys.readouterr().err, "ground truth", "does not exist")


def test_cli_help_texts(capsys: pytest.CaptureFixture) -> None:
    for command, words in (
        ("evaluate", ("PRED_DIR", "LABELS", "synapse", "acdc", "--nohd95_in_mm", "metrics_per_case.csv", "voxels")),
        ("compare", ("SUMMARY_JSON", "summary.json", "Table 1", "Table 2")),
        ("table", ("synapse", "acdc", "voxels")),
    ):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        captured = capsys.readouterr()
        for word in words:
            assert word in captured.out + captured.err, (command, word)
    with pytest.raises(SystemExit):
        main(["--help"])
    text = "".join(capsys.readouterr())
    for word in ("evaluate", "compare", "table", "configs/synapse.json", "run evaluating"):
        assert word in text, word
