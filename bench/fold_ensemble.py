# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What the folds' ensemble gains and costs against one fold, on cases no fold trained on.

For a variant of a study (``STUDY/runs/VARIANT``, whose ``fold_K/model.pt`` are the folds; or a bundle's
``models/``), this script

1. scores every fold alone, the ensemble of all folds (``--folds all``) and the ensemble with test-time flips on
   the dataset's ``test`` list, or its own ``validation`` list (the phantom's 3 cases of ``configs/study_cpu.json``),
   with the bundle's evaluation (``train.json`` + ``evaluate.json`` + the study's overrides), one process each;
2. times the networks themselves on ``--slices`` slices at the trained slice size, in interleaved rounds (one fold,
   the ensemble, the mirrored ensemble), and reports the cost ratios.

    python bench/fold_ensemble.py --study /work/studies/cpu --variant l2gnet --overrides configs/study_cpu.json

It prints Markdown tables: mean DSC and HD95 per model with the ensemble's gain over the mean of the folds, and
seconds per slice with the ratio to one fold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from _common import format_table, machine_info, median, round_order, setup_device, timed, write_json

from l2gnet_monai.planning import ensemble_checkpoint, planned_network, trained_plan

REPO = Path(__file__).resolve().parents[1]


def evaluate(args: argparse.Namespace, models_dir: Path, output: Path, extra: List[str]) -> Dict[str, Any]:
    """One bundle evaluation (its own process); its summary.json."""
    files = [str(REPO / "bundle" / "configs" / n) for n in ("train.json", "evaluate.json")] + list(args.overrides)
    command = [sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", str(files)]
    command += ["--bundle_root", str(REPO / "bundle"), "--models_dir", str(models_dir), "--output_dir", str(output)]
    command += ["--paper_table", "none", "--splits_file", str(args.study / "splits.json"), *extra]
    if (args.study / "data" / "phantom").is_dir():
        command += ["--phantom_dir", str(args.study / "data" / "phantom")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"evaluation failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return json.loads((output / "summary.json").read_text())


def load(checkpoint: Path) -> torch.nn.Module:
    network = planned_network(trained_plan(checkpoint))
    network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    return network.eval()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="the study's folder")
    parser.add_argument("--variant", default="l2gnet", help="the variant whose folds are ensembled")
    parser.add_argument("--overrides", nargs="*", default=[], help="the study's override files")
    parser.add_argument("--split", default="validation", help="the dataset's list to score: test or validation")
    parser.add_argument("--slices", type=int, default=16, help="slices per timed call")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    device = setup_device("cpu", args.threads)
    models = args.study / "runs" / args.variant
    folds = sorted(int(p.name[5:]) for p in models.glob("fold_*") if (p / "model.pt").is_file())
    output = args.study / "ensemble" / args.variant
    # each fold alone on the dataset's own list, not on the cases it held out (which the plan's fold would choose)
    scores: Dict[str, Dict[str, Any]] = {}
    for k in folds:
        extra = ["--fold", str(k), "--cross_validation", "$None", "--evaluation_split", args.split]
        scores[f"fold {k}"] = evaluate(args, models, output / f"fold_{k}", extra)
    scores["ensemble"] = evaluate(args, models, output / "all", ["--folds", "all", "--evaluation_split", args.split])
    scores["ensemble + flips"] = evaluate(
        args,
        models,
        output / "all_flips",
        ["--folds", "all", "--test_time_flips", "true", "--evaluation_split", args.split],
    )
    fold_mean = sum(scores[f"fold {k}"]["mean_dsc"] for k in folds) / len(folds)
    rows = [
        [name, s["num_cases"], 100 * s["mean_dsc"], s["mean_hd95"], 100 * (s["mean_dsc"] - fold_mean)]
        for name, s in scores.items()
    ]
    print(f"## Accuracy on the {args.split} list ({args.variant}, {len(folds)} folds)\n")
    print(format_table(["model", "cases", "mean DSC (%)", "mean HD95", "DSC - mean of folds (points)"], rows))

    networks = {
        "one fold": load(models / f"fold_{folds[0]}" / "model.pt"),
        "ensemble": load(Path(ensemble_checkpoint(models, "all"))),
        "ensemble + flips": load(Path(ensemble_checkpoint(models, "all", test_time_flips=True))),
    }
    size = trained_plan(models / f"fold_{folds[0]}" / "model.pt")["slice_size"]
    x = torch.rand(args.slices, 1, *size)
    times: Dict[str, List[float]] = {name: [] for name in networks}
    with torch.inference_mode():
        for network in networks.values():
            network(x)  # warm-up
        for r in range(args.rounds):
            for name in round_order(list(networks), r):
                times[name].append(timed(lambda n=networks[name]: n(x), device))
    base = median(times["one fold"])
    rows = [[name, 1000 * median(t) / args.slices, median(t) / base] for name, t in times.items()]
    print(f"\n## Cost per slice ({size[0]} x {size[1]}, {args.slices} slices per call, {args.rounds} rounds)\n")
    print(format_table(["model", "ms per slice", "x one fold"], rows))
    write_json(args.json, {"machine": machine_info(device), "scores": scores, "seconds": times})


if __name__ == "__main__":
    main()
