"""One trusted model through the bundle: the plan travels inside every checkpoint, training never writes the
bundle's configs, every later step reads the weights' own plan (and refuses a copy that disagrees), a resume keeps
it, another network goes through with no override, and evaluation needs no argument after training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.bundle.conftest import REPO, bundle_workflow, config_files, run_workflow
from tests.bundle.test_datasets_and_bad_input import _error_text
from tests.synthetic_mri import MRI_LABELS, write_mri_dataset

CHECKPOINTS = ("model.pt", "checkpoint_latest.pt", "checkpoint_final.pt")


def _plan_in(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["plan"]


def _copy(trained: Path, destination: Path) -> Path:
    shutil.copytree(trained, destination, ignore=shutil.ignore_patterns("eval"))
    return destination


def test_every_checkpoint_carries_the_plan_and_the_configs_stay_untouched(trained_bundle: Path) -> None:
    models = trained_bundle / "models"
    copy = json.loads((models / "plan.json").read_text())
    for name in CHECKPOINTS:
        assert _plan_in(models / name) == copy, f"{name} carries another plan than plan.json"
    for config in (REPO / "bundle" / "configs").iterdir():
        assert (trained_bundle / "configs" / config.name).read_bytes() == config.read_bytes(), config.name
    metadata = json.loads((models / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == copy["class_names"]


def test_an_edited_plan_json_stops_inference_naming_both_files(trained_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(trained_bundle, tmp_path / "bundle")
    plan_file = bundle / "models" / "plan.json"
    plan_file.write_text(json.dumps({**json.loads(plan_file.read_text()), "modality": "MRI", "slice_axis": 0}))
    workflow = bundle_workflow(config_files(bundle, "inference"), "infer", output_dir=str(tmp_path / "out"))
    with pytest.raises(Exception) as info:
        workflow.initialize()
    text = _error_text(info.value)
    assert f"{plan_file} disagrees with the plan inside {bundle / 'models' / 'model.pt'}" in text, text
    assert not (tmp_path / "out").exists()


def test_a_new_training_stopped_before_its_first_best_model_leaves_the_old_pair(
    trained_bundle: Path, tmp_path: Path
) -> None:
    bundle = _copy(trained_bundle, tmp_path / "bundle")
    model = (bundle / "models" / "model.pt").read_bytes()
    plan = (bundle / "models" / "plan.json").read_text()
    # another slice size, one epoch, no validation: no new best model, so model.pt and its plan stay together
    run_workflow(config_files(bundle, "train"), "train", slice_size=[48, 48], val_interval=2)
    assert (bundle / "models" / "model.pt").read_bytes() == model and (
        bundle / "models" / "plan.json"
    ).read_text() == plan
    assert _plan_in(bundle / "models" / "checkpoint_latest.pt")["slice_size"] == [48, 48]
    inference = run_workflow(config_files(bundle, "inference"), "infer", output_dir=str(tmp_path / "out"))
    assert inference.parser.get_parsed_content("slice_size") == json.loads(plan)["slice_size"]


def _mri(root: Path) -> Path:
    return write_mri_dataset(root, "sagittal", num_training=3, num_test=1, shape=(24, 24, 6))


def test_a_resume_keeps_the_checkpoints_plan_and_refuses_other_classes(fresh_bundle: Path, tmp_path: Path) -> None:
    dataset = _mri(tmp_path / "mri")
    run_workflow(config_files(fresh_bundle, "train"), "train", dataset_dir=str(dataset), holdout_fraction=0.34)
    # resumed without repeating --dataset_dir (nor the holdout): the MRI plan, not the phantom's
    resumed = run_workflow(config_files(fresh_bundle, "train"), "train", resume_from="latest", max_epochs=2)
    assert resumed.parser.get_parsed_content("class_names") == MRI_LABELS
    assert len(resumed.parser.get_parsed_content("validate#dataset#data")) == 1, "the same held-out case"
    for name in CHECKPOINTS:
        assert _plan_in(fresh_bundle / "models" / name)["modality"] == "MRI"
    assert not (fresh_bundle / "data").exists(), "the phantom was generated"

    other = _mri(tmp_path / "other")
    datalist = json.loads((other / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**datalist, "labels": {**datalist["labels"], "3": "Tumour"}}))
    workflow = bundle_workflow(
        config_files(fresh_bundle, "train"), "train", resume_from="latest", max_epochs=3, dataset_dir=str(other)
    )
    with pytest.raises(Exception) as info:
        workflow.initialize()
    assert "declares the classes" in _error_text(info.value) and "Tumour" in _error_text(info.value)


def test_evaluation_needs_no_argument_and_names_a_dataset_that_is_gone(fresh_bundle: Path, tmp_path: Path) -> None:
    dataset = _mri(tmp_path / "mri")
    run_workflow(config_files(fresh_bundle, "train"), "train", dataset_dir=str(dataset), holdout_fraction=0.34)
    evaluation = run_workflow(config_files(fresh_bundle, "train", "evaluate"), "train")
    metrics = evaluation.parser.get_parsed_content("validate#evaluator").state.metrics
    assert "test_mean_dice" in metrics, "scores of the test split are labelled as such"
    summary = json.loads((fresh_bundle / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 1 and set(summary["per_class"]) == {v for k, v in MRI_LABELS.items() if k}
    eval_metrics = json.loads((fresh_bundle / "models" / "metadata.json").read_text())["eval_metrics"]
    assert eval_metrics["test_mean_dsc"] == pytest.approx(summary["mean_dsc"], abs=1e-6)

    shutil.move(str(dataset), str(tmp_path / "moved"))
    workflow = bundle_workflow(config_files(fresh_bundle, "train", "evaluate"), "train")
    with pytest.raises(Exception) as info:
        workflow.initialize()
    assert f"the model was trained on '{dataset / 'dataset.json'}', which is gone" in _error_text(info.value)
    assert not (fresh_bundle / "data").exists(), "never the phantom"


def _flexible_unet(tmp_path: Path, plain: bool = False) -> str:
    arguments = {"in_channels": 1, "out_channels": "@num_classes", "backbone": "resnet18", "spatial_dims": 2}
    if plain:
        network = {"_target_": "monai.networks.nets.FlexibleUNet", **arguments}
    else:
        network = {"_target_": "l2gnet_monai.planning.planned_network", "plan": "@trained_plan",
                   "network": "monai.networks.nets.FlexibleUNet", **arguments}  # fmt: skip
    path = tmp_path / ("plain.json" if plain else "flexible_unet.json")
    path.write_text(json.dumps({"network_def": network}))
    return str(path)


def test_another_network_trains_evaluates_and_infers_with_no_override(fresh_bundle: Path, tmp_path: Path) -> None:
    run_workflow([*config_files(fresh_bundle, "train"), _flexible_unet(tmp_path)], "train")
    plan = json.loads((fresh_bundle / "models" / "plan.json").read_text())
    assert plan["network"] == {
        "_target_": "monai.networks.nets.FlexibleUNet", "in_channels": 1, "out_channels": 9, "backbone": "resnet18",
        "spatial_dims": 2,
    }  # fmt: skip
    run_workflow(config_files(fresh_bundle, "train", "evaluate"), "train")
    summary = json.loads((fresh_bundle / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 2 and "FlexibleUNet" in summary["method"]
    inference = run_workflow(config_files(fresh_bundle, "inference"), "infer", output_dir=str(tmp_path / "out"))
    assert type(inference.parser.get_parsed_content("network_def")).__name__ == "FlexibleUNet"
    assert len(list((tmp_path / "out").glob("*_seg.nii.gz"))) == 2

    plain = bundle_workflow([*config_files(fresh_bundle, "train"), _flexible_unet(tmp_path, plain=True)], "train")
    with pytest.raises(Exception) as info:
        plain.initialize()
        plain.run()
    assert "cannot be recorded in the plan" in _error_text(info.value)
