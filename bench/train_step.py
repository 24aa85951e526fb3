# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Training-step time, parameters and FLOPs of L2GNet against MONAI's FlexibleUNet (ResNet50, 2-D).

Both networks segment 9 classes of 224 x 224 single-channel slices with ``DiceCELoss(to_onehot_y=True,
softmax=True)`` (for L2GNet ``L2GNetLoss``, which adds the quantization loss) and SGD. One *step* is
``zero_grad``, forward, loss, backward and ``optimizer.step()``. After warm-up the networks are timed in
interleaved rounds (A B, B A, A B, ...); the script prints the median step time of each network and the median
over rounds of the per-round ratio to FlexibleUNet, and checks the target L2GNet / FlexibleUNet <= 1.15.

It also counts parameters and forward FLOPs per 224 x 224 slice (batch 1, eval mode,
``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and convolutions, 2 FLOPs per
multiply-add, and no element-wise operations), with a per-module breakdown.

``--ablations`` adds two L2GNet variants to the same interleaved rounds: the ``"full"`` mapper (one
reference element per position, ``t = n = 196``) instead of the default ``"pooled"`` one (``t = 64``), and
3 x 3 instead of 1 x 1 pre- and post-bottleneck convolutions.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional

import torch
from _common import (
    PeakMemory,
    contention_warning,
    cpu_pressure,
    format_table,
    machine_info,
    median,
    setup_device,
    timed,
    write_json,
)
from monai.networks.nets import FlexibleUNet
from torch import nn

from l2gnet_monai import L2GNet, L2GNetLoss
from l2gnet_monai.networks import count_flops as package_count_flops
from l2gnet_monai.networks import count_parameters

BASELINE = "flexunet"
TARGET_RATIO = 1.15
NUM_CLASSES = 9
#: TransUNet (R50-ViT-B/16) as published, for reference; not built here.
TRANSUNET_PARAMS_M = 105.0
L2GNET_PARTS = ("encoder", "pre_bottleneck", "quantizer", "mapper", "post_bottleneck", "decoder", "segmentation_head")
FLEXUNET_PARTS = ("encoder", "decoder", "segmentation_head")


def build_network(name: str, size: int) -> nn.Module:
    """One of the compared networks, randomly initialised, for ``size x size`` inputs."""
    if name == "l2gnet":
        return L2GNet(out_channels=NUM_CLASSES)
    if name == "l2gnet-full":
        return L2GNet(out_channels=NUM_CLASSES, mapper_mode="full", reference_grid=size // 16)
    if name == "l2gnet-k3":
        return L2GNet(out_channels=NUM_CLASSES, bottleneck_kernel_size=3)
    if name == BASELINE:
        return FlexibleUNet(in_channels=1, out_channels=NUM_CLASSES, backbone="resnet50", pretrained=False)
    raise ValueError(f"unknown network {name!r}.")


def count_flops(net: nn.Module, size: int, device: torch.device) -> Dict[str, float]:
    """Forward FLOPs for one ``size x size`` slice, in total (``"total"``) and per direct child module
    (:func:`l2gnet_monai.networks.count_flops`)."""
    return {name: float(flops) for name, flops in package_count_flops(net, (1, 1, size, size), device).items()}


def make_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.01) -> Callable[[], None]:
    """A closure running one SGD training step of ``net`` on the batch ``(x, y)``.

    The loss is the bundle's: ``L2GNetLoss(network=net)`` (Dice + CE + the quantization loss) for L2GNet,
    its plain Dice + CE for FlexibleUNet.
    """
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = L2GNetLoss(network=net if isinstance(net, L2GNet) else None)
    net.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    return step


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0: leave torch's default)")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: 4 on CPU, 24 on CUDA)")
    parser.add_argument("--size", type=int, default=224, help="side of the square input slices")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (the first initialises the codebook)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds")
    parser.add_argument("--ablations", action="store_true", help="also time the full mapper and 3x3 bottleneck")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 warm-up and 3 timed rounds")
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.batch <= 0:
        args.batch = 24 if args.device == "cuda" else 4
    if args.quick:
        args.warmup, args.repeats = 1, 3
    return args


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark and print the tables."""
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    info = machine_info(device)
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    names = ["l2gnet", BASELINE] + (["l2gnet-full", "l2gnet-k3"] if args.ablations else [])
    print(
        f"networks {names}, batch {args.batch}, {args.size}x{args.size}, {args.warmup} warm-up + {args.repeats} rounds"
    )

    torch.manual_seed(0)
    nets = {name: build_network(name, args.size).to(device) for name in names}
    params = {name: count_parameters(net) for name, net in nets.items()}
    flops = {name: count_flops(net, args.size, device) for name, net in nets.items()}

    x = torch.randn(args.batch, 1, args.size, args.size, device=device)
    y = torch.randint(0, NUM_CLASSES, (args.batch, 1, args.size, args.size), device=device)
    steps = {name: make_step(net, x, y) for name, net in nets.items()}

    for _ in range(args.warmup):
        for name in names:
            timed(steps[name], device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(steps[name], device))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {1000 * times[n][-1]:.0f} ms" for n in names), flush=True)

    peak: Dict[str, float] = {}
    if device.type == "cuda":  # one more step each, for its peak memory (on CPU see bottleneck_scaling.py)
        for name in names:
            # gradients freed first: the peak counts activations, gradients and temporaries of one step,
            # not the weights and momentum buffers that stay allocated between steps
            nets[name].zero_grad(set_to_none=True)
            with PeakMemory(device) as meter:
                steps[name]()
            peak[name] = meter.mib

    rows: List[List[Any]] = []
    results: Dict[str, Dict[str, Any]] = {}
    for name in names:
        ratio = median([a / b for a, b in zip(times[name], times[BASELINE])])
        vs_l2gnet = median([a / b for a, b in zip(times[name], times["l2gnet"])])
        results[name] = {
            "params": params[name],
            "gflops_per_slice": flops[name]["total"] / 1e9,
            "flops_by_module": flops[name],
            "step_ms": 1000 * median(times[name]),
            "step_times_s": times[name],
            "ratio_vs_flexunet": ratio,
            "ratio_vs_l2gnet": vs_l2gnet,
            "peak_mib": peak.get(name, float("nan")),
        }
        rows.append(
            [
                name,
                params[name] / 1e6,
                flops[name]["total"] / 1e9,
                1000 * median(times[name]),
                ratio,
                vs_l2gnet,
                peak.get(name, float("nan")),
            ]
        )
    rows.append(
        ["TransUNet R50-ViT-B/16 (published)", TRANSUNET_PARAMS_M, float("nan"), float("nan")] + [float("nan")] * 3
    )
    print()
    print(
        format_table(
            ["network", "params M", "GFLOPs/slice", "step ms", "/ flexunet", "/ l2gnet", "peak MiB"],
            rows,
        )
    )

    for name in names:
        parts = L2GNET_PARTS if name.startswith("l2gnet") else FLEXUNET_PARTS
        total = flops[name]["total"]
        print()
        print(
            format_table(
                [f"{name} module", "GFLOPs", "share %"],
                [[part, flops[name][part] / 1e9, 100 * flops[name][part] / total] for part in parts]
                + [["total", total / 1e9, 100.0]],
            )
        )

    info["cpu_pressure_end"] = cpu_pressure()
    print(
        f"\nCPU pressure (share of time runnable tasks waited, 10/60/300 s): start {info['cpu_pressure_start']}, "
        f"end {info['cpu_pressure_end']}"
    )
    ratio = results["l2gnet"]["ratio_vs_flexunet"]
    target = {"value": ratio, "target": TARGET_RATIO, "pass": bool(ratio <= TARGET_RATIO)}
    print()
    print(f"{'PASS' if target['pass'] else 'FAIL'}: step time L2GNet / FlexibleUNet = {ratio:.3f} (target <= 1.15)")
    info["contention_warning"] = contention_warning([info["cpu_pressure_start"], info["cpu_pressure_end"]])
    if info["contention_warning"]:
        print(info["contention_warning"])
    write_json(
        args.json,
        {
            "benchmark": "train_step",
            "machine": info,
            "args": vars(args),
            "transunet_params_published": TRANSUNET_PARAMS_M * 1e6,
            "results": results,
            "target": target,
        },
    )


if __name__ == "__main__":
    main()
