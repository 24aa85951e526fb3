"""The packaged bundle served and trained by a real MONAI Label 0.8.5 server (``monaibundle`` sample app), offline."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundle import conftest as bundle_conftest
from tests.bundle.conftest import SMOKE, copy_bundle
from tests.monailabel_server import (
    NAME,
    RELOAD_LINE,
    MonaiLabelServer,
    agreement,
    infer_study,
    install_package,
    make_studies,
    package_app,
    reference_prediction,
    wait_for_training,
)
from tests.monailabel_venv import monailabel_venv

#: The session fixture of tests/bundle: a bundle copy trained for one smoke epoch (shared by the session).
trained_bundle = bundle_conftest.trained_bundle

# ------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------


def test_train_json_copes_with_monailabel_overrides(trained_bundle: Path, tmp_path: Path) -> None:
    """``train.json`` with exactly what MONAI Label's ``BundleTrainTask`` overrides, run here (no server, no venv):
    ``bundle_root``, ``device`` as a plain string, ``train#trainer#max_epochs``, the datalists, and
    ``train#handlers`` with its ``CheckpointLoader`` in front of ours (raw config dicts). With the default
    ``val_interval`` (10), a one-epoch run must still validate, so that ``models/model.pt`` is updated."""
    from monai.bundle import ConfigWorkflow

    bundle = copy_bundle(tmp_path / NAME)
    model_pt = bundle / "models" / "model.pt"
    shutil.copy2(trained_bundle / "models" / "model.pt", model_pt)
    before = hashlib.sha256(model_pt.read_bytes()).hexdigest()
    settings = json.loads(SMOKE.read_text())
    settings.pop("val_interval")  # keep train.json's own
    small = tmp_path / "small.json"
    small.write_text(json.dumps(settings))
    ids = make_studies(tmp_path / "studies", num_cases=4, labelled=4)
    items = [
        {
            "image": str(tmp_path / "studies" / f"{i}.nii.gz"),
            "label": str(tmp_path / "studies/labels/final" / f"{i}.nii.gz"),
        }
        for i in ids
    ]
    handlers = json.loads((bundle / "configs" / "train.json").read_text())["train"]["handlers"]
    loader = {"_target_": "CheckpointLoader", "load_path": str(model_pt), "load_dict": {"model": "$@network"}}
    overrides = {
        "bundle_root": str(bundle),
        "train#trainer#max_epochs": 1,
        "train#dataset#data": items[:2],
        "device": "cpu",
        "train#handlers": [{**loader, "strict": False}, *handlers],
        "validate#dataset#data": items[2:],
    }
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(small)],
        meta_file=str(bundle / "configs" / "metadata.json"),
        workflow_type="train",
        **overrides,
    )
    workflow.initialize()
    parsed = workflow.parser.get_parsed_content
    assert parsed("val_interval") == 1 and parsed("amp") is False and parsed("device") == "cpu"
    epoch_length = parsed("train#trainer").state.epoch_length
    assert epoch_length == parsed("iterations_per_epoch") and parsed("lr_scheduler").total_iters == epoch_length
    assert type(parsed("train#handlers")[0]).__name__ == "CheckpointLoader"
    workflow.run()
    workflow.finalize()
    trainer = parsed("train#trainer")
    assert trainer.state.epoch == 1
    assert hashlib.sha256(model_pt.read_bytes()).hexdigest() != before, "models/model.pt was not updated"
    assert torch.load(model_pt, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_monailabel_serves_trains_and_reloads_the_packaged_bundle(trained_bundle: Path, tmp_path: Path) -> None:
    """From the zip to a served, trainable model in MONAI Label 0.8.5's ``monaibundle`` app."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    venv = monailabel_venv()
    timings["venv_s"] = time.monotonic() - started
    started = time.monotonic()
    install_package(venv, tmp_path)
    timings["install_l2gnet_monai_s"] = time.monotonic() - started

    # the zip (smoke settings baked in, tiny trained weights), a fresh app, monai.bundle download into it
    app, bundle = package_app(venv, trained_bundle, [SMOKE], tmp_path)
    model_pt = bundle / "models" / "model.pt"
    old_weights = tmp_path / "model_before.pt"
    shutil.copy2(model_pt, old_weights)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())

    ids = make_studies(tmp_path / "studies")
    image_id = ids[-1]  # the unlabelled one
    image_path = tmp_path / "studies" / f"{image_id}.nii.gz"
    source = nib.load(str(image_path))
    reference_before = reference_prediction(bundle, old_weights, image_path)

    server = MonaiLabelServer(venv, app, tmp_path / "studies", NAME, tmp_path)
    try:
        timings["server_start_s"] = server.start()
        info = server.get("/info/")
        assert NAME in info["models"], f"/info/ models: {list(info['models'])}"
        assert NAME in info["trainers"], f"/info/ trainers: {list(info['trainers'])}"
        channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        expected_labels = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
        assert info["models"][NAME]["labels"] == expected_labels
        assert info["models"][NAME]["version"] == metadata["version"]

        def check_geometry(result: nib.Nifti1Image) -> np.ndarray:
            values = np.asarray(result.dataobj)
            assert result.shape == source.shape, f"prediction {result.shape} != input {source.shape}"
            np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
            assert np.array_equal(values, np.rint(values)), "not a label map"
            assert values.min() >= 0 and values.max() <= len(channel_def) - 1, np.unique(values)
            return values

        result, timings["infer_first_s"] = infer_study(server, image_id, tmp_path / "pred_before.nii.gz")
        served_before = check_geometry(result)
        assert agreement(served_before, reference_before) >= 0.995, "served prediction != the bundle's own"
        _, timings["infer_second_s"] = infer_study(server, image_id, tmp_path / "pred_before2.nii.gz")

        stat_before = model_pt.stat()
        started = time.monotonic()
        body = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
        task = json.loads(server.request("POST", f"/train/{NAME}", body=body))
        finished = wait_for_training(server, task["id"])
        timings["train_s"] = time.monotonic() - started
        assert finished["status"] == "DONE", "training failed:\n" + "\n".join(finished.get("details", []))
        assert model_pt.stat().st_mtime_ns != stat_before.st_mtime_ns, "models/model.pt was not rewritten"
        assert model_pt.read_bytes() != old_weights.read_bytes(), "models/model.pt did not change"
        new_sha = hashlib.sha256(model_pt.read_bytes()).hexdigest()
        assert server.get(f"/model/info/{NAME}")["checksum"] == f"SHA256:{new_sha}"

        reference_after = reference_prediction(bundle, model_pt, image_path)
        assert not RELOAD_LINE.findall(server.log())
        result, timings["infer_after_train_s"] = infer_study(server, image_id, tmp_path / "pred_after.nii.gz")
        served_after = check_geometry(result)
        # the server noticed the new file and loaded it: its log names the old and the new mtime of model.pt
        reloads = RELOAD_LINE.findall(server.log())
        assert reloads == [(repr(stat_before.st_mtime), repr(model_pt.stat().st_mtime))], reloads
        assert agreement(served_after, reference_after) >= 0.995, "the served prediction is not the new weights'"
        if agreement(reference_before, reference_after) < 0.99:  # the new weights predict differently: visible
            assert agreement(served_after, served_before) < 0.995
        assert "Checkpoint keys don't match" not in server.log()
        print(
            f"voxels changed by training: {int((served_after != served_before).sum())}; "
            f"reference agreement old/new weights: {agreement(reference_before, reference_after):.4f}"
        )
    except AssertionError as error:
        pytest.fail(f"{error}\n--- MONAI Label server log ({server.log_path}), last lines ---\n{server.log_tail()}")
    finally:
        started = time.monotonic()
        server.stop()
        timings["server_stop_s"] = time.monotonic() - started
        print("MONAI Label timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
