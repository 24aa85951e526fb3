"""The bundle's inference in reduced precision gives the float32 answer on a (smoke-)trained model."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from l2gnet_monai.inference import TunedSliceInferer
from tests.bundle.conftest import config_files, run_workflow


def test_bf16_inference_agrees_with_fp32_on_the_smoke_model(trained_bundle: Path, tmp_path: Path) -> None:
    label_maps, workflows = {}, {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        workflow = run_workflow(
            config_files(trained_bundle, "inference"), "infer", precision=precision, output_dir=str(out)
        )
        assert workflow.parser.get_parsed_content("inferer").precision == precision
        label_maps[precision] = {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))}
        workflows[precision] = workflow
    assert label_maps["fp32"] and label_maps["fp32"].keys() == label_maps["bf16"].keys()
    for name, fp32 in label_maps["fp32"].items():
        assert (fp32 == label_maps["bf16"][name]).mean() >= 0.999, name

    # one epoch of training may still predict mostly background: compare the ranking of the organ classes too
    parser = workflows["fp32"].parser
    network, slice_size = parser.get_parsed_content("network"), parser.get_parsed_content("slice_size")
    network.eval()
    agree, total, worst_probability = 0, 0, 0.0
    with torch.no_grad():
        for item in parser.get_parsed_content("dataset"):
            image = item["image"][None]
            logits = {
                p: TunedSliceInferer(roi_size=slice_size, sw_batch_size=8, precision=p)(image, network)
                for p in ("fp32", "bf16")
            }
            organs = {p: v[:, 1:].argmax(1) for p, v in logits.items()}
            agree += int((organs["fp32"] == organs["bf16"]).sum())
            total += organs["fp32"].numel()
            probabilities = {p: v.softmax(1) for p, v in logits.items()}
            change = float((probabilities["fp32"] - probabilities["bf16"]).abs().max())
            worst_probability = max(worst_probability, change)
            assert not torch.equal(logits["fp32"], logits["bf16"]), "bf16 autocast ran"
    print(f"organ-class argmax agreement {agree / total:.5%}, largest probability change {worst_probability:.4f}")
    assert agree / total >= 0.999 and worst_probability < 0.05
