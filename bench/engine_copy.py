# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What the engine's private ``channels_last`` copy costs, against converting the caller's network in place.

``TunedSliceInferer`` no longer converts the caller's module to ``channels_last``: it runs a copy, made at the
first call and again after the weights or the train/eval mode change (every validation during training). This
script measures, for one network, in interleaved rounds (medians):

* ``copy``: seconds to make the copy (deep copy + ``channels_last``), paid once per inference run or per
  validation; ``check``: seconds per call to decide whether the copy is still current;
* slices/s of ``engine`` (the copy, as the engine runs it), ``in-place`` (the network converted in place, the
  engine's former behaviour) and ``nchw`` (``channels_last=False``), side by side, and the ratios;
* the copy's size in MiB (the memory it adds: one copy of the weights).

    OMP_WAIT_POLICY=PASSIVE python bench/engine_copy.py [--quick] [--slices 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from _common import contention_warning, cpu_pressure, format_table, machine_info, median, round_order, setup_device

from l2gnet_monai.inference.compilation import detached_copy, weights_version
from l2gnet_monai.inference.engine import TunedSliceInferer
from l2gnet_monai.networks import L2GNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet18 L2GNet instead of the paper's ResNet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    device = setup_device("cpu", args.threads)
    info = machine_info(device)

    network = L2GNet(out_channels=9, **({"backbone": "resnet18"} if args.quick else {}))
    network.train()
    with torch.no_grad():
        network(torch.randn(2, 1, 64, 64))  # initialises the codebook, as training does
    network.eval()
    in_place = copy.deepcopy(network).to(memory_format=torch.channels_last)
    volume = torch.randn(1, 1, args.size, args.size, args.slices)
    settings = {"roi_size": (args.size, args.size), "sw_batch_size": 4, "precision": "auto"}
    engine, nchw = TunedSliceInferer(**settings), TunedSliceInferer(**settings, channels_last=False)
    # the former behaviour: the caller's module converted in place, its inputs channels_last, no copy (a plain
    # callable, so the engine neither copies nor converts it)
    in_place_engine = TunedSliceInferer(**settings, channels_last=False)

    def in_place_slices(x: torch.Tensor) -> torch.Tensor:
        return in_place(x.contiguous(memory_format=torch.channels_last))

    tasks = {
        "engine": lambda: engine(volume, network),
        "in-place": lambda: in_place_engine(volume, in_place_slices),
        "nchw": lambda: nchw(volume, network),
    }
    times = {name: [] for name in tasks}
    copies, checks = [], []
    with torch.no_grad():
        for task in tasks.values():
            task()  # warm-up, and the engine's first copy
        for round_index in range(args.rounds):
            for name in round_order(list(tasks), round_index):
                start = time.perf_counter()
                tasks[name]()
                times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            replica = detached_copy(network).to(memory_format=torch.channels_last)
            copies.append(time.perf_counter() - start)
            start = time.perf_counter()
            (weights_version(network), tuple(m.training for m in network.modules()))
            checks.append(time.perf_counter() - start)
    size_mib = sum(t.numel() * t.element_size() for t in [*replica.parameters(), *replica.buffers()]) / 2**20
    rate = {name: args.slices / median(seconds) for name, seconds in times.items()}
    rows = [[name, rate[name], rate[name] / rate["in-place"]] for name in tasks]
    pressure = cpu_pressure()
    print(format_table(["variant", "slices/s", "vs in-place"], rows))
    print(
        f"copy: {median(copies):.3f} s per copy ({size_mib:.0f} MiB); current-copy check: {1e6 * median(checks):.0f} us"
    )
    print(f"one copy = {median(copies) * rate['engine']:.1f} slices of inference")
    warning = contention_warning([info["cpu_pressure_start"], pressure])
    if warning:
        print(warning)
    print(json.dumps({"machine": info, "cpu_pressure_end": pressure, "slices_per_s": rate}, indent=1))


if __name__ == "__main__":
    main()
