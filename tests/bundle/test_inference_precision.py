"""The bundle's inference in reduced precision gives the float32 answer on a (smoke-)trained model."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from l2gnet_monai.inference.compilation import compiler_available
from l2gnet_monai.inference.engine import TunedSliceInferer
from tests.bundle.conftest import config_files, run_workflow


def test_bf16_inference_agrees_with_fp32_on_the_smoke_model(trained_bundle: Path, tmp_path: Path) -> None:
    label_maps, workflows = {}, {}
    variants = {"fp32": ("fp32", False), "bf16": ("bf16", False)}
    if compiler_available(torch.device("cpu"))[0]:
        variants["bf16-compiled"] = ("bf16", True)  # what compile "auto" runs once a folder has paid for it
    for variant, (precision, compile) in variants.items():
        out = tmp_path / variant
        workflow = run_workflow(
            config_files(trained_bundle, "inference"),
            "infer",
            precision=precision,
            compile=compile,
            output_dir=str(out),
        )
        inferer = workflow.parser.get_parsed_content("inferer")
        assert inferer.precision == precision
        network = workflow.parser.get_parsed_content("network")
        assert (inferer.compiled(network) is not None) == compile
        label_maps[variant] = {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))}
        workflows[variant] = workflow
    assert label_maps["fp32"]
    for variant in variants:
        assert label_maps[variant].keys() == label_maps["fp32"].keys(), variant
        for name, fp32 in label_maps["fp32"].items():
            assert (fp32 == label_maps[variant][name]).mean() >= 0.999, (variant, name)

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
