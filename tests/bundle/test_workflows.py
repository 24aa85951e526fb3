"""The bundle's workflows through MONAI's own entry points, with the smoke override (one small epoch)."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from l2gnet_monai.data.phantom import PHANTOM_LABELS, generate_phantom_case
from l2gnet_monai.networks import L2GNet
from tests.bundle.conftest import REPO, SHARED, SMOKE, bundle_workflow, config_files, copy_bundle, run_cli, run_workflow
from tests.bundle.test_datasets_and_bad_input import _error_text

BUNDLE = REPO / "bundle"


def test_metadata_verifies_against_the_schema(tmp_path) -> None:
    schema = SHARED / "monai_bundle_meta_schema.json"
    if not schema.is_file():
        pytest.skip(f"{schema} is not beside the repository")
    # The stand-in draft still lists the key that MONAI 1.6 deprecated (it warns and renames
    # optional_packages_version to required_packages_version on every run): validate without that requirement.
    draft = json.loads(schema.read_text())
    draft["required"] = [key for key in draft["required"] if key != "optional_packages_version"]
    current = tmp_path / "schema.json"
    current.write_text(json.dumps(draft))
    verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(current))


def test_configs_agree_with_metadata_and_each_other() -> None:
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert {int(k): v for k, v in channel_def.items()} == PHANTOM_LABELS
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    training_only = ("pretrained_encoder", "network", "plan")
    assert {k: v for k, v in train["network_def"].items() if k not in training_only} == {
        k: v for k, v in inference["network_def"].items() if k != "plan"
    }
    # without a plan (weights from elsewhere), inference builds the bundle's default network for the paper's classes
    parser = ConfigParser(inference)
    parser["bundle_root"] = str(REPO / "no-such-bundle")
    assert parser.get_parsed_content("plan") == {}
    assert parser.get_parsed_content("num_classes") == len(channel_def)
    assert parser.get_parsed_content("network_def").init_args == {
        **L2GNet().init_args,
        **{
            k: train["backbone"] if v == "@backbone" else v
            for k, v in train["network_def"].items()
            if not k.startswith("_") and k not in ("pretrained_encoder", "plan", "network")
        },
        "out_channels": len(channel_def),
    }
    assert "optional_packages_version" not in meta  # deprecated: MONAI warns and maps it onto the other
    for key in ("training", "run", "initialize", "network_def", "network", "loss", "optimizer", "train", "validate"):
        assert key in train


def test_verify_net_in_out_with_the_inference_config() -> None:
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        config_file=str(BUNDLE / "configs" / "inference.json"),
        device="cpu",
    )


def test_training_writes_the_best_model_checkpoints_and_logs(trained_bundle: Path) -> None:
    models = trained_bundle / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_final.pt").is_file()
    best = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(best) == {"model", "plan"}  # the weights (MONAI Label reads the "model" key) with their plan
    assert "mapper.references" in best["model"] and "quantizer.embedding.weight" in best["model"]
    final = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer", "rng", "plan"} <= set(final)
    assert final["trainer"]["iteration"] == final["trainer"]["epoch_length"]  # one epoch
    latest = torch.load(models / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert set(latest) == set(final) and latest["trainer"]["iteration"] == final["trainer"]["iteration"]
    assert list((trained_bundle / "eval").glob("events.out.tfevents.*")), "TensorBoard logs"
    assert not list(models.glob("*.tmp")) and not [p for p in models.iterdir() if p.name.startswith("tmp")]


def test_evaluation_writes_per_case_scores_and_prints_the_table(trained_bundle: Path, capsys) -> None:
    run_workflow(config_files(trained_bundle, "train", "evaluate"), "train")
    out = capsys.readouterr().out
    assert "Table 1 (Synapse" in out and "\nL2GNet (resnet18) " in out and "82.23" in out
    with open(trained_bundle / "eval" / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} == set(PHANTOM_LABELS.values()) - {"background"}
    assert len(rows) == 8 * 2  # the smoke phantom's 2 validation cases
    summary = json.loads((trained_bundle / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 2 and summary["hd95_unit"] == "mm"
    assert 0.0 <= summary["mean_dsc"] <= 1.0
    # how it ran: float32 by default (the scores must not depend on the machine), and which weights and plan
    run = summary["run"]
    assert run["precision"] == "float32" and run["precision_setting"] == "fp32" and run["torch"] == torch.__version__
    assert run["checkpoint_sha256"] == hashlib.sha256((trained_bundle / "models" / "model.pt").read_bytes()).hexdigest()
    assert run["plan"] == json.loads((trained_bundle / "models" / "plan.json").read_text())
    assert run["checkpoint_sha256"] in (trained_bundle / "eval" / "report.html").read_text()


def test_inference_writes_label_maps_in_the_input_geometry(trained_bundle: Path) -> None:
    workflow = run_workflow(config_files(trained_bundle, "inference"), "infer")
    inputs = [item["image"] for item in workflow.parser.get_parsed_content("datalist")]
    assert inputs
    for image_path in inputs:
        name = Path(image_path).name.replace(".nii.gz", "_seg.nii.gz")
        written = nib.load(trained_bundle / "eval" / "inference" / name)
        source = nib.load(image_path)
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        data = np.asanyarray(written.dataobj)
        assert data.dtype == np.uint8 and data.max() <= 8


def test_weights_without_their_plan_are_refused_in_one_message(trained_bundle: Path, tmp_path) -> None:
    """The smoke-trained weights (ResNet18) as a plain state dict, without their plan, meet inference.json's default
    network (ResNet50): one message says what the checkpoint holds and where the fix is; nothing is segmented."""
    bundle = copy_bundle(tmp_path / "bundle")
    weights = torch.load(trained_bundle / "models" / "model.pt", weights_only=True)["model"]
    torch.save(weights, bundle / "models" / "model.pt")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image, _, affine = generate_phantom_case(0, shape=(64, 64, 12), spacing=(6.0, 6.0, 12.0), seed=1)
    nib.save(nib.Nifti1Image(image, affine), str(inputs / "case.nii.gz"))
    args = ["-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json")]
    result = run_cli([*args, "--input_dir", str(inputs)], cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "CheckpointMismatchError:" in line]
    assert errors, result.stderr[-3000:]
    assert "backbone resnet50, 9 classes" in errors[0] and "it holds backbone resnet18" in errors[0], errors[0]
    assert "carries its plan" in errors[0]
    assert not (bundle / "eval" / "inference").exists() or not any((bundle / "eval" / "inference").iterdir())


def test_ckpt_export_gives_a_torchscript_model_with_the_eager_output(trained_bundle: Path, tmp_path) -> None:
    files = config_files(trained_bundle, "inference")
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(trained_bundle / "models" / "model.pt"),
        meta_file=str(trained_bundle / "configs" / "metadata.json"),
        config_file=files,
        bundle_root=str(trained_bundle),
        key_in_ckpt="model",  # the checkpoint holds the weights beside their plan
    )
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(trained_bundle)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(trained_bundle / "models" / "model.pt", weights_only=True)["model"])
    network.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x), atol=1e-5, rtol=1e-5)


def test_the_zoo_command_runs_from_another_directory(fresh_bundle: Path, tmp_path) -> None:
    files = ",".join(f"'{f}'" for f in config_files(fresh_bundle, "train"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(["-m", "monai.bundle", "run", "--config_file", f"[{files}]"], cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (fresh_bundle / "models" / "model.pt").is_file()
    assert not (elsewhere / "models").exists() and not (elsewhere / "eval").exists()


def test_run_training_with_bundle_root_from_the_repository_root(fresh_bundle: Path) -> None:
    root = fresh_bundle.parent
    smoke = fresh_bundle.parent / "smoke.json"
    smoke.write_text(SMOKE.read_text())
    args = ["-m", "monai.bundle", "run", "training", "--bundle_root", fresh_bundle.name]
    args += ["--config_file", f"['{fresh_bundle.name}/configs/train.json','smoke.json']"]
    result = run_cli(args, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (fresh_bundle / "models" / "model.pt").is_file()


def test_resuming_with_more_epochs_continues_the_schedule_and_restores_the_state(
    trained_bundle: Path, tmp_path
) -> None:
    """``--resume_from checkpoint_final.pt --max_epochs 3`` after a 1-epoch run: the extra epochs train at the
    poly schedule of 3 epochs from where the first one stopped (not at the finished schedule's learning rate 0),
    the weights move, and codebook, momentum buffers and random generators are those of the checkpoint."""
    bundle = copy_bundle(tmp_path / "l2gnet_segmentation")
    checkpoint = tmp_path / "resume.pt"
    shutil.copy2(trained_bundle / "models" / "checkpoint_final.pt", checkpoint)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    steps = saved["trainer"]["epoch_length"]
    assert saved["optimizer"]["param_groups"][0]["lr"] == 0.0, "the finished 1-epoch schedule ends at 0"
    workflow = bundle_workflow(
        config_files(bundle, "train"),
        "train",
        resume_from=str(checkpoint),
        max_epochs=3,
        phantom_dir=str(trained_bundle / "data" / "phantom_smoke"),
    )
    workflow.initialize()
    parsed = workflow.parser.get_parsed_content
    trainer, optimizer, network = parsed("train#trainer"), parsed("optimizer"), parsed("network")
    assert trainer.state.iteration == steps
    state = network.state_dict()
    codebook = {"quantizer.embedding.weight", "quantizer.ema_w", "quantizer.ema_cluster_size", "quantizer.initialized"}
    assert codebook <= set(saved["model"]) and bool(saved["model"]["quantizer.initialized"])
    for key, value in saved["model"].items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    restored = optimizer.state_dict()["state"]
    assert restored and len(restored) == len(saved["optimizer"]["state"])
    for index, value in saved["optimizer"]["state"].items():
        torch.testing.assert_close(restored[index]["momentum_buffer"], value["momentum_buffer"], rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
    assert np.array_equal(np.random.get_state()[1], saved["rng"]["numpy"]["keys"].numpy())
    assert random.getstate()[1] == tuple(saved["rng"]["python"]["state"].tolist())

    learning_rates = []
    record = lambda engine: learning_rates.append(optimizer.param_groups[0]["lr"])  # noqa: E731
    trainer.add_event_handler(Events.ITERATION_STARTED, record)
    before = {key: value.clone() for key, value in state.items()}
    workflow.run()
    workflow.finalize()
    total = 3 * steps
    assert learning_rates == pytest.approx([0.01 * (1 - it / total) ** 0.9 for it in range(steps, total)])
    assert min(learning_rates) > 0
    after = network.state_dict()
    for key in ("encoder.conv1.weight", "mapper.references", "quantizer.embedding.weight"):
        assert not torch.equal(before[key], after[key]), f"{key} did not change in the extra epochs"
    assert trainer.state.epoch == 3 and trainer.state.iteration == total
    final = torch.load(bundle / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == total and final["lr_scheduler"]["total_iters"] == total
    assert final["optimizer"]["param_groups"][0]["lr"] == 0.0  # the new schedule ends at 0 at the new end


def test_resume_from_latest_without_a_checkpoint_names_the_file(fresh_bundle: Path) -> None:
    files = config_files(fresh_bundle, "train")
    workflow = bundle_workflow(files, "train", resume_from="latest")
    with pytest.raises(Exception) as info:
        workflow.initialize()
    text = _error_text(info.value)
    assert f"resume_from: 'latest' means '{fresh_bundle / 'models' / 'checkpoint_latest.pt'}'" in text, text
