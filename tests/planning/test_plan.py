"""The training plan: the dataset described without side effects, the slicing axis, and weights that must fit."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata
from monai.transforms import LoadImage, Orientation

from l2gnet_monai.networks import CheckpointMismatchError, L2GNet
from l2gnet_monai.planning.dataset import describe_dataset
from l2gnet_monai.planning.geometry import lowest_resolution_axis, ras_spacing
from l2gnet_monai.planning.network import planned_network
from l2gnet_monai.planning.plan import PlanState, build_plan, metadata_with_plan, read_plan, save_plan
from l2gnet_monai.transforms.slice_resize import ResizeSlicesd, volume_size
from tests.bundle.conftest import REPO, SHARED
from tests.synthetic_mri import ACQUISITIONS, MRI_LABELS, make_case, write_mri_dataset

SMALL = {"backbone": "resnet18", "codebook_size": 16, "codebook_dim": 32, "num_references": 2, "reference_grid": 2}


def _resize_of(preprocessing) -> ResizeSlicesd:
    return next(t for t in preprocessing.transforms if isinstance(t, ResizeSlicesd))


def test_resolving_network_def_from_train_json_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """Tools that inspect bundles build network_def with ConfigParser: that must not generate the phantom."""
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "bundle" / "configs", bundle / "configs")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    network = parser.get_parsed_content("network_def")
    assert network.out_channels == 9 and parser.get_parsed_content("slice_axis") == 2
    assert _resize_of(parser.get_parsed_content("train#preprocessing")).resizer.spatial_size == [224, 224, -1]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_ras_spacing_agrees_with_monai_orientation(acquisition: str, tmp_path: Path) -> None:
    image, _, affine = make_case(0, acquisition, shape=(6, 5, 4))
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    oriented = Orientation("RAS")(LoadImage(image_only=True, ensure_channel_first=True)(str(path)))
    np.testing.assert_allclose(ras_spacing(affine), oriented.pixdim.numpy(), rtol=1e-6)
    assert lowest_resolution_axis(ras_spacing(affine)) == ACQUISITIONS[acquisition][1]


def test_lowest_resolution_axis_keeps_axial_on_ties() -> None:
    assert lowest_resolution_axis([1.0, 1.0, 1.0]) == 2
    assert lowest_resolution_axis([3.0, 3.0, 1.0]) == 0
    assert lowest_resolution_axis([0.7, 0.7, 3.0]) == 2  # Synapse CT stays axial
    assert volume_size([64, 48], 0) == [-1, 64, 48] and volume_size([64, 48], 1) == [64, -1, 48]


def test_describe_dataset_reads_headers_and_warns_about_a_volume_sliced_otherwise(tmp_path: Path, caplog) -> None:
    dataset = write_mri_dataset(tmp_path / "mri", "coronal", num_training=3, num_test=1, shape=(8, 8, 4))
    odd, _, affine = make_case(9, "axial", shape=(8, 8, 4))
    nib.save(nib.Nifti1Image(odd, affine), str(dataset / "imagesTr" / "mri_000.nii.gz"))  # one axial stack
    with caplog.at_level(logging.WARNING, logger="l2gnet_monai.planning.dataset"):
        info = describe_dataset(dataset)
    assert info["slice_axis"] == 1 and info["modality"] == "MRI" and info["class_names"] == MRI_LABELS
    np.testing.assert_allclose(info["median_spacing"], [1.5, 4.0, 1.5])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mri_000.nii.gz" in warnings[0] and "axial" in warnings[0], warnings

    phantom = describe_dataset(None, {"spacing": [6.0, 6.0, 12.0]}, tmp_path / "b" / "data" / "p", None, tmp_path / "b")
    assert phantom["slice_axis"] == 2 and phantom["modality"] == "CT" and len(phantom["class_names"]) == 9
    assert phantom["dataset"]["phantom"]["dir"] == os.path.join("data", "p"), "recorded relative to the bundle"
    assert not (tmp_path / "b").exists(), "describing the phantom generates nothing"


def test_plan_round_trip_builds_the_trained_network_and_describes_it_in_metadata(tmp_path: Path) -> None:
    trained = L2GNet(out_channels=4, **SMALL)
    plan = build_plan(MRI_LABELS, "MRI", [-125, 275], [64, 64], 0, trained, {"median_spacing": [4, 1.5, 1.5]})
    source = REPO / "bundle" / "configs" / "metadata.json"
    before = source.read_bytes()
    path = save_plan(plan, tmp_path / "models", source)
    assert Path(path) == tmp_path / "models" / "plan.json" and not list((tmp_path / "models").glob(".*"))
    assert source.read_bytes() == before, "the bundle's configs/metadata.json is never written"

    loaded = read_plan(tmp_path / "models")
    assert loaded["class_names"] == MRI_LABELS and loaded["slice_axis"] == 0
    rebuilt = planned_network(loaded, out_channels=4, backbone="resnet50")  # the config's own arguments are unused
    rebuilt.load_state_dict(trained.state_dict())  # fits exactly
    for (name, a), b in zip(trained.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), name

    written = json.loads((tmp_path / "models" / "metadata.json").read_text())
    pred = written["network_data_format"]["outputs"]["pred"]
    assert pred["channel_def"] == {str(k): v for k, v in MRI_LABELS.items()} and pred["num_channels"] == 4
    assert written["network_data_format"]["inputs"]["image"]["modality"] == "MR"
    assert written["eval_metrics"] == {}, "the phantom's scores do not describe this model"
    assert {k: v for k, v in written.items() if k != "eval_metrics"} == {
        k: v for k, v in metadata_with_plan(written, plan).items() if k != "eval_metrics"
    }
    schema = SHARED / "monai_bundle_meta_schema.json"
    if schema.is_file():
        draft = json.loads(schema.read_text())
        draft["required"] = [k for k in draft["required"] if k != "optional_packages_version"]
        (tmp_path / "schema.json").write_text(json.dumps(draft))
        verify_metadata(meta_file=str(tmp_path / "models" / "metadata.json"), filepath=str(tmp_path / "schema.json"))

    assert read_plan(tmp_path / "nothing-here") == {}
    (tmp_path / "bad.json").write_text('{"plan_version": 99}')
    with pytest.raises(ValueError, match="not a plan of version 2"):
        read_plan(tmp_path / "bad.json")


def test_a_checkpoint_that_does_not_fit_is_refused_even_when_not_strict() -> None:
    """MONAI Label loads with strict=False: the resnet18 layers that a resnet34 shares would load, the rest stay
    random. The network refuses, naming what the checkpoint holds and where the fix is."""
    trained = L2GNet(out_channels=4, **SMALL)
    other = L2GNet(out_channels=4, **{**SMALL, "backbone": "resnet34"})
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as error:
        other.load_state_dict(trained.state_dict(), strict=False)
    message = str(error.value)
    assert "backbone resnet34" in message and "it holds backbone resnet18" in message
    assert "missing" in message and "carries its plan" in message and "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items()), "nothing may be loaded"

    classes = L2GNet(out_channels=9, **SMALL)
    with pytest.raises(CheckpointMismatchError, match="9 classes.*it holds.*4 classes"):
        classes.load_state_dict(trained.state_dict(), strict=False)


def test_the_bundle_inference_config_reads_the_plan_inside_the_checkpoint(tmp_path: Path) -> None:
    trained = L2GNet(out_channels=4, **SMALL)
    models = tmp_path / "models"
    models.mkdir()
    plan = build_plan(MRI_LABELS, "MRI", [-125, 275], [48, 48], 1, trained)
    torch.save({"model": trained.state_dict(), "plan": PlanState(plan).state_dict()}, models / "model.pt")
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundle" / "configs" / "inference.json"))
    parser["bundle_root"] = str(tmp_path)
    assert parser.get_parsed_content("num_classes") == 4 and parser.get_parsed_content("modality") == "MRI"
    assert _resize_of(parser.get_parsed_content("preprocessing")).resizer.spatial_size == [48, -1, 48]
    assert parser.get_parsed_content("inferer").spatial_dim == 1
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(models / "model.pt", weights_only=True)["model"])
    assert os.listdir(tmp_path) == ["models"] and os.listdir(models) == ["model.pt"]
