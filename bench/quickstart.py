# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""README command 1, timed and scored: the quick start's training and evaluation, as a user runs them.

Runs, in a fresh copy of ``bundle/`` (the repository's own ``bundle/`` is not touched), the two bundle commands of
README command 1 with ``OMP_WAIT_POLICY=PASSIVE`` set as the README sets it:

    python -m monai.bundle run training --config_file "['bundle/configs/train.json','configs/cpu.json']"
    python -m monai.bundle run --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json']"

(evaluation with no override: the trained model's plan gives everything), and prints the wall time of each, the
best validation mean Dice of the training, the evaluation's mean DSC and HD95, with the date, CPU, commit and
versions; ``--json`` writes the same. The README's quick-start numbers come from this script::

    python bench/quickstart.py --json quickstart.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_pressure, machine_info, write_json

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, log: Path) -> float:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"quickstart: {' '.join(args[:4])} failed (exit {result.returncode}); log: {log}")
    return seconds


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu.json", help="the override of command 1 (default cpu.json)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, model, report)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="l2gnet_quickstart_"))
    bundle = work / "bundle"
    shutil.copytree(REPO / "bundle", bundle, ignore=shutil.ignore_patterns("*.pt", "data", "eval", "runs"))
    (bundle / "models").mkdir(exist_ok=True)
    override = str((REPO / args.config).resolve())
    info = {**machine_info(torch.device("cpu")), "commit": _commit(), "override": args.config}
    train_files = f"['{bundle}/configs/train.json','{override}']"
    evaluate_files = f"['{bundle}/configs/train.json','{bundle}/configs/evaluate.json']"
    train_seconds = _run(["-m", "monai.bundle", "run", "training", "--config_file", train_files], work, work / "t.log")
    evaluate_seconds = _run(["-m", "monai.bundle", "run", "--config_file", evaluate_files], work, work / "e.log")
    best = re.findall(r"Key metric: val_mean_dice best value: ([0-9.]+)", (work / "t.log").read_text())
    summary = json.loads((bundle / "eval" / "summary.json").read_text())
    results = {
        **info,
        "cpu_pressure_end": cpu_pressure(),
        "train_seconds": round(train_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "best_val_mean_dice": float(best[-1]) if best else None,
        "evaluation_split": summary.get("split", "validation"),
        "mean_dsc_percent": round(100 * summary["mean_dsc"], 2),
        "mean_hd95": round(summary["mean_hd95"], 2),
        "hd95_unit": summary.get("hd95_unit"),
        "num_cases": summary["num_cases"],
    }
    print(
        f"{results['date']}, {results['cpu']} ({results['cpu_cores']} cores), commit {results['commit']}, "
        f"torch {results['torch']}, MONAI {results['monai']}, CPU pressure {results['cpu_pressure_start']} -> "
        f"{results['cpu_pressure_end']}\n"
        f"training ({args.config}): {train_seconds / 60:.1f} min, best validation mean Dice "
        f"{results['best_val_mean_dice']}\n"
        f"evaluation (no override): {evaluate_seconds / 60:.1f} min, mean DSC {results['mean_dsc_percent']} % "
        f"(HD95 {results['mean_hd95']} {results['hd95_unit']}) over {results['num_cases']} cases\n"
        f"total {(train_seconds + evaluate_seconds) / 60:.1f} min"
    )
    write_json(args.json, results)
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
