# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Process memory over network reloads with one shared engine, for two source trees side by side.

A MONAI Label server loads a new network after every ``/train`` and keeps one inferer. This script does that
``--reloads`` times in a fresh process per source tree (``--base DIR``, e.g. ``git worktree add /tmp/base <rev>``,
and this checkout): a new ``L2GNet`` (ResNet18 backbone), its weights loaded, one volume inferred by the shared
``TunedSliceInferer(compile=True)``, the network dropped and ``gc.collect()``. ``torch.compile`` is replaced by
the identity, so the engine's compile cache holds the frozen copy as it would hold a compiled graph, without
Inductor's time (Inductor's own caches are not measured). It prints the resident memory (``/proc/self/statm``)
after the first two reloads and after the last, the growth per reload, and how many networks are still alive.

    python bench/engine_reloads.py --base /tmp/base [--reloads 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import gc, json, os, sys, weakref
import torch
torch.set_num_threads(1)
torch.compile = lambda module, **kwargs: module
from l2gnet_monai.inference.engine import TunedSliceInferer
from l2gnet_monai.networks import L2GNet

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def build():
    return L2GNet(out_channels=3, backbone="resnet18", codebook_size=32, codebook_dim=64, num_anchors=16,
                  reference_grid=2, decoder_channels=(32, 16, 16, 8))

torch.manual_seed(0)
trained = build().train()
trained(torch.randn(4, 1, 64, 64))
weights = trained.eval().state_dict()
engine = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32", compile=True)
volume = torch.randn(1, 1, 64, 64, 6)
alive, rss = [], []
for reload in range(int(sys.argv[1])):
    net = build()
    net.load_state_dict(weights)
    with torch.no_grad():
        engine(volume, net.eval())
    alive.append(weakref.ref(net))
    del net
    gc.collect()
    rss.append(rss_mib())
import l2gnet_monai
print(json.dumps({"rss_mib": rss, "alive": sum(ref() is not None for ref in alive), "package": l2gnet_monai.__file__}))
"""


def run(tree: str, reloads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    # cwd: "python -c" puts the current directory first on sys.path, before PYTHONPATH
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(reloads)], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="source tree of the revision to compare against")
    parser.add_argument("--reloads", type=int, default=20)
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"{'tree':40s} {'RSS after 2 (MiB)':>18s} {'after last':>11s} {'MiB/reload':>11s} {'networks alive':>15s}")
    for name, tree in (("base " + args.base, args.base), ("this checkout", here)):
        result = run(tree, args.reloads)
        rss = result["rss_mib"]
        per_reload = (rss[-1] - rss[1]) / max(1, len(rss) - 2)
        print(f"{name:40s} {rss[1]:18.0f} {rss[-1]:11.0f} {per_reload:11.1f} {result['alive']:>9d} / {len(rss)}")
        print(f"    (imported {result['package']})")


if __name__ == "__main__":
    main()
