# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What one inference request costs beyond its network: ``inference.json`` through ``ConfigWorkflow`` against the
engine alone on the same slices, stage by stage, for one or two source trees.

A request is what a server (MONAI Label's ``/infer``) does per volume: a new ``ConfigWorkflow`` of the bundle's
``inference.json`` for one ``--volume`` (224 x 224 x 48, int16 gzip NIfTI), ``initialize()``, ``run()``,
``finalize()``. The server keeps its network and engine between requests, as MONAI Label keeps its model: they are
passed to the workflow as overrides (``network``, ``inferer``), built by one untimed request first (in which the
engine also measures its batch size). The network is the bundle's default L2GNet (ResNet50, 9 classes), random
weights saved as ``models/model.pt``, run eager (``compile: false``: ``"auto"`` would start a background
compilation that competes for the cores with the timed calls).

**Engine**: ``TunedSliceInferer`` (the same object) on the same preprocessed volume with the same network under
``torch.no_grad()``: the request's ceiling. **Ratio**: engine time / request time (= the request's slices/s as a
share of the engine's); also without set-up and checks, and as engine / (engine + the request's stages other than
its network), which on a shared machine is less exposed to the network's time changing between the two timings.
Engine and request alternate in ``--rounds`` interleaved rounds; medians of the stages, medians of the per-round
ratios.

Stages of a request (timed in the main process by wrapping the functions named):

* set-up: ``ConfigWorkflow(...)`` and ``initialize()`` but the checks (config parsing, the plan read from the
  checkpoint, the weights loaded, handlers attached); ``weights`` is the part in ``trained_plan`` and
  ``CheckpointLoader``;
* checks: ``check_datalist``, ``check_slice_axis``, ``require_checkpoint``;
* loader: waiting for the batch (``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED``): the loader's workers started,
  the volume loaded and preprocessed; of it ``load`` (``LoadImaged``) and ``preprocessing`` (the rest of the
  dataset's transform) when they run in this process (``num_workers`` 0);
* network: the engine's call inside the workflow;
* inversion: ``InvertToLabelsd``; save: ``SaveImaged``;
* other: the rest of ``run()`` and ``finalize()`` (the engine's bookkeeping, handlers).

With ``--base DIR`` (e.g. ``git worktree add /tmp/base 7c1049a``) the same is measured for that source tree in its
own process first; every tree runs on the same weights and volume.

    OMP_WAIT_POLICY=PASSIVE python bench/workflow_overhead.py --base /tmp/base [--rounds 5] [--json out.json]
    python bench/workflow_overhead.py --quick    # ResNet18, 64 x 64 x 8, one round: the plumbing only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

import nibabel as nib
import numpy as np
import torch
from _common import (
    SMALL_NETWORK_OVERRIDE,
    contention_warning,
    cpu_pressure,
    format_table,
    machine_info,
    median,
    write_json,
)
from monai.bundle import ConfigParser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("set-up", "weights", "checks", "loader", "load", "preprocessing", "network", "inversion", "save", "other")

CHILD = r"""
import contextlib, functools, json, sys, time
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
import monai.data.dataset, monai.handlers, monai.transforms
import l2gnet_monai.data, l2gnet_monai.planning, l2gnet_monai.planning.checkpoint
from l2gnet_monai.inference import TunedSliceInferer
from l2gnet_monai.transforms import InvertToLabelsd

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
spent = {}

def timing(stage, fn):
    @functools.wraps(fn)
    def wrapped(*a, **k):
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - start
    return wrapped

CALLS = ((monai.transforms.LoadImaged, "load"), (TunedSliceInferer, "network"), (InvertToLabelsd, "inversion"),
         (monai.transforms.SaveImaged, "save"), (monai.handlers.CheckpointLoader, "weights"))
for cls, stage in CALLS:
    cls.__call__ = timing(stage, cls.__call__)
monai.data.dataset.Dataset._transform = timing("load+preprocessing", monai.data.dataset.Dataset._transform)
planning = l2gnet_monai.planning
FUNCTIONS = ((l2gnet_monai.data, "check_datalist", "checks"), (planning, "check_slice_axis", "checks"),
             (planning, "require_checkpoint", "checks"), (planning, "trained_plan", "weights"))
for module, name, stage in FUNCTIONS:
    setattr(module, name, timing(stage, getattr(module, name)))

def request(output_dir, **override):
    spent.clear()
    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=args["configs"], workflow_type="infer", bundle_root=args["bundle"],
                              input_dir=args["volume"], output_dir=output_dir, **args["override"], **override)
    workflow.initialize()
    initialized = time.perf_counter()
    evaluator = workflow.parser.get_parsed_content("evaluator")
    marks = {}

    def got(engine):
        spent["loader"] = spent.get("loader", 0.0) + time.perf_counter() - marks["get"]

    evaluator.add_event_handler(Events.GET_BATCH_STARTED, lambda e: marks.__setitem__("get", time.perf_counter()))
    evaluator.add_event_handler(Events.GET_BATCH_COMPLETED, got)
    workflow.run()
    workflow.finalize()
    end = time.perf_counter()
    stages = dict(spent)
    stages["set-up"] = initialized - start - stages.get("checks", 0.0)
    main_process = stages.pop("load+preprocessing", None)
    if main_process is not None:
        stages["preprocessing"] = main_process - stages.get("load", 0.0)
    else:
        stages.pop("load", None)  # in the loader's workers: inside "loader"
    inside_run = sum(stages.get(k, 0.0) for k in ("loader", "network", "inversion", "save"))
    stages["other"] = end - initialized - inside_run
    stages["total"] = end - start
    return workflow, stages

warm, _ = request(args["out"] + "/warm")
network = warm.parser.get_parsed_content("network")
inferer = warm.parser.get_parsed_content("inferer")
preprocessing = warm.parser.get_parsed_content("preprocessing")
image = preprocessing({"image": args["volume"]})["image"][None]
network.eval()

def engine():
    spent.clear()
    start = time.perf_counter()
    with torch.no_grad():
        inferer(image, network)
    return time.perf_counter() - start

engine()
rounds = []
for index in range(args["rounds"]):
    order = ("engine", "request") if index % 2 == 0 else ("request", "engine")
    result = {}
    for name in order:
        if name == "engine":
            result["engine"] = engine()
        else:
            _, result["request"] = request(args["out"] + f"/r{index}", network=network, inferer=inferer)
    rounds.append(result)
import l2gnet_monai
print(json.dumps({"rounds": rounds, "slices": int(image.shape[-1]), "package": l2gnet_monai.__file__,
                  "batch": getattr(inferer, "sw_batch_size", None)}))
"""


def make_inputs(root: str, shape: List[int], override: Dict[str, Any]) -> Dict[str, str]:
    """The volume (int16 gzip NIfTI, RAS) and a bundle folder whose ``models/model.pt`` holds random weights."""
    rng = np.random.default_rng(0)
    volume = os.path.join(root, "case.nii.gz")
    data = rng.normal(0, 300, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), volume)
    bundle = os.path.join(root, "bundle")
    os.makedirs(os.path.join(bundle, "models"))
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundle", "configs", "inference.json"))
    parser.update(override)
    parser["bundle_root"] = bundle
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), os.path.join(bundle, "models", "model.pt"))
    return {"volume": volume, "bundle": bundle}


def run_tree(tree: str, inputs: Dict[str, str], override: Dict[str, Any], rounds: int, threads: int) -> dict:
    """The child's measurements for the source tree ``tree`` (its own process, its own ``inference.json``)."""
    out = tempfile.mkdtemp(prefix="out_", dir=os.path.dirname(inputs["bundle"]))
    configs = [os.path.join(tree, "bundle", "configs", "inference.json")]
    child_args = {**inputs, "configs": configs, "override": override, "rounds": rounds, "out": out, "threads": threads}
    env = {**os.environ, "PYTHONPATH": tree}
    # cwd: "python -c" puts the current directory first on sys.path, before PYTHONPATH
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(child_args)], cwd=tree, env=env, capture_output=True, text=True
    )
    lines = result.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{tree}: the measurement failed:\n{result.stderr[-4000:]}")
    if result.returncode != 0:  # e.g. a loader worker's thread aborting at exit, after the results were printed
        print(f"{tree}: the measuring process exited with {result.returncode} after printing its results")
    return json.loads(lines[-1])


def summarize(name: str, result: dict) -> Dict[str, Any]:
    """Medians of every stage, of the engine, and the ratios."""
    requests = [r["request"] for r in result["rounds"]]
    stages = {s: median([r[s] for r in requests if s in r]) for s in (*STAGES, "total")}
    engines = [r["engine"] for r in result["rounds"]]
    run_only = [r["total"] - r["set-up"] - r.get("checks", 0.0) for r in requests]
    return {
        "tree": name,
        "stages": stages,
        "engine": median(engines),
        "ratio": median([e / r["total"] for e, r in zip(engines, requests)]),
        "ratio_without_setup": median([e / r for e, r in zip(engines, run_only)]),
        # the request's own stages: the engine's time plus what the request spends outside its network
        "ratio_by_overhead": median([e / (e + r["total"] - r["network"]) for e, r in zip(engines, requests)]),
        "slices": result["slices"],
        "batch": result["batch"],
        "package": result["package"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="", help="source tree of the revision to compare against")
    parser.add_argument("--volume", type=int, nargs=3, default=[224, 224, 48], help="the request's volume shape")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--target", type=float, default=0.9, help="the ratio a request must reach")
    parser.add_argument("--quick", action="store_true", help="ResNet18, 64 x 64 x 8, one round")
    parser.add_argument("--json", default="", help="write all numbers to this file")
    args = parser.parse_args()
    # eager: with compile "auto" the engine compiles in a background thread once its eager budget is spent, which
    # would compete for the cores with the timed calls (and abort the process at exit if still running)
    override: Dict[str, Any] = {"compile": False}
    if args.quick:
        args.volume, args.rounds = [64, 64, 8], 1
        override.update(SMALL_NETWORK_OVERRIDE)
    trees = ({"before": os.path.abspath(args.base)} if args.base else {}) | {"after": REPO}
    pressures = [cpu_pressure()]
    summaries = []
    with tempfile.TemporaryDirectory(prefix="l2gnet_workflow_") as root:
        inputs = make_inputs(root, args.volume, override)
        for name, tree in trees.items():
            summaries.append(summarize(name, run_tree(tree, inputs, override, args.rounds, args.threads)))
            print(f"{name}: {summaries[-1]['package']}, engine batch {summaries[-1]['batch']}", flush=True)
    pressures.append(cpu_pressure())
    print(f"\none request of {args.volume} (int16 gzip), {args.rounds} interleaved rounds, medians (seconds)")
    headers = ["stage"] + [s["tree"] for s in summaries]
    rows = [[stage] + [s["stages"][stage] for s in summaries] for stage in (*STAGES, "total")]
    rows.append(["engine alone"] + [s["engine"] for s in summaries])
    rows.append(["engine / request"] + [s["ratio"] for s in summaries])
    rows.append(["engine / request without set-up and checks"] + [s["ratio_without_setup"] for s in summaries])
    rows.append(["engine / (engine + request's non-network stages)"] + [s["ratio_by_overhead"] for s in summaries])
    print(format_table(headers, rows))
    print("(weights: inside set-up; load and preprocessing: inside loader, when measured in this process)")
    after = summaries[-1]
    verdict = "PASS" if after["ratio"] >= args.target else "FAIL"
    print(
        f"{verdict}: a request runs at {100 * after['ratio']:.0f} % of the engine's throughput (target >= "
        f"{100 * args.target:.0f} %)"
    )
    print(f"CPU pressure at start / end: {pressures[0]} / {pressures[1]}")
    warning = contention_warning(pressures)
    if warning:
        print(warning)
    write_json(args.json, {"machine": machine_info(torch.device("cpu")), "volume": args.volume, "trees": summaries})


if __name__ == "__main__":
    main()
