"""The bundle's in-plane resize and fused inversion give a trained model's label maps as MONAI's Resized and
Activationsd -> Invertd -> AsDiscreted do."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from tests.bundle.conftest import bundle_workflow, config_files


class Standardised(torch.nn.Module):
    """The trained network with each class's logits standardised over the slices of a call: one smoke epoch still
    predicts background (or one class) nearly everywhere, and the comparison needs label maps with boundaries; this
    keeps the trained network's spatial responses and makes each class win where it is relatively most likely."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        mean = logits.mean(dim=(0, 2, 3), keepdim=True)
        return (logits - mean) / logits.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)


def test_inference_label_maps_equal_monai_resized_and_invertd(trained_bundle: Path, tmp_path: Path) -> None:
    config = json.loads((trained_bundle / "configs" / "inference.json").read_text())
    save = config["postprocessing"]["transforms"][-1]
    assert save["_target_"] == "SaveImaged"
    monai_chain = {
        # the bundle's preprocessing written out with MONAI's Resized, and the three MONAI transforms back
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {
                    "_target_": "Orientationd",
                    "keys": "image",
                    "axcodes": "RAS",
                    "labels": [["L", "R"], ["P", "A"], ["I", "S"]],
                },
                {
                    "_target_": "l2gnet_monai.transforms.IntensityNormalizationd",
                    "keys": "image",
                    "modality": "@modality",
                    "window": "@ct_window",
                },
                {
                    "_target_": "Resized",
                    "keys": "image",
                    "mode": "bilinear",
                    "spatial_size": "$l2gnet_monai.transforms.volume_size(@slice_size, @slice_axis)",
                },
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "postprocessing#transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            save,
        ],
    }
    label_maps = {}
    # the smoke volumes are 64 x 64 in plane, as the model's slices: infer at 48 x 48 so that the resize does work
    for name, override in (("bundle", {}), ("monai", monai_chain)):
        out = tmp_path / name
        workflow = bundle_workflow(
            config_files(trained_bundle, "inference"), "infer", output_dir=str(out), slice_size=[48, 48], **override
        )
        workflow.initialize()
        evaluator = workflow.parser.get_parsed_content("evaluator")
        evaluator.network = Standardised(evaluator.network)  # the checkpoint loads into the wrapped network
        workflow.run()
        workflow.finalize()
        steps = [type(t).__name__ for t in workflow.parser.get_parsed_content("postprocessing").transforms]
        assert ("InvertToLabelsd" in steps) == (name == "bundle"), steps
        label_maps[name] = {p.name: nib.load(p) for p in sorted(out.glob("*.nii.gz"))}
    assert label_maps["bundle"] and label_maps["bundle"].keys() == label_maps["monai"].keys()
    for file_name, ours in label_maps["bundle"].items():
        reference = label_maps["monai"][file_name]
        np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-5)
        ours, reference = np.asanyarray(ours.dataobj), np.asanyarray(reference.dataobj)
        assert ours.shape == reference.shape == (64, 64, 12)
        counts = np.bincount(reference.ravel())
        assert np.sort(counts)[-2] >= 0.01 * reference.size, "the comparison needs label boundaries"
        assert (ours == reference).mean() >= 0.999, file_name
