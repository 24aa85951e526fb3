# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The training step of two source trees of ``l2gnet_monai``, side by side in one run.

Runs ``bench/train_step.py`` (this checkout's script) alternately against the package of a base tree and of
this checkout (``PYTHONPATH``), ``--rounds`` times each in the order A B, B A, A B, ..., one fresh process per
run, and prints, per tree, the median L2GNet and FlexibleUNet step times and the median L2GNet / FlexibleUNet
ratio (FlexibleUNet is the same code in both trees: a control for the machine's drift), and the median over
rounds of the per-round ratio of L2GNet's step time, this tree / base.

Make the base tree with ``git worktree add /tmp/base <commit>`` (or ``git archive <commit> l2gnet_monai |
tar -x -C /tmp/base``). Arguments after ``--`` go to ``train_step.py``::

    python bench/compare_revisions.py --base /tmp/base --rounds 4 -- --repeats 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from _common import format_table, machine_info, median, setup_device

REPO = Path(__file__).resolve().parents[1]


def run_tree(tree: Path, extra: List[str], json_path: Path) -> Dict[str, Any]:
    """One ``train_step.py`` process importing ``l2gnet_monai`` from ``tree``; its JSON results."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(REPO / "bench" / "train_step.py"), "--json", str(json_path), *extra]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(json_path.read_text())["results"]


def main(argv: Optional[List[str]] = None) -> None:
    """Run the comparison and print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a source tree holding the base revision's l2gnet_monai/")
    parser.add_argument("--rounds", type=int, default=4, help="processes per tree")
    parser.add_argument("--json", default="", help="write every round's results to this JSON file")
    args = parser.parse_args(own)
    base = Path(args.base).resolve()
    if not (base / "l2gnet_monai" / "__init__.py").is_file():
        parser.error(f"--base {base}: no l2gnet_monai/__init__.py there; make it with `git worktree add`.")
    device = "cuda" if "cuda" in extra else "cpu"
    threads = int(extra[extra.index("--threads") + 1]) if "--threads" in extra else 2
    info = machine_info(setup_device(device, threads))
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    trees = {"base": base, "this": REPO}
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                results[name].append(run_tree(trees[name], extra, Path(tmp) / f"{name}-{r}.json"))
                step = results[name][-1]["l2gnet"]["step_ms"]
                print(f"  round {r + 1}, {name}: l2gnet {step:.0f} ms", flush=True)
    rows = []
    for name in trees:
        rounds = results[name]
        rows.append(
            [
                f"{name} ({trees[name]})",
                median([x["l2gnet"]["step_ms"] for x in rounds]),
                median([x["flexunet"]["step_ms"] for x in rounds]),
                median([x["l2gnet"]["ratio_vs_flexunet"] for x in rounds]),
            ]
        )
    print()
    print(format_table(["tree", "l2gnet step ms", "flexunet step ms", "l2gnet / flexunet"], rows))
    paired = [t["l2gnet"]["step_ms"] / b["l2gnet"]["step_ms"] for t, b in zip(results["this"], results["base"])]
    print(f"\nL2GNet step, this tree / base: median {median(paired):.3f} over {len(paired)} paired rounds")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "trees": {k: str(v) for k, v in trees.items()}, "results": results}, out)


if __name__ == "__main__":
    main()
