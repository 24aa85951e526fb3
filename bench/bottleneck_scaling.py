# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Scaling of the bottleneck with the number of positions ``n``: L2GMapper against self-attention.

Four bottlenecks of width 1024 map a feature map ``(B, 1024, s, s)`` to a map of the same shape,
``n = s * s`` positions:

* ``mapper-pooled``: ``L2GMapper(mode="pooled")``, 4 references of ``t = 8 x 8 = 64`` elements;
* ``mapper-full``: ``L2GMapper(mode="full")``, 4 references of ``t = n`` elements (one bin per position);
* ``mha``: ``torch.nn.MultiheadAttention(1024, 16)`` called with ``need_weights=True`` (its default), which
  makes it materialise the ``(heads, n, n)`` attention weights, as TransUNet's bottleneck does;
* ``sdpa``: the same q/k/v and output projections around
  ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels that never store the weights).

After 3 warm-up rounds of all variants at ``s = 14`` (library initialisation), for every ``n`` the script
measures, interleaving the variants round by round (the first variant of a round rotates) after
``--warmup`` untimed rounds: the time of a training-mode forward + backward pass (loss ``mean(y^2)``, input
gradient included), the time of an eval-mode forward pass under ``torch.no_grad``, and, each in a fresh
process, the peak memory of one training-mode forward + backward pass after one untimed one (see
``bench/_common.py`` for the method). It prints the medians, the log-log slope of time against ``n``
(least squares over all sizes, and between the two largest) and two targets:

* the pooled mapper's forward + backward time grows at most like ``n^1.15``;
* at the largest ``n`` (4096 by default) the pooled mapper's peak memory is at most 1/10 of naive
  attention's (``mha``).

Run ``python bench/bottleneck_scaling.py --help`` for the options; ``bench/README.md`` has examples.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List

import torch
from _common import (
    CPU_MEMORY_ENV,
    PeakMemory,
    contention_warning,
    cpu_pressure,
    format_table,
    loglog_slope,
    machine_info,
    median,
    round_order,
    rss_probe_mib,
    setup_device,
    timed,
    write_json,
)
from torch import nn

from l2gnet_monai.networks.l2g_mapper import L2GMapper

VARIANTS = ("mapper-pooled", "mapper-full", "mha", "sdpa")
CHANNELS = 1024
HEADS = 16
SLOPE_TARGET = 1.15
MEMORY_TARGET = 0.1


class TokenAttention(nn.Module):
    """Multi-head self-attention over the positions of a feature map, ``(B, C, *S) -> (B, C, *S)``.

    Args:
        channels: feature width ``C`` (the attention's embedding dimension).
        heads: number of heads.
        kind: ``"mha"`` for ``nn.MultiheadAttention`` with ``need_weights=True`` (explicit ``n x n``
            weights), ``"sdpa"`` for ``scaled_dot_product_attention`` with the same projections.
    """

    def __init__(self, channels: int, heads: int, kind: str) -> None:
        super().__init__()
        if kind not in ("mha", "sdpa"):
            raise ValueError(f"TokenAttention: kind must be 'mha' or 'sdpa', got {kind!r}.")
        self.kind = kind
        self.heads = heads
        if kind == "mha":
            self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        else:
            self.qkv = nn.Linear(channels, 3 * channels)
            self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the ``n = prod(S)`` positions of ``x``."""
        batch, channels = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (B, n, C)
        if self.kind == "mha":
            attended = self.attention(tokens, tokens, tokens, need_weights=True)[0]
        else:
            n = tokens.shape[1]
            qkv = self.qkv(tokens).view(batch, n, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
            attended = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, n, d)
            attended = self.out(attended.transpose(1, 2).reshape(batch, n, channels))
        return attended.transpose(1, 2).reshape(x.shape)


def build_variant(name: str, size: int) -> nn.Module:
    """The bottleneck ``name`` (one of :data:`VARIANTS`) for ``size x size`` feature maps."""
    if name in ("mapper-pooled", "mapper-full"):
        pooled = name == "mapper-pooled"
        return L2GMapper(
            2,
            in_channels=CHANNELS,
            out_channels=CHANNELS,
            num_references=4,
            reference_grid=8 if pooled else size,
            mode="pooled" if pooled else "full",
            num_anchors=256,
            sinkhorn_iterations=10,
        )
    if name in ("mha", "sdpa"):
        return TokenAttention(CHANNELS, HEADS, name)
    raise ValueError(f"unknown variant {name!r}, expected one of {VARIANTS}.")


def training_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A closure running one training-mode forward + backward pass (gradients reset first)."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).square().mean().backward()

    return run


def inference_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A closure running one forward pass without autograd."""

    def run() -> None:
        with torch.no_grad():
            module(x)

    return run


def interleaved_times(
    steps: Dict[str, Callable[[], None]], device: torch.device, warmup: int, budget_s: float, repeats: List[int]
) -> Dict[str, List[float]]:
    """Time every step in rounds (A B C D, B C D A, ...) after ``warmup`` untimed rounds.

    The number of rounds is ``budget_s`` divided by the duration of the last warm-up round, clipped to
    ``repeats = [min, max]``.
    """
    names = list(steps)
    round_s = 0.0
    for _ in range(warmup):
        round_s = sum(timed(steps[name], device) for name in names)
    rounds = repeats[0] if round_s <= 0 else int(min(max(math.ceil(budget_s / round_s), repeats[0]), repeats[1]))
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in round_order(names, r):
            times[name].append(timed(steps[name], device))
    return times


def memory_worker(args: argparse.Namespace) -> None:
    """Entry point of the measuring process: print the peak memory (MiB) of one forward + backward pass."""
    device = setup_device(args.device, args.threads)
    if args.memory_worker == "probe":
        print(json.dumps({"mib": rss_probe_mib(device)}))
        return
    size = args.sizes[0]
    torch.manual_seed(0)
    module = build_variant(args.memory_worker, size).to(device).train()
    x = torch.randn(args.batch, CHANNELS, size, size, device=device, requires_grad=True)
    small = torch.randn(args.batch, CHANNELS, 4, 4, device=device, requires_grad=True)
    for _ in range(2):  # initialise the libraries (thread pools, kernel caches) on a tiny input
        training_step(module, small)()
    del small
    step = training_step(module, x)
    for _ in range(args.memory_warmup):  # first-call allocations at this size (a few MiB) stay out of the peak
        step()
    module.zero_grad(set_to_none=True)
    x.grad = None
    gc.collect()
    with PeakMemory(device) as peak:
        step()
    print(json.dumps({"mib": peak.mib}))


def measure_memory(args: argparse.Namespace, variant: str, size: int) -> float:
    """Run :func:`memory_worker` in a fresh process and return its peak memory in MiB."""
    command = [sys.executable, os.path.abspath(__file__), "--memory-worker", variant, "--sizes", str(size)]
    command += ["--batch", str(args.batch), "--device", args.device, "--threads", str(args.threads)]
    command += ["--memory-warmup", str(args.memory_warmup)]
    env = dict(os.environ, **CPU_MEMORY_ENV)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory worker {variant} s={size} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["mib"])


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0: leave torch's default)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="feature-map sides s, n = s*s (default 14 28 32 64)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed rounds per size and phase")
    parser.add_argument("--repeats", type=int, nargs=2, default=[3, 20], metavar=("MIN", "MAX"), help="rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--memory-warmup", type=int, default=1, help="full-size steps before the measured one")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: sizes 14 28 32 48 unless given, budget 2 s, 2-5 rounds"
    )
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    parser.add_argument("--memory-worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [14, 28, 32, 48] if args.quick else [14, 28, 32, 64]
    if args.quick:
        args.budget, args.repeats = 2.0, [2, 5]
    return args


def main(argv: List[str] | None = None) -> None:
    """Run the benchmark and print the tables."""
    args = parse_args(argv)
    if args.memory_worker:
        memory_worker(args)
        return
    device = setup_device(args.device, args.threads)
    info = machine_info(device)
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"batch {args.batch}, width {CHANNELS}, sizes {args.sizes}, variants {args.variants}")
    probe = float("nan")
    if not args.no_memory:
        probe = rss_probe_mib(device) if device.type == "cuda" else measure_memory(args, "probe", 0)
        print(f"memory method check: a 256 MiB tensor measures {probe:.1f} MiB")

    torch.manual_seed(0)
    warm = {name: build_variant(name, 14).to(device).train() for name in args.variants}
    small = torch.randn(args.batch, CHANNELS, 14, 14, device=device, requires_grad=True)
    interleaved_times({k: training_step(m, small) for k, m in warm.items()}, device, 3, 0.0, [0, 0])
    del warm, small

    results: List[Dict[str, Any]] = []
    for size in args.sizes:
        n = size * size
        torch.manual_seed(0)
        modules = {name: build_variant(name, size).to(device) for name in args.variants}
        x = torch.randn(args.batch, CHANNELS, size, size, device=device, requires_grad=True)
        for module in modules.values():
            module.train()
        train_times = interleaved_times(
            {k: training_step(m, x) for k, m in modules.items()}, device, args.warmup, args.budget, args.repeats
        )
        for module in modules.values():
            module.eval()
        eval_times = interleaved_times(
            {k: inference_step(m, x) for k, m in modules.items()}, device, args.warmup, args.budget, args.repeats
        )
        del modules, x
        pressure = cpu_pressure()
        print(f"  n={n}: CPU pressure after timing {pressure}", flush=True)
        for name in args.variants:
            row: Dict[str, Any] = {
                "variant": name,
                "s": size,
                "n": n,
                "train_ms": 1000 * median(train_times[name]),
                "eval_ms": 1000 * median(eval_times[name]),
                "train_times_s": train_times[name],
                "eval_times_s": eval_times[name],
                "peak_mib": float("nan") if args.no_memory else measure_memory(args, name, size),
                "cpu_pressure_after_timing": pressure,
            }
            if "mha" in train_times:
                ratios = [a / b for a, b in zip(train_times[name], train_times["mha"])]
                row["train_vs_mha"] = median(ratios)
            results.append(row)
            print(
                f"  n={n:5d} {name:14s} fwd+bwd {row['train_ms']:9.1f} ms  fwd {row['eval_ms']:9.1f} ms  "
                f"peak {row['peak_mib']:8.1f} MiB  ({len(train_times[name])}/{len(eval_times[name])} rounds)",
                flush=True,
            )

    headers = ["variant", "n", "fwd+bwd ms", "fwd ms", "peak MiB (fwd+bwd)", "fwd+bwd / mha"]
    rows = [
        [r["variant"], r["n"], r["train_ms"], r["eval_ms"], r["peak_mib"], r.get("train_vs_mha", float("nan"))]
        for r in results
    ]
    print()
    print(format_table(headers, rows))

    slopes: Dict[str, Dict[str, float]] = {}
    for name in args.variants:
        mine = [r for r in results if r["variant"] == name]
        ns = [r["n"] for r in mine]
        slopes[name] = {key: loglog_slope(ns, [r[key] for r in mine]) for key in ("train_ms", "eval_ms", "peak_mib")}
        # the exponent between the two largest sizes, where fixed costs matter least
        slopes[name]["train_ms_largest_two"] = loglog_slope(ns[-2:], [r["train_ms"] for r in mine[-2:]])
    print()
    print(
        format_table(
            ["variant", "slope fwd+bwd", "slope fwd", "slope peak memory", "fwd+bwd slope, 2 largest n"],
            [[k, v["train_ms"], v["eval_ms"], v["peak_mib"], v["train_ms_largest_two"]] for k, v in slopes.items()],
        )
    )

    targets: Dict[str, Any] = {}
    if "mapper-pooled" in slopes and len(args.sizes) > 1:
        slope = slopes["mapper-pooled"]["train_ms"]
        targets["pooled_slope"] = {"value": slope, "target": SLOPE_TARGET, "pass": bool(slope <= SLOPE_TARGET)}
    if not args.no_memory and {"mapper-pooled", "mha"} <= set(args.variants):
        largest = max(args.sizes) ** 2
        pooled = next(r["peak_mib"] for r in results if r["variant"] == "mapper-pooled" and r["n"] == largest)
        naive = next(r["peak_mib"] for r in results if r["variant"] == "mha" and r["n"] == largest)
        ratio = pooled / naive
        targets["pooled_memory_vs_mha"] = {"n": largest, "value": ratio, "target": MEMORY_TARGET, "pass": ratio <= 0.1}
    info["cpu_pressure_end"] = cpu_pressure()
    print(
        f"\nCPU pressure (share of time runnable tasks waited, 10/60/300 s): start {info['cpu_pressure_start']}, "
        f"end {info['cpu_pressure_end']}"
    )
    pressures = [info["cpu_pressure_start"], info["cpu_pressure_end"]]
    pressures += [r["cpu_pressure_after_timing"] for r in results]
    warning = contention_warning(pressures)
    info["contention_warning"] = warning
    print()
    for key, target in targets.items():
        verdict = "PASS" if target["pass"] else "FAIL"
        print(f"{verdict}: {key} = {target['value']:.3f} (target <= {target['target']})")
    if warning:
        print(warning)

    write_json(
        args.json,
        {
            "benchmark": "bottleneck_scaling",
            "machine": info,
            "args": {k: v for k, v in vars(args).items() if k != "memory_worker"},
            "memory_probe_256mib": probe,
            "results": results,
            "slopes": slopes,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
