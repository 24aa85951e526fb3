"""One preprocessing for every workflow: training, validation, evaluation and inference (and so MONAI Label) build
the same image chain from the same plan, and give the same network input for the same file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from l2gnet_monai.networks import L2GNet
from l2gnet_monai.planning.plan import PlanState, build_plan
from l2gnet_monai.transforms import volume_preprocessing
from tests.bundle.conftest import REPO
from tests.synthetic_mri import MRI_LABELS

CONFIGS = REPO / "bundle" / "configs"
SMALL = {"backbone": "resnet18", "codebook_size": 8, "codebook_dim": 16, "num_references": 1, "reference_grid": 2}


def _chain(preprocessing) -> list[tuple[str, dict]]:
    """What each step does to the image: its class and the settings that change the image."""
    steps = []
    for t in preprocessing.transforms:
        settings = {}
        image = list(t.keys).index("image")
        for name in ("axcodes", "modality", "window", "spatial_size", "dtype", "mode"):
            for holder in (t, getattr(t, "ornt_transform", None), getattr(t, "resizer", None)):
                if holder is not None and hasattr(holder, name):
                    value = getattr(holder, name)
                    per_key = isinstance(value, tuple) and len(value) == len(t.keys) and holder is t
                    settings[name] = repr(value[image] if per_key else value)
        reader = getattr(getattr(t, "_loader", None), "readers", None)
        if reader:
            settings["reader"] = type(reader[-1]).__name__
        steps.append((type(t).__name__, settings))
    return steps


def _parsers(bundle_root: Path, slice_size: list[int]) -> dict[str, ConfigParser]:
    """The four workflows' parsers, configured for a 4-class MRI dataset sliced coronally (weights with their plan)."""
    network = L2GNet(out_channels=4, **SMALL)
    plan = build_plan(MRI_LABELS, "MRI", [-100, 300], slice_size, 1, network)
    (bundle_root / "models").mkdir(parents=True)
    torch.save(
        {"model": network.state_dict(), "plan": PlanState(plan).state_dict()}, bundle_root / "models" / "model.pt"
    )
    settings = {"modality": "MRI", "ct_window": [-100, 300], "slice_size": slice_size, "slice_axis": 1}
    parsers = {}
    for name, files in {
        "train": ["train.json"],
        "evaluate": ["train.json", "evaluate.json"],
        "inference": ["inference.json"],
    }.items():
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / f) for f in files])
        parser["bundle_root"] = str(bundle_root)
        if name == "train":  # what training reads from its dataset, given here as overrides
            parser.update(settings)
        parsers[name] = parser
    return parsers


def test_every_workflow_builds_the_same_image_chain_from_the_plan(tmp_path: Path) -> None:
    parsers = _parsers(tmp_path, [48, 40])
    chains = {
        "training": parsers["train"].get_parsed_content("train#preprocessing"),
        "validation": parsers["train"].get_parsed_content("validate#preprocessing"),
        "evaluation": parsers["evaluate"].get_parsed_content("validate#preprocessing"),
        "inference (and MONAI Label)": parsers["inference"].get_parsed_content("preprocessing"),
    }
    # inference and evaluation check each volume's voxels right after loading it (streamed folders); training has
    # checked every file up front; the check changes nothing, the chains are otherwise the same
    for workflow in ("evaluation", "inference (and MONAI Label)"):
        assert type(chains[workflow].transforms[1]).__name__ == "CheckVoxelsd", workflow
    for workflow in ("training", "validation"):
        assert "CheckVoxelsd" not in [type(t).__name__ for t in chains[workflow].transforms], workflow
    chains = {k: Compose([t for t in c.transforms if type(t).__name__ != "CheckVoxelsd"]) for k, c in chains.items()}
    reference = _chain(chains["inference (and MONAI Label)"])
    assert [name for name, _ in reference] == [
        "LoadImaged",
        "EnsureChannelFirstd",
        "Orientationd",
        "IntensityNormalizationd",
        "ResizeSlicesd",
        "EnsureTyped",
    ]
    assert reference[4][1]["spatial_size"] == repr([48, -1, 40]) and reference[3][1]["modality"] == "'MRI'"
    for workflow, chain in chains.items():
        assert _chain(chain) == reference, f"{workflow} preprocesses images differently from inference"


def _volume(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    affine = np.diag([-1.5, 2.0, 3.0, 1.0])  # LPS, anisotropic: the reorientation and resize both do work
    image = rng.normal(100.0, 30.0, (20, 18, 10)).astype(np.float32)
    label = np.zeros((20, 18, 10), np.uint8)
    label[4:12, 3:9, 2:7] = 2
    paths = {"image": str(folder / "image.nii.gz"), "label": str(folder / "label.nii.gz")}
    nib.save(nib.Nifti1Image(image, affine), paths["image"])
    nib.save(nib.Nifti1Image(label, affine), paths["label"])
    return paths


def test_every_workflow_gives_the_network_the_same_input(tmp_path: Path) -> None:
    parsers = _parsers(tmp_path, [32, 24])
    item = _volume(tmp_path)
    train = parsers["train"].get_parsed_content("train#preprocessing")(dict(item))
    evaluate = parsers["evaluate"].get_parsed_content("validate#preprocessing")(dict(item))
    infer = parsers["inference"].get_parsed_content("preprocessing")({"image": item["image"]})
    assert infer["image"].shape == (1, 32, 18, 24)  # RAS (x, y, z): x and z resized, the coronal axis kept
    for other in (train, evaluate):
        assert torch.equal(other["image"].as_tensor(), infer["image"].as_tensor())
        torch.testing.assert_close(other["image"].affine, infer["image"].affine)
    # training resamples its label with the image; evaluation keeps it in the file's grid to score against
    assert train["label"].dtype == torch.uint8 and train["label"].shape == (1, 32, 18, 24)
    assert set(torch.unique(train["label"]).tolist()) == {0, 2}
    assert evaluate["label"].shape == (1, 20, 18, 10)
    np.testing.assert_array_equal(evaluate["label"][0].numpy(), nib.load(item["label"]).get_fdata())


def test_a_bad_label_grid_is_named() -> None:
    with pytest.raises(ValueError, match="label_grid must be one of"):
        volume_preprocessing("CT", [-125, 275], [64, 64], 2, label_key="label", label_grid="resampled")
