"""Cross-validation through the bundle: folds trained on a stored split, each evaluated on its held-out cases, and
the folds' ensemble evaluated, run, packaged and loaded as MONAI Label loads a bundle."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning import (
    checkpoint_plan,
    ensemble_checkpoint,
    package_bundle,
    planned_network,
    trained_plan,
)
from tests.bundle.conftest import config_files, copy_bundle, run_workflow

pytestmark = pytest.mark.slow

NUM_FOLDS = 2


@pytest.fixture(scope="module")
def folds_bundle(tmp_path_factory) -> Path:
    """A bundle whose two folds were trained for one smoke epoch each (about 30 s)."""
    bundle = copy_bundle(tmp_path_factory.mktemp("cv") / "l2gnet_segmentation")
    for fold in range(NUM_FOLDS):
        run_workflow(config_files(bundle, "train"), "train", fold=fold, num_folds=NUM_FOLDS)
    return bundle


def trained_network(checkpoint: Path) -> torch.nn.Module:
    """A network rebuilt from a checkpoint's own plan and loaded with its weights, independently of the configs."""
    network = planned_network(trained_plan(checkpoint))
    network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    return network.eval()


def test_each_fold_trains_on_the_stored_split_and_records_it(folds_bundle):
    splits = json.loads((folds_bundle / "models" / "splits.json").read_text())
    assert len(splits) == NUM_FOLDS
    for k in range(NUM_FOLDS):
        plan = trained_plan(folds_bundle / "models" / f"fold_{k}" / "model.pt")
        assert plan["fold"]["fold"] == k and plan["fold"]["num_folds"] == NUM_FOLDS
        assert (plan["fold"]["train"], plan["fold"]["val"]) == (splits[k]["train"], splits[k]["val"])
        assert json.loads((folds_bundle / "models" / f"fold_{k}" / "plan.json").read_text())["fold"] == plan["fold"]
    # a later run with another number of folds cannot silently draw another split
    with pytest.raises(RuntimeError) as raised:
        run_workflow(config_files(folds_bundle, "train"), "train", fold=0, num_folds=3, max_epochs=0)
    assert "holds 2 folds, but num_folds is 3" in str(raised.value.__cause__ or raised.value)


def test_a_fold_is_evaluated_on_the_cases_it_held_out(folds_bundle, tmp_path):
    fold = trained_plan(folds_bundle / "models" / "fold_1" / "model.pt")["fold"]
    files = config_files(folds_bundle, "train", "evaluate")
    run_workflow(files, "train", fold=1, output_dir=str(tmp_path), paper_table="none")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_cases"] == len(fold["val"])
    scored = {row.split(",")[0] for row in (tmp_path / "metrics_per_case.csv").read_text().splitlines()[1:]}
    assert {name.split(".nii")[0] for name in scored} == set(fold["val"])


def test_the_ensemble_averages_the_folds_softmax(folds_bundle, tmp_path):
    models = folds_bundle / "models"
    path = Path(ensemble_checkpoint(models, "all"))
    assert path == models / "ensemble_0-1" / "model.pt"
    ensemble = trained_network(path)
    folds = [trained_network(models / f"fold_{k}" / "model.pt") for k in range(NUM_FOLDS)]
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(f(x), dim=1) for f in folds]).mean(0)
        torch.testing.assert_close(ensemble(x).exp(), expected, rtol=1e-5, atol=1e-6)
    plan = checkpoint_plan(path)
    assert plan["ensemble"]["folds"] == [0, 1] and plan["fold"] is None
    # the same file while the folds are unchanged; written again when a fold's weights change
    mtime = path.stat().st_mtime_ns
    assert Path(ensemble_checkpoint(models, [0, 1])) == path and path.stat().st_mtime_ns == mtime
    os.utime(models / "fold_1" / "model.pt")
    ensemble_checkpoint(models, "all")
    assert path.stat().st_mtime_ns != mtime
    with pytest.raises(DatasetError, match="are not trained"):
        ensemble_checkpoint(models, [0, 5])


def test_the_ensemble_is_evaluated_on_cases_no_fold_trained_on(folds_bundle, tmp_path):
    workflow = run_workflow(
        config_files(folds_bundle, "train", "evaluate"),
        "train",
        folds="all",
        output_dir=str(tmp_path),
        paper_table="none",
    )
    held_out = {Path(c["image"]).name for c in workflow.parser.get_parsed_content("validate#dataset#data")}
    splits = json.loads((folds_bundle / "models" / "splits.json").read_text())
    trained_on = {f"{case}.nii.gz" for fold in splits for case in fold["train"]}
    assert held_out and not held_out & trained_on  # the phantom's own validation list
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "L2GNet (resnet18), 2 folds"
    assert summary["num_cases"] == len(held_out)


def test_a_packaged_ensemble_loads_as_monai_label_loads_a_bundle(folds_bundle, tmp_path):
    archive = package_bundle(folds_bundle, tmp_path / "dist", folds="all", test_time_flips=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "app")
    bundle = tmp_path / "app" / "l2gnet_segmentation"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")  # MONAI Label's BundleInferTask: network_def + model.pt
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True)["model"], strict=False)
    network.eval()
    assert type(network).__name__ == "FoldEnsemble" and network.init_args["flip_axes"] == [0, 1]
    folds = [trained_network(folds_bundle / "models" / f"fold_{k}" / "model.pt") for k in range(NUM_FOLDS)]
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        passes = [
            torch.flip(torch.softmax(f(torch.flip(x, d)), 1), d) if d else torch.softmax(f(x), 1)
            for f in folds
            for d in [(), (2,), (3,), (2, 3)]
        ]
        torch.testing.assert_close(network(x).exp(), torch.stack(passes).mean(0), rtol=1e-5, atol=1e-6)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == 9
