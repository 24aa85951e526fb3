# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Training-step time with OpenMP's default spin-waiting against ``OMP_WAIT_POLICY=PASSIVE``, quiet and busy.

OpenMP reads ``OMP_WAIT_POLICY`` once, when the runtime loads (with torch), so every measurement is a fresh
process. The workload is one SGD step of the ``configs/cpu.json`` L2GNet (ResNet18, 256-d codes, 4 x 4
references, 96 x 96 slices, batch 16). Processes with the two policies alternate (A B, B A, ...); "busy" runs
the same pairs while a second process multiplies matrices on all cores (another CPU-bound job on the machine).
Prints the median step time per (load, policy), the median of the per-pair ratios and the load average seen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STEP = r"""
import json, sys, time, torch
from monai.losses import DiceCELoss
from l2gnet_monai import L2GNet
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
net = L2GNet(out_channels=9, backbone="resnet18", codebook_dim=256, num_anchors=64, reference_grid=4).train()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
x, y = torch.rand(16, 1, 96, 96), torch.randint(0, 9, (16, 1, 96, 96))
times = []
for i in range(int(sys.argv[2]) + 1):
    start = time.perf_counter()
    opt.zero_grad()
    loss = loss_fn(net(x), y) + net.pop_quantization_loss()
    loss.backward()
    opt.step()
    if i:  # the first step warms up
        times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

BUSY = r"""
import torch
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a / 32)
"""


def step_times(policy: str, threads: int, steps: int) -> list:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    run = subprocess.run(
        [sys.executable, "-c", STEP, str(threads), str(steps)], env=env, capture_output=True, text=True
    )
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3, help="A/B process pairs per load condition")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    results = {}
    for load in ("as-is", "busy"):
        busy = None
        if load == "busy":
            env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
            busy = subprocess.Popen([sys.executable, "-c", BUSY], env=env)
            time.sleep(3)
        medians = {"default": [], "PASSIVE": []}
        loads = [os.getloadavg()[0]]
        try:
            for pair in range(args.pairs):
                order = ("default", "PASSIVE") if pair % 2 == 0 else ("PASSIVE", "default")
                for policy in order:
                    medians[policy].append(statistics.median(step_times(policy, args.threads, args.steps)))
                loads.append(os.getloadavg()[0])
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        ratios = [d / p for d, p in zip(medians["default"], medians["PASSIVE"])]
        results[load] = {
            "default_s": statistics.median(medians["default"]),
            "passive_s": statistics.median(medians["PASSIVE"]),
            "default_over_passive": statistics.median(ratios),
            "per_pair": medians,
            "load_average_1min": loads,
        }
        print(
            f"{load}: default {results[load]['default_s']:.2f} s, PASSIVE {results[load]['passive_s']:.2f} s, "
            f"default / PASSIVE = {results[load]['default_over_passive']:.2f} "
            f"(per pair {[round(r, 2) for r in ratios]}), "
            f"load average {min(loads):.1f}-{max(loads):.1f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
