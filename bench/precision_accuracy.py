# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What reduced precision changes in a trained bundle's results, per class: Dice, HD95 and the label maps.

Runs the bundle's evaluation (``train.json`` + ``evaluate.json`` + overrides) and inference (``inference.json``
+ overrides) once per precision on a trained ``--bundle_root``, through MONAI's ``ConfigWorkflow``, both eager
(``compile`` off, so that only the precision differs), and compares each precision with the first (float32):

* per class, the paper-form Dice and HD95 of the evaluation, and the agreement of the inference's label maps with
  float32's (the Dice overlap of the class's voxels in the two label maps, over all volumes);
* over all classes, the mean Dice (change in points) and the share of voxels whose label agrees;
* the inference's wall time per precision (how fast the precision is on this device) and the precision that
  actually ran (``summary.json``'s ``run.precision``).

A precision the device cannot run is reported as such, with its error, and the others go on.

    python bench/precision_accuracy.py --bundle_root /path/to/trained/bundle --overrides configs/cpu.json \\
        --precisions fp32 bf16 fp16 --json precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import nibabel as nib
import numpy as np
import torch
from _common import format_table, machine_info, write_json
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]


def run(files: List[str], workflow_type: str, **override: Any) -> None:
    workflow = ConfigWorkflow(config_file=files, workflow_type=workflow_type, **override)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def class_agreement(labels: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], k: int) -> float:
    """Dice overlap of class ``k``'s voxels in ``labels`` and ``reference`` over all volumes (1 when both lack it)."""
    both = sum(int(((labels[n] == k) & (v == k)).sum()) for n, v in reference.items())
    size = sum(int((labels[n] == k).sum() + (v == k).sum()) for n, v in reference.items())
    return 2.0 * both / size if size else 1.0


def evaluate_precision(args: argparse.Namespace, precision: str, folder: Path) -> Dict[str, Any]:
    """The evaluation's summary, the inference's label maps and its wall time for one precision."""
    configs = REPO / "bundle" / "configs"
    overrides = [str(Path(p).resolve()) for p in args.overrides]
    evaluation = [str(configs / "train.json"), str(configs / "evaluate.json"), *overrides]
    run(
        evaluation,
        "train",
        bundle_root=args.bundle_root,
        output_dir=str(folder / "evaluation"),
        **{"validate#inferer#precision": precision, "validate#inferer#compile": False},
    )
    summary = json.loads((folder / "evaluation" / "summary.json").read_text())
    inference = [str(configs / "inference.json"), *overrides]
    start = time.perf_counter()
    run(
        inference,
        "infer",
        bundle_root=args.bundle_root,
        output_dir=str(folder / "labels"),
        precision=precision,
        compile=False,
    )
    seconds = time.perf_counter() - start
    labels = {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted((folder / "labels").rglob("*.nii.gz"))}
    return {"summary": summary, "labels": labels, "inference_seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle_root", required=True, help="a trained bundle (models/model.pt, its data)")
    parser.add_argument("--overrides", nargs="*", default=[], help="override files used for training")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], help="the first is the reference")
    parser.add_argument("--output", default="", help="folder for the outputs (default: <bundle_root>/eval/precision)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    output = Path(args.output or os.path.join(args.bundle_root, "eval", "precision"))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    info = {
        **machine_info(torch.device("cpu")),
        "commit": commit.stdout.strip(),
        "script": "bench/precision_accuracy.py",
    }
    print(", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)

    results: Dict[str, Dict[str, Any]] = {}
    for precision in args.precisions:
        try:
            results[precision] = evaluate_precision(args, precision, output / precision)
        except Exception as error:  # a precision this device cannot run: say so, measure the others
            print(f"{precision}: cannot run here ({type(error).__name__}: {error})", flush=True)
            results[precision] = {"error": f"{type(error).__name__}: {error}"}
    reference_name = args.precisions[0]
    reference = results[reference_name]
    if "error" in reference:
        print(f"the reference precision {reference_name} failed; nothing to compare.")
        return 1
    names = {int(k): v for k, v in reference["summary"]["class_names"].items()}
    report: Dict[str, Any] = {"machine": info, "precisions": {}}
    rows = []
    for precision in args.precisions:
        entry = results[precision]
        if "error" in entry:
            report["precisions"][precision] = {"error": entry["error"]}
            continue
        summary, labels = entry["summary"], entry["labels"]
        agree = sum(int((labels[k] == v).sum()) for k, v in reference["labels"].items())
        total = sum(v.size for v in reference["labels"].values())
        per_class = {
            name: {
                "dsc": summary["per_class"][name]["dsc"],
                "hd95": summary["per_class"][name]["hd95"],
                "label_agreement": class_agreement(labels, reference["labels"], k),
            }
            for k, name in names.items()
        }
        report["precisions"][precision] = {
            "ran_in": summary.get("run", {}).get("precision"),
            "mean_dsc": summary["mean_dsc"],
            "mean_hd95": summary["mean_hd95"],
            "dsc_change_points": 100 * (summary["mean_dsc"] - reference["summary"]["mean_dsc"]),
            "voxel_agreement": agree / total,
            "voxels": total,
            "volumes": len(reference["labels"]),
            "inference_seconds": entry["inference_seconds"],
            "per_class": per_class,
        }
        for name, scores in per_class.items():
            rows.append([precision, name, 100 * scores["dsc"], scores["hd95"], 100 * scores["label_agreement"]])
        change = report["precisions"][precision]["dsc_change_points"]
        rows.append([precision, "mean", 100 * summary["mean_dsc"], summary["mean_hd95"], 100 * agree / total])
        print(
            f"{precision} (ran in {report['precisions'][precision]['ran_in']}): mean DSC "
            f"{100 * summary['mean_dsc']:.3f} ({change:+.3f} points), HD95 {summary['mean_hd95']:.3f}, labels agree "
            f"with {reference_name} on {100 * agree / total:.4f} % of {total} voxels; inference of "
            f"{len(labels)} volumes {entry['inference_seconds']:.1f} s",
            flush=True,
        )
    print(format_table(["precision", "class", "DSC (%)", "HD95 (mm)", f"labels agree with {reference_name} (%)"], rows))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
