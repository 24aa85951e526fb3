"""A user's own dataset, end to end, with the commands of ``docs/own_dataset.md`` and no override repeated after
training: train -> evaluate on the test split -> segment a folder -> package -> install -> MONAI Label.

The dataset (``tests/synthetic_mri.py``) is MRI with 3 foreground classes, stored in a non-RAS axis order with
4 mm slices across the sagittal axis: the bundle must find that axis, slice across it at every step, and name the
classes everywhere. A coronally acquired set goes through training and inference in-process.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from l2gnet_monai.planning.plan import read_plan
from tests.bundle.conftest import REPO, SMOKE, config_files, copy_bundle, run_cli, run_workflow
from tests.monailabel_server import (
    NAME,
    MonaiLabelServer,
    agreement,
    infer_study,
    install_package,
    run_checked,
    wait_for_training,
)
from tests.monailabel_venv import monailabel_venv, venv_python
from tests.synthetic_mri import MRI_LABELS, write_mri_dataset

FOREGROUND = {k: v for k, v in MRI_LABELS.items() if k}
#: The journey's mean test DSC must reach this: set from measured runs (see the comment where it is asserted).
MEAN_DSC_FLOOR = 0.85


def _ok(result, what: str) -> None:
    assert result.returncode == 0, f"{what} failed:\n{(result.stdout + result.stderr)[-4000:]}"


def _check_geometry(written: Path, source: Path) -> np.ndarray:
    """The prediction is a label map of the dataset's classes on the input's voxel grid."""
    result, image = nib.load(str(written)), nib.load(str(source))
    assert result.shape == image.shape, f"{written}: {result.shape} != input {image.shape}"
    np.testing.assert_allclose(result.affine, image.affine, atol=1e-4)
    values = np.asarray(result.dataobj)
    assert np.array_equal(values, np.rint(values)) and set(np.unique(values)) <= set(MRI_LABELS), np.unique(values)
    return values


@pytest.mark.slow
def test_own_mri_dataset_from_training_to_monai_label(tmp_path: Path) -> None:
    dataset = write_mri_dataset(tmp_path / "my_mri", "sagittal")
    bundle = copy_bundle(tmp_path / NAME)
    work = tmp_path / "work"
    work.mkdir()

    # 1. train, with the small settings of configs/smoke.json and 25 epochs of its 4 iterations (26 s here): the only
    # overrides of the whole journey
    train = run_cli(
        ["-m", "monai.bundle", "run", "training", "--config_file", f"['{bundle}/configs/train.json','{SMOKE}']"]
        + ["--dataset_dir", str(dataset), "--max_epochs", "25", "--val_interval", "25"],
        cwd=work,
    )
    _ok(train, "training")
    plan = read_plan(bundle / "models")
    assert plan["class_names"] == MRI_LABELS and plan["modality"] == "MRI" and plan["slice_axis"] == 0
    assert plan["network"]["backbone"] == "resnet18" and plan["network"]["out_channels"] == 4
    assert plan["slice_size"] == [64, 64] and plan["batch_size"] == 8
    metadata = json.loads((bundle / "models" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == {str(k): v for k, v in MRI_LABELS.items()}
    source = (REPO / "bundle" / "configs" / "metadata.json").read_bytes()
    assert (bundle / "configs" / "metadata.json").read_bytes() == source, "training wrote into the bundle's configs"
    assert not (bundle / "data").exists() and not list(work.iterdir()), "no phantom, nothing in the working directory"

    # 2. evaluate with no argument at all: the plan gives the dataset (its test split, imagesTs/labelsTs), the
    # classes, the network and the slicing
    evaluate = run_cli(
        ["-m", "monai.bundle", "run", "evaluating", "--config_file"]
        + [f"['{bundle}/configs/train.json','{bundle}/configs/evaluate.json']"],
        cwd=work,
    )
    # not the paper's classes: a plain per-class table (paper_table "auto"), and the report beside the scores
    _ok(evaluate, "evaluation")
    assert "Table 1" not in evaluate.stdout and all(name in evaluate.stdout for name in FOREGROUND.values())
    assert (bundle / "eval" / "report.html").is_file()
    with open(bundle / "eval" / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["class"] for r in rows}) == sorted(FOREGROUND.values()) and len(rows) == 3 * 2
    summary = json.loads((bundle / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 2 and "test_mean_dice" in evaluate.stdout + evaluate.stderr
    # measured on this data and these settings: 0.983 (2026-12-07, AMD EPYC, 2 cores); a pipeline that slices or
    # normalises otherwise than the training did scores far below the floor
    assert summary["mean_dsc"] >= MEAN_DSC_FLOOR, summary["mean_dsc"]

    # 3. segment a folder
    folder = tmp_path / "to_segment"
    shutil.copytree(dataset / "imagesTs", folder)
    infer = run_cli(
        ["-m", "monai.bundle", "run", "inferring", "--config_file", f"{bundle}/configs/inference.json"]
        + ["--input_dir", str(folder)],
        cwd=work,
    )
    _ok(infer, "inference")
    local = {
        source.name: _check_geometry(
            bundle / "eval" / "inference" / source.name.replace(".nii.gz", "_seg.nii.gz"), source
        )
        for source in sorted(folder.iterdir())
    }
    assert len(local) == 2

    # 4. package and install into a MONAI Label app, as a user without the repository would
    dist = tmp_path / "dist"
    package = run_cli(
        ["-m", "l2gnet_monai", "package-bundle", "--bundle_dir", str(bundle), "--output_dir", str(dist)], work
    )
    _ok(package, "package-bundle")
    zip_path = Path(package.stdout.strip().splitlines()[0])
    venv = monailabel_venv()
    install_package(venv, tmp_path)
    python = str(venv_python(venv))
    apps = tmp_path / "apps"
    clean = tmp_path / "clean-cwd"
    run_checked(
        [python, "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle", "--output", str(apps)], clean
    )
    app = apps / "monaibundle"
    _ok(run_cli(["-m", "l2gnet_monai", "install-bundle", str(zip_path), str(app / "model")], work), "install-bundle")
    served_bundle = app / "model" / NAME
    assert (served_bundle / "models" / "plan.json").is_file()

    # MONAI Label's datastore: the training volumes, 4 with final labels, and one test volume to segment
    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for image in sorted((dataset / "imagesTr").iterdir())[:4]:
        shutil.copy2(image, studies / image.name)
        shutil.copy2(dataset / "labelsTr" / image.name, studies / "labels" / "final" / image.name)
    target = sorted(folder.iterdir())[0]
    shutil.copy2(target, studies / target.name)
    image_id = target.name.replace(".nii.gz", "")

    server = MonaiLabelServer(venv, app, studies, NAME, tmp_path)
    try:
        server.start()
        info = server.get("/info/")
        assert info["models"][NAME]["labels"] == {v.lower(): k for k, v in FOREGROUND.items()}
        result, _ = infer_study(server, image_id, tmp_path / "served.nii.gz")
        served = _check_geometry(tmp_path / "served.nii.gz", target)
        assert agreement(served, local[target.name]) >= 0.999, "the served prediction differs from the local one"

        model_pt = served_bundle / "models" / "model.pt"
        before = model_pt.read_bytes()
        body = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
        task = json.loads(server.request("POST", f"/train/{NAME}", body=body))
        finished = wait_for_training(server, task["id"])
        assert finished["status"] == "DONE", "training failed:\n" + "\n".join(finished.get("details", []))
        assert model_pt.read_bytes() != before, "MONAI Label's training did not update models/model.pt"
        assert read_plan(served_bundle / "models")["class_names"] == MRI_LABELS
        assert not (served_bundle / "data").exists(), "MONAI Label's training generated the phantom"
        time.sleep(1)
        infer_study(server, image_id, tmp_path / "served_after.nii.gz")
        _check_geometry(tmp_path / "served_after.nii.gz", target)
        assert "Checkpoint keys don't match" not in server.log() and "CheckpointMismatchError" not in server.log()
    except AssertionError as error:
        pytest.fail(f"{error}\n--- MONAI Label server log ({server.log_path}), last lines ---\n{server.log_tail()}")
    finally:
        server.stop()


@pytest.mark.slow
def test_coronal_dataset_is_sliced_across_its_coronal_axis(tmp_path: Path) -> None:
    dataset = write_mri_dataset(tmp_path / "coronal", "coronal", num_training=3, num_test=1, shape=(24, 24, 6))
    bundle = copy_bundle(tmp_path / NAME)
    workflow = run_workflow(config_files(bundle, "train"), "train", dataset_dir=str(dataset), holdout_fraction=0.34)
    parsed = workflow.parser.get_parsed_content
    resize = next(t for t in parsed("train#preprocessing").transforms if type(t).__name__ == "ResizeSlicesd")
    assert parsed("slice_axis") == 1 and tuple(resize.resizer.spatial_size) == (64, -1, 64)
    slices = parsed("train#slices")
    assert len(slices) == 2 * 6, "every 4 mm coronal slice of the 2 training volumes, once"
    assert tuple(slices[0]["image"].shape) == (1, 64, 64)
    assert read_plan(bundle / "models")["slice_axis"] == 1

    inference = run_workflow([str(bundle / "configs" / "inference.json")], "infer", input_dir=str(dataset / "imagesTs"))
    assert inference.parser.get_parsed_content("inferer").spatial_dim == 1
    source = next((dataset / "imagesTs").iterdir())
    _check_geometry(bundle / "eval" / "inference" / source.name.replace(".nii.gz", "_seg.nii.gz"), source)
