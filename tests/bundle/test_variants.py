"""The paper's ablations and baselines as variants of the bundle: each a small override of ``network_def`` that
trains a few smoke iterations, records its network in the plan and reports its codebook (or none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bundle.conftest import config_files, copy_bundle, run_workflow

#: Each variant as the override file a study would merge after train.json and the settings (smoke.json, cpu.json).
VARIANTS = {
    "no_quantizer": {"network_def#codebook_size": 0},
    "vqunet": {"network_def#num_references": 0},
    "transunet": {
        "network_def#bottleneck": "attention",
        "network_def#codebook_size": 0,
        "network_def#attention_layers": 2,
        "network_def#attention_heads": 8,
    },
    "codebook_remedies": {"network_def#codebook_init": "kmeans", "network_def#code_assignment": "sinkhorn"},
    # a whole network_def replaces train.json's (and the L2GNet keys the settings set): merge this file last
    "flexible_unet": {
        "network_def": {
            "_target_": "l2gnet_monai.planning.planned_network",
            "plan": "@trained_plan",
            "network": "monai.networks.nets.FlexibleUNet",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": "@num_classes",
            "backbone": "resnet18",
            "pretrained": False,
            "is_pad": True,
        }
    },
}


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("variants") / "phantom_smoke"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_trains_a_few_smoke_iterations_and_its_plan_rebuilds_it(name: str, tmp_path, phantom_dir) -> None:
    bundle = copy_bundle(tmp_path / "l2gnet_segmentation")
    variant = tmp_path / f"{name}.json"
    variant.write_text(json.dumps({**VARIANTS[name], "iterations_per_epoch": 2}))
    workflow = run_workflow([*config_files(bundle, "train"), str(variant)], "train", phantom_dir=str(phantom_dir))
    plan = json.loads((bundle / "models" / "plan.json").read_text())["network"]
    if name == "flexible_unet":
        assert plan["_target_"] == "monai.networks.nets.FlexibleUNet" and "codebook_size" not in plan
        assert plan["pretrained"] is False and plan["is_pad"] is True
        return
    for key, value in VARIANTS[name].items():
        assert plan[key.split("#")[-1]] == value
    network = workflow.parser.get_parsed_content("network")
    metrics = workflow.parser.get_parsed_content("train#trainer").state.metrics
    assert ("codebook_perplexity" in metrics) == (network.quantizer is not None)
    if name in ("no_quantizer", "vqunet"):  # the evaluation's summary.json: codebook health, or none without codes
        run_workflow(config_files(bundle, "train", "evaluate"), "train", phantom_dir=str(phantom_dir))
        summary = json.loads((bundle / "eval" / "summary.json").read_text())
        assert ("codebook" in summary) == (name == "vqunet")
        if name == "vqunet":
            assert summary["codebook"]["codebook_size"] == 64 and summary["codebook"]["codes_used"] >= 1
