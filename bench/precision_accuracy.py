# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What reduced precision changes in a trained bundle's results: mean Dice and the label maps, per precision.

Runs the bundle's evaluation (``train.json`` + ``evaluate.json`` + overrides) and inference (``inference.json``
+ overrides) once per precision on a trained ``--bundle_root``, through MONAI's ``ConfigWorkflow``, and
compares each reduced precision with float32: the paper-form mean DSC (in points, i.e. percent) and the share
of voxels whose label agrees.

    python bench/precision_accuracy.py --bundle_root /path/to/trained/bundle --overrides configs/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]


def run(files: List[str], workflow_type: str, **override) -> None:
    workflow = ConfigWorkflow(config_file=files, workflow_type=workflow_type, **override)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle_root", required=True, help="a trained bundle (models/model.pt, its data)")
    parser.add_argument("--overrides", nargs="*", default=[], help="override files used for training")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--output", default="", help="folder for the outputs (default: <bundle_root>/eval/precision)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    configs = REPO / "bundle" / "configs"
    overrides = [str(Path(p).resolve()) for p in args.overrides]
    output = Path(args.output or os.path.join(args.bundle_root, "eval", "precision"))
    results: Dict[str, Dict] = {}
    for precision in args.precisions:
        folder = output / precision
        evaluation = [str(configs / "train.json"), str(configs / "evaluate.json"), *overrides]
        run(
            evaluation,
            "train",
            bundle_root=args.bundle_root,
            output_dir=str(folder / "evaluation"),
            **{"validate#inferer#precision": precision},
        )
        summary = json.loads((folder / "evaluation" / "summary.json").read_text())
        inference = [str(configs / "inference.json"), *overrides]
        run(inference, "infer", bundle_root=args.bundle_root, output_dir=str(folder / "labels"), precision=precision)
        labels = {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted((folder / "labels").glob("*.nii.gz"))}
        results[precision] = {"mean_dsc": summary["mean_dsc"], "mean_hd95": summary["mean_hd95"], "labels": labels}
    reference = results[args.precisions[0]]
    report = {}
    for precision in args.precisions:
        entry = results[precision]
        agree = sum(int((entry["labels"][k] == v).sum()) for k, v in reference["labels"].items())
        total = sum(v.size for v in reference["labels"].values())
        report[precision] = {
            "mean_dsc": entry["mean_dsc"],
            "mean_hd95": entry["mean_hd95"],
            "dsc_change_points": 100 * (entry["mean_dsc"] - reference["mean_dsc"]),
            "voxel_agreement": agree / total,
            "voxels": total,
            "volumes": len(reference["labels"]),
        }
        change = report[precision]["dsc_change_points"]
        print(
            f"{precision}: mean DSC {100 * entry['mean_dsc']:.3f} ({change:+.3f} points), "
            f"HD95 {entry['mean_hd95']:.3f}, labels agree with {args.precisions[0]} on {100 * agree / total:.4f} % "
            f"of {total} voxels"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
