# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The GPU acceptance checks that ``bench/gpu_check.sh`` runs after the CUDA-only tests.

1. ``amp_training``: iterations of the paper's configuration (L2GNet with ResNet50, K=512 x 1024, q=4,
   224 x 224 slices, batch 24, SGD 0.01 / 0.9, Dice + CE + quantization loss) under autocast (bf16 where
   the device has it, else fp16 with a ``GradScaler``) on one fixed synthetic batch: the loss must stay
   finite and fall; reports the time per iteration and the peak memory.
2. ``distributed``: ``init_process_group`` with one process (NCCL on CUDA, gloo on CPU) and an all-reduce.
3. ``torchscript``: the paper's L2GNet scripted, saved, reloaded and run on the device, against eager.
4. ``inference``: ``bench/inference.py`` (slice inference per precision against MONAI's defaults for L2GNet
   and FlexibleUNet-R50, matmul peaks, end-to-end stages), in this process.

Writes ``results.json`` and ``results.md`` to the output folder (with the pytest outcome read from
``pytest.xml`` there, if present). ``--quick`` shrinks everything for a CPU smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Dict, List, Optional

import torch
from _common import format_table, machine_info, setup_device
from monai.losses import DiceCELoss

from l2gnet_monai import L2GNet
from l2gnet_monai.inference.engine import resolve_precision

HERE = os.path.dirname(os.path.abspath(__file__))


def _paper_net(quick: bool) -> L2GNet:
    if quick:
        return L2GNet(out_channels=9, backbone="resnet18", codebook_size=64, codebook_dim=128)
    return L2GNet(out_channels=9)


def _batch(batch: int, size: int, device: torch.device, seed: int = 0) -> tuple:
    """Images with 8 rectangles of distinct intensity, one per organ class, and their label map."""
    generator = torch.Generator().manual_seed(seed)
    image = 0.1 * torch.rand(batch, 1, size, size, generator=generator)
    label = torch.zeros(batch, 1, size, size, dtype=torch.long)
    for b in range(batch):
        for cls in range(1, 9):
            y, x = torch.randint(0, size - size // 6, (2,), generator=generator).tolist()
            label[b, 0, y : y + size // 6, x : x + size // 6] = cls
            image[b, 0, y : y + size // 6, x : x + size // 6] += cls / 9
    return image.to(device), label.to(device)


def amp_training(device: torch.device, quick: bool, iterations: int) -> Dict[str, Any]:
    torch.manual_seed(0)
    batch, size = (2, 64) if quick else (24, 224)
    net = _paper_net(quick).to(device).train()
    image, label = _batch(batch, size, device)
    dtype = resolve_precision("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses: List[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_fn(net(image), label) + net.pop_quantization_loss()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    window = max(1, iterations // 10)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    finite = all(math.isfinite(v) for v in losses)
    return {
        "passed": finite and last < first,
        "precision": str(dtype or "fp32"),
        "iterations": iterations,
        "batch": batch,
        "size": size,
        "first_loss": first,
        "last_loss": last,
        "seconds_per_iteration": seconds / iterations,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "losses": losses,
    }


def distributed(device: torch.device) -> Dict[str, Any]:
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.NamedTemporaryFile(delete=False) as store:
        init_method = f"file://{store.name}"
    dist.init_process_group(backend, init_method=init_method, rank=0, world_size=1)
    try:
        value = torch.full((4,), 3.0, device=device)
        dist.all_reduce(value)
        passed = bool(torch.all(value == 3.0))
    finally:
        dist.destroy_process_group()
        with contextlib.suppress(FileNotFoundError):  # the file store removes its file itself
            os.unlink(store.name)
    return {"passed": passed, "backend": backend, "nccl_version": _nccl_version() if backend == "nccl" else None}


def _nccl_version() -> Optional[str]:
    try:
        return ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # the version is informational
        return None


def torchscript(device: torch.device, quick: bool) -> Dict[str, Any]:
    torch.manual_seed(0)
    net = _paper_net(quick).to(device)
    size = 64 if quick else 224
    net.train()
    net(torch.randn(2, 1, size, size, device=device))  # initialises the codebook
    net.eval()
    x = torch.randn(2, 1, size, size, device=device)
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        path = os.path.join(folder, "model.ts")
        torch.jit.script(net).save(path)
        loaded = torch.jit.load(path, map_location=device)
        difference = float((loaded(x) - net(x)).abs().max())
    return {"passed": difference < 1e-3, "max_abs_difference": difference}


def inference(device: torch.device, quick: bool, folder: str) -> Dict[str, Any]:
    sys.path.insert(0, HERE)
    import inference as inference_bench

    path = os.path.join(folder, "inference.json")
    args = ["--device", device.type, "--json", path, "--threads", "0"]
    # one compiled setting: every compilation takes a minute or more, and the run has 8 minutes
    args += ["--quick"] if quick else ["--slices", "96", "--rounds", "5", "--matmul", "8192", "--compile", "engine"]
    inference_bench.main(args)
    with open(path) as f:
        results = json.load(f)
    table = results["network_table"]
    l2gnet = table["networks"]["l2gnet"]["settings"]
    return {
        "passed": True,
        "engine_vs_monai_defaults": {
            name: network["settings"]["engine-auto"]["speedup"] for name, network in table["networks"].items()
        },
        "l2gnet_engine_share_of_peak": l2gnet["engine-auto"]["share_of_peak"],
        "compiled_engine_vs_monai_defaults": {
            name: network["settings"]["engine-compiled"]["speedup"]
            for name, network in table["networks"].items()
            if "engine-compiled" in network["settings"]
        },
        "matmul_gflops": {k: v["gflops"] for k, v in table["matmul"].items()},
        "end_to_end_network_share": results["end_to_end"]["network_share"],
        "table": table["table"],
        "end_to_end_table": results["end_to_end"]["table"],
    }


def pytest_outcome(folder: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(folder, "pytest.xml")
    if not os.path.isfile(path):
        return None
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["failures"] == 0 and counts["errors"] == 0
    return counts


def _run(name: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as error:  # every check reports, none stops the others
        result = {"passed": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    result["wall_seconds"] = time.perf_counter() - start
    print(f"[gpu_check] {name}: {'PASS' if result['passed'] else 'FAIL'} ({result['wall_seconds']:.1f} s)", flush=True)
    return result


def markdown(results: Dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        f"# GPU check: {info.get('gpu', info['cpu'])}",
        "",
        f"{info['date']}, torch {info['torch']} (CUDA {info.get('cuda')}), MONAI {info['monai']}, "
        f"Python {info['python']}, device `{info['device']}`.",
        "",
    ]
    rows = []
    for name, result in results["checks"].items():
        detail = result.get("error", "")
        if name == "pytest_cuda" and "tests" in result:
            detail = (
                f"{result['tests']} tests, {result['failures']} failed, {result['errors']} errors, "
                f"{result['skipped']} skipped"
            )
        elif name == "amp_training" and "first_loss" in result:
            memory = result["peak_memory_gib"]
            detail = (
                f"{result['iterations']} it, batch {result['batch']} x {result['size']}^2, {result['precision']}: "
                f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}, "
                f"{1000 * result['seconds_per_iteration']:.0f} ms/it"
                + (f", peak {memory:.1f} GiB" if memory is not None else "")
            )
        elif name == "distributed" and "backend" in result:
            detail = result["backend"] + (f" (NCCL {result['nccl_version']})" if result["nccl_version"] else "")
        elif name == "torchscript" and "max_abs_difference" in result:
            detail = f"max |scripted - eager| = {result['max_abs_difference']:.2e}"
        elif name == "inference" and "engine_vs_monai_defaults" in result:
            detail = ", ".join(f"{k} {v:.2f}x MONAI defaults" for k, v in result["engine_vs_monai_defaults"].items())
            detail += f"; L2GNet at {100 * result['l2gnet_engine_share_of_peak']:.0f} % of the matmul peak"
        rows.append([name, "PASS" if result["passed"] else "FAIL", f"{result.get('wall_seconds', 0):.0f}", detail])
    lines.append(format_table(["check", "result", "s", "details"], rows))
    inference_result = results["checks"].get("inference", {})
    if "table" in inference_result:
        lines += ["", "## Slice inference", "", inference_result["table"], "", "## End to end", ""]
        lines.append(inference_result["end_to_end_table"])
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="folder for results.json and results.md")
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="small models and sizes (CPU smoke run)")
    parser.add_argument("--iterations", type=int, default=0, help="AMP training iterations (default 100, quick 5)")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    device = setup_device(args.device, 0)
    iterations = args.iterations or (5 if args.quick else 100)
    checks: Dict[str, Dict[str, Any]] = {}
    outcome = pytest_outcome(args.output)
    if outcome is not None:
        checks["pytest_cuda"] = outcome
    checks["amp_training"] = _run("amp_training", lambda: amp_training(device, args.quick, iterations))
    checks["distributed"] = _run("distributed", lambda: distributed(device))
    checks["torchscript"] = _run("torchscript", lambda: torchscript(device, args.quick))
    checks["inference"] = _run("inference", lambda: inference(device, args.quick, args.output))
    results = {"machine": machine_info(device), "quick": args.quick, "checks": checks}
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(markdown(results))
    print(markdown(results))
    return 0 if all(c["passed"] for c in checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
