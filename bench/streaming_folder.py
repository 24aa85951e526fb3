# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Time to the first segmentation and total time of ``inference.json`` on a 100-volume folder, two source trees.

Makes ``--volumes`` phantom-like CT volumes (``--shape``, int16, gzip NIfTI, a body ellipse with organs of
different densities and noise) and a bundle whose weights are a small random L2GNet (ResNet18, 64 x 64 slices,
fixed batch of 16 slices, so that no batch-size measurement differs between runs), then runs
``python -m monai.bundle run --config_file inference.json`` on the folder once per source tree and round, the
trees alternating (``--base DIR``, e.g. ``git worktree add /tmp/base 7c1049a``, and this checkout), each in a
fresh process with ``PYTHONPATH`` pointing at its tree. Measured from the parent, from the start of the process:

* **first output**: when the first ``*_seg.nii.gz`` appears (the earliest modification time in the output folder);
* **total**: until the process exits (every volume segmented and saved).

Medians over ``--rounds``; the CPU pressure at the start and the end (the numbers are loose when it is high).

    OMP_WAIT_POLICY=PASSIVE python bench/streaming_folder.py --base /tmp/base [--volumes 100] [--rounds 3]
    python bench/streaming_folder.py --base /tmp/base --quick    # 12 volumes, 1 round: the plumbing only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import nibabel as nib
import numpy as np
import torch
from _common import SMALL_NETWORK_OVERRIDE, contention_warning, cpu_pressure, format_table, median, write_json
from monai.bundle import ConfigParser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The network and slices of the measured bundle: small, so that loading and checking weigh as in a real folder of
#: large CTs with a fast network (a GPU), rather than disappearing behind a slow one.
OVERRIDE: Dict[str, Any] = {
    **SMALL_NETWORK_OVERRIDE,
    "sw_batch_size": 16,
    "precision": "fp32",
    "compile": False,
}


def phantom_volume(shape: List[int], seed: int) -> np.ndarray:
    """A CT-like int16 volume: air, a body ellipse (fat, soft tissue), two denser organs, noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    plane = np.full(shape[:2], -1000.0)
    plane[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = -80.0
    plane[(x / 0.8) ** 2 + (y / 0.6) ** 2 < 1] = 40.0
    plane[((x - 0.3) / 0.3) ** 2 + (y / 0.25) ** 2 < 1] = 60.0 + rng.integers(-10, 10)
    plane[((x + 0.35) / 0.15) ** 2 + ((y - 0.1) / 0.15) ** 2 < 1] = 200.0
    volume = np.repeat(plane[..., None], shape[2], axis=2) + rng.normal(0, 20, shape)
    return volume.astype(np.int16)


def make_inputs(root: str, volumes: int, shape: List[int]) -> Dict[str, str]:
    """The folder of volumes, a bundle (this checkout's configs) with random weights, and the override file."""
    folder = os.path.join(root, "volumes")
    os.makedirs(folder)
    affine = np.diag([1.5, 1.5, 5.0, 1.0])
    for case in range(volumes):
        nib.save(nib.Nifti1Image(phantom_volume(shape, case), affine), os.path.join(folder, f"case_{case:03d}.nii.gz"))
    bundle = os.path.join(root, "bundle")
    os.makedirs(os.path.join(bundle, "models"))
    override = os.path.join(root, "override.json")
    with open(override, "w") as out:
        json.dump(OVERRIDE, out)
    parser = ConfigParser()
    parser.read_config([os.path.join(REPO, "bundle", "configs", "inference.json"), override])
    parser["bundle_root"] = bundle
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    torch.save(network.state_dict(), os.path.join(bundle, "models", "model.pt"))
    return {"folder": folder, "bundle": bundle, "override": override}


def run_tree(tree: str, inputs: Dict[str, str], output_dir: str) -> Dict[str, float]:
    """One ``inference.json`` run of ``tree`` on the folder: seconds to the first output and to the end."""
    shutil.rmtree(output_dir, ignore_errors=True)
    configs = [os.path.join(tree, "bundle", "configs", "inference.json"), inputs["override"]]
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(configs)]
    args += ["--bundle_root", inputs["bundle"], "--input_dir", inputs["folder"], "--output_dir", output_dir]
    env = {**os.environ, "PYTHONPATH": tree}
    start = time.time()
    result = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=False)
    end = time.time()
    if result.returncode != 0:
        raise SystemExit(f"{tree}: inference failed:\n{result.stderr[-3000:]}")
    written = [os.path.join(output_dir, f) for f in os.listdir(output_dir) if f.endswith("_seg.nii.gz")]
    first = min(os.path.getmtime(f) for f in written)
    return {"first_output_s": first - start, "total_s": end - start, "outputs": len(written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="source tree of the revision to compare against")
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 256, 64], help="volume shape (voxels)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per tree (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="12 volumes of 64 x 64 x 16 (one round unless --rounds)")
    parser.add_argument("--json", default="", help="write all numbers to this file")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.shape = 12, [64, 64, 16]
    args.rounds = args.rounds or (1 if args.quick else 3)
    trees = {"before": os.path.abspath(args.base), "after": REPO}
    pressures = [cpu_pressure()]
    times: Dict[str, List[Dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="l2gnet_streaming_") as root:
        inputs = make_inputs(root, args.volumes, args.shape)
        for index in range(args.rounds):
            names = list(trees) if index % 2 == 0 else list(trees)[::-1]
            for name in names:
                times[name].append(run_tree(trees[name], inputs, os.path.join(root, f"out_{name}")))
                print(f"round {index + 1} {name}: {times[name][-1]}", flush=True)
    pressures.append(cpu_pressure())
    rows, summary = [], {}
    for name, runs in times.items():
        first, total = median([r["first_output_s"] for r in runs]), median([r["total_s"] for r in runs])
        summary[name] = {"first_output_s": first, "total_s": total, "runs": runs}
        rows.append([f"{name} ({trees[name]})", first, total, runs[0]["outputs"]])
    print(f"\n{args.volumes} volumes of {args.shape} (int16, gzip), {args.rounds} rounds, medians")
    print(format_table(["tree", "first output (s)", "total (s)", "outputs"], rows))
    speedup = summary["before"]["first_output_s"] / summary["after"]["first_output_s"]
    ratio = summary["after"]["total_s"] / summary["before"]["total_s"]
    print(f"first output {speedup:.1f}x sooner; total after / before {ratio:.2f}")
    verdict = summary["after"]["first_output_s"] < summary["before"]["first_output_s"]
    verdict = verdict and summary["after"]["total_s"] <= 1.05 * summary["before"]["total_s"]
    print(f"{'PASS' if verdict else 'FAIL'}: first output sooner, total no longer (within 5 %)")
    print(f"CPU pressure at start / end: {pressures[0]} / {pressures[1]}")
    warning = contention_warning(pressures)
    if warning:
        print(warning)
    write_json(args.json, {"volumes": args.volumes, "shape": args.shape, "rounds": args.rounds, **summary})


if __name__ == "__main__":
    main()
