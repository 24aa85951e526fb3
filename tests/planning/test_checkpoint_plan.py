"""Weights and plan are one artifact: the plan inside checkpoints, its readable copy checked against it, the copy
written only for this run's weights, a resume refused under another plan, any network's definition recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import FlexibleUNet

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.networks import L2GNet
from l2gnet_monai.planning.checkpoint import PlanCopy, checkpoint_plan, record_scores, trained_plan
from l2gnet_monai.planning.network import network_definition, planned_network
from l2gnet_monai.planning.plan import PlanState, build_plan, read_plan, save_plan
from tests.bundle.conftest import REPO
from tests.synthetic_mri import MRI_LABELS

SMALL = {"backbone": "resnet18", "codebook_size": 8, "codebook_dim": 16, "num_references": 1, "reference_grid": 2}
METADATA = REPO / "bundle" / "configs" / "metadata.json"


def _plan(slice_axis: int = 0, modality: str = "MRI", network: torch.nn.Module | None = None) -> dict:
    network = network if network is not None else L2GNet(out_channels=4, **SMALL)
    return build_plan(MRI_LABELS, modality, [-125, 275], [48, 48], slice_axis, network)


def _save(path: Path, plan: dict | None, network: torch.nn.Module | None = None) -> None:
    network = network if network is not None else planned_network(plan)
    content = {"model": network.state_dict()} if plan is None else {"model": network.state_dict(), "plan": plan}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)


def test_the_checkpoint_carries_its_plan_and_a_disagreeing_copy_is_refused(tmp_path: Path) -> None:
    plan = _plan()
    model = tmp_path / "models" / "model.pt"
    _save(model, PlanState(plan).state_dict())
    assert checkpoint_plan(model)["class_names"] == MRI_LABELS and trained_plan(model)["slice_axis"] == 0
    save_plan(plan, tmp_path / "models", METADATA)
    assert trained_plan(model)["modality"] == "MRI", "an agreeing copy is fine"

    # the defect: a plan.json edited (or left by another training) beside weights trained otherwise
    edited = {**json.loads((tmp_path / "models" / "plan.json").read_text()), "modality": "CT", "slice_axis": 2}
    (tmp_path / "models" / "plan.json").write_text(json.dumps(edited))
    with pytest.raises(DatasetError) as error:
        trained_plan(model)
    message = str(error.value)
    assert str(tmp_path / "models" / "plan.json") in message and str(model) in message and "\n" not in message
    assert "modality" in message and "slice_axis" in message

    # weights without a plan beside a plan.json: not that training's weights
    _save(model, None, planned_network(plan))
    with pytest.raises(DatasetError, match="carries no plan, so it was not written by that training"):
        trained_plan(model)
    (tmp_path / "models" / "plan.json").unlink()
    assert trained_plan(model) == {}, "weights from elsewhere, no copy: the config's own settings apply"
    assert trained_plan(tmp_path / "models" / "missing.pt") == {} and trained_plan(None) == {}


def test_a_resume_under_another_plan_is_refused_naming_both() -> None:
    state = PlanState(_plan(slice_axis=0))
    state.load_state_dict(PlanState(_plan(slice_axis=0)).state_dict())  # the same plan resumes
    with pytest.raises(DatasetError) as error:
        state.load_state_dict(PlanState(_plan(slice_axis=2, modality="CT")).state_dict())
    message = str(error.value)
    assert "slice_axis" in message and "modality" in message and "CT" in message and "MRI" in message


def test_the_readable_copy_is_written_only_once_model_pt_holds_this_runs_weights(tmp_path: Path) -> None:
    old, new = _plan(slice_axis=0), _plan(slice_axis=2, modality="CT")
    models = tmp_path / "models"
    _save(models / "model.pt", PlanState(old).state_dict())
    save_plan(old, models, METADATA)
    copy = PlanCopy(new, models, METADATA)
    copy()  # a new training whose first best model is not saved yet: the old model's copies stay
    assert read_plan(models)["slice_axis"] == 0 and trained_plan(models / "model.pt")["slice_axis"] == 0
    _save(models / "model.pt", PlanState(new).state_dict())
    copy()
    assert read_plan(models)["slice_axis"] == 2 and trained_plan(models / "model.pt")["modality"] == "CT"
    metadata = json.loads((models / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["modality"] == "CT"


def test_scores_go_into_the_trained_models_metadata_with_its_checksum(tmp_path: Path) -> None:
    plan = _plan()
    models = tmp_path / "models"
    _save(models / "model.pt", PlanState(plan).state_dict())
    save_plan(plan, models, METADATA)
    recorded = record_scores(models / "model.pt", {"mean_dsc": 0.8123456789, "mean_hd95": 3.5, "other": 1}, "test")
    assert recorded["test_mean_dsc"] == pytest.approx(0.812346) and "other" not in str(recorded)
    assert len(recorded["checkpoint_sha256"]) == 64
    assert json.loads((models / "metadata.json").read_text())["eval_metrics"] == recorded
    save_plan(plan, models, METADATA)  # the same plan again keeps the scores
    assert json.loads((models / "metadata.json").read_text())["eval_metrics"] == recorded


def test_any_network_is_recorded_whole_and_a_plain_target_is_refused_with_the_fix() -> None:
    definition = {"_target_": "monai.networks.nets.FlexibleUNet", "in_channels": 1, "out_channels": 4,
                  "backbone": "resnet18", "spatial_dims": 2}  # fmt: skip
    network = planned_network(network=definition.pop("_target_"), **definition)
    plan = _plan(network=network)
    assert plan["network"] == {"_target_": "monai.networks.nets.FlexibleUNet", **definition}
    rebuilt = planned_network(plan, backbone="resnet50", codebook_size=512)  # the config's L2GNet arguments unused
    assert isinstance(rebuilt, FlexibleUNet)
    rebuilt.load_state_dict(network.state_dict())

    with pytest.raises(DatasetError, match='"network": "monai.networks.nets.flexible_unet.FlexibleUNet"'):
        network_definition(FlexibleUNet(1, 4, "resnet18", spatial_dims=2))
    assert network_definition(L2GNet(out_channels=4, **SMALL))["backbone"] == "resnet18"


def test_the_plan_is_read_once_per_file_until_the_file_is_replaced(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "models" / "model.pt"
    _save(model, PlanState(_plan(slice_axis=0)).state_dict())
    loads = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or original(*a, **k))
    first = checkpoint_plan(model)
    first["slice_axis"] = 7  # the caller's copy: the remembered plan is not changed
    assert checkpoint_plan(model)["slice_axis"] == 0 and len(loads) == 1
    _save(model, PlanState(_plan(slice_axis=1)).state_dict())  # a new training replaced the weights
    assert checkpoint_plan(model)["slice_axis"] == 1 and len(loads) == 2
