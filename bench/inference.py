# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Slice inference speed of L2GNet and FlexibleUNet (ResNet50) per setting, and the bundle's whole volume path.

**Network table.** A volume of ``--slices`` slices of ``--size`` x ``--size`` goes through ``SliceInferer``
in each setting:

* ``monai-defaults``: ``SliceInferer(sw_batch_size=1)``, contiguous, float32 (what a MONAI user gets);
* ``bundle-before``: ``SliceInferer(sw_batch_size=24)``, contiguous, float32 (the bundle before the engine);
* ``batch+cl-fp32``: :class:`~l2gnet_monai.inference.TunedSliceInferer` in float32 with ``channels_last`` and
  the batch size the engine measured;
* ``batch+cl-bf16``: the same under ``torch.autocast(bfloat16)``;
* ``engine-auto``: the engine as the bundle configures it for a first volume (``precision="auto"``, measured
  batch size, eager);
* ``compiled-fp32``: ``batch+cl-fp32`` compiled (``compile=True``: ``torch.compile``, weights frozen);
* ``engine-compiled``: ``engine-auto`` compiled, what the bundle's ``compile: "auto"`` runs once a folder or a
  server has spent its eager budget. The compilation happens in the warm-up round; its time is reported apart.

The machine's dense matmul peaks (``torch.mm`` of ``--matmul`` square matrices, float32 and bfloat16; the best
round) are timed in the same interleaved rounds, so that the networks' throughput can be read as a share of the peak
of the precision they ran in (forward FLOPs per slice from ``FlopCounterMode``). Reported: medians over the
rounds, and the median over rounds of each setting's speed-up on MONAI's defaults.

**End to end.** The bundle's ``inference.json`` components (preprocessing, engine, postprocessing) on one
CT-like volume of ``--volume`` voxels saved as NIfTI, timed stage by stage: load, reorient, window, resize,
slice inference, softmax + invert + argmax, save; after ``--e2e-warmup`` untimed passes (the engine measures its
batch size on its first volume), eager or, with ``--e2e-compile true``, compiled as ``compile: "auto"`` runs once
a folder or a server has spent its eager budget.

**Inversion, before and after** (``--invert-rounds N``, on the same volume and the network's logits of the end to
end run): the resize and the way back to a label map in the original grid, in interleaved rounds: MONAI's
``Resized`` + ``Activationsd``/``Invertd``/``AsDiscreted`` (the bundle before), ``ResizeSlicesd`` with the same
three MONAI transforms, and ``ResizeSlicesd`` + ``InvertToLabelsd`` (the bundle now); medians, the speed-up on the
first, and the share of voxels whose label agrees with it.

``--quick`` is a smoke run (small networks, 64 x 64 slices, one round, one inversion round, no compiled settings)
for CI; it checks the plumbing, not the speed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import nibabel as nib
import numpy as np
import torch
from _common import (
    contention_warning,
    cpu_pressure,
    format_table,
    machine_info,
    median,
    round_order,
    setup_device,
    synchronize,
    timed,
    write_json,
)
from monai.bundle import ConfigParser
from monai.inferers import SliceInferer
from monai.networks.nets import FlexibleUNet
from monai.transforms import Activationsd, AsDiscreted, Compose, Invertd, Resized
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from l2gnet_monai import L2GNet
from l2gnet_monai.inference.engine import TunedSliceInferer, cpu_has_native_bf16, resolve_precision
from l2gnet_monai.transforms.invert import InvertToLabelsd
from l2gnet_monai.transforms.slice_resize import ResizeSlicesd, volume_size

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 9
BASELINE = "monai-defaults"
SETTINGS = ("monai-defaults", "bundle-before", "batch+cl-fp32", "batch+cl-bf16", "engine-auto")
COMPILED_SETTINGS = ("compiled-fp32", "engine-compiled")
CPU_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx2")


def build_network(name: str, quick: bool) -> nn.Module:
    """L2GNet (the paper's configuration) or FlexibleUNet (ResNet50), random weights, in eval mode."""
    if name == "l2gnet":
        kwargs = {"backbone": "resnet18", "codebook_size": 64, "codebook_dim": 128} if quick else {}
        net = L2GNet(out_channels=NUM_CLASSES, **kwargs)
        net.train()
        with torch.no_grad():
            net(torch.randn(2, 1, 64, 64))  # initialises the codebook from encoder outputs, as training does
    elif name == "flexunet":
        net = FlexibleUNet(1, NUM_CLASSES, backbone="resnet18" if quick else "resnet50", pretrained=False)
    else:
        raise ValueError(f"unknown network {name!r}.")
    return net.eval()


def forward_gflops(net: nn.Module, size: int, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.randn(1, 1, size, size, device=device))
    return counter.get_total_flops() / 1e9


def cpu_flags() -> List[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in CPU_FLAGS if f in flags]
    except OSError:
        pass
    return []


def matmul_tasks(size: int, device: torch.device) -> Dict[str, Callable[[], Any]]:
    """One ``size x size`` matrix product per dtype, as ``volume -> product`` callables (the volume is unused)."""
    tasks: Dict[str, Callable[[], Any]] = {}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    for name, dtype in dtypes.items():
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        tasks[name] = lambda volume, a=a, b=b: torch.mm(a, b)
    return tasks


def inference_settings(
    contiguous: nn.Module, tuned: nn.Module, size: int, batch: int, compiled: Sequence[str] = ()
) -> Dict[str, Callable]:
    """The compared settings as ``volume -> logits`` callables.

    ``contiguous`` is the network as MONAI users have it; ``tuned`` is a copy that the engine converts to
    ``channels_last`` (in place, on its first call); ``batch`` is the batch size the engine measured;
    ``compiled`` names the compiled settings to add (engine callables have ``inferer`` and ``network``
    attributes).
    """

    def plain(sw: int) -> Callable:
        inferer = SliceInferer(roi_size=(size, size), spatial_dim=2, sw_batch_size=sw)
        return lambda volume: inferer(volume, contiguous)

    def engine(precision: str, sw: Any, compile: bool = False) -> Callable:
        inferer = TunedSliceInferer(
            roi_size=(size, size), spatial_dim=2, sw_batch_size=sw, precision=precision, compile=compile
        )

        def run(volume: torch.Tensor) -> torch.Tensor:
            return inferer(volume, tuned)

        run.inferer, run.network = inferer, tuned  # type: ignore[attr-defined]
        return run

    settings = {
        "monai-defaults": plain(1),
        "bundle-before": plain(24),
        "batch+cl-fp32": engine("fp32", batch),
        "batch+cl-bf16": engine("bf16", batch),
        "engine-auto": engine("auto", "auto"),
    }
    if "compiled-fp32" in compiled:
        settings["compiled-fp32"] = engine("fp32", batch, compile=True)
    if "engine-compiled" in compiled:
        settings["engine-compiled"] = engine("auto", batch, compile=True)
    return settings


def network_table(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """Interleaved rounds of every (network, setting) and of the matmul peaks; medians and ratios."""
    size, slices = args.size, args.slices
    volume = torch.rand(1, 1, size, size, slices, device=device)
    results: Dict[str, Any] = {"networks": {}, "matmul": {}}
    tasks: Dict[str, Callable[[], Any]] = {}
    flops: Dict[str, float] = {}
    for name, fn in matmul_tasks(args.matmul, device).items():
        tasks[f"matmul-{name}"] = fn
    for net_name in args.networks:
        net = build_network(net_name, args.quick).to(device)
        flops[net_name] = forward_gflops(net, size, device)
        tuned = copy.deepcopy(net)
        engine = TunedSliceInferer(roi_size=(size, size), spatial_dim=2, precision="auto")
        with torch.no_grad():
            engine(volume, tuned)  # measures the batch size (the engine-auto setting measures it again)
        ((batch, measured),) = engine.batch_size_choices(tuned).values()
        results["networks"][net_name] = {
            "gflops_per_slice": flops[net_name],
            "engine_batch_size": batch,
            "engine_measured_slices_per_s": measured,
        }
        for setting, fn in inference_settings(net, tuned, size, batch, compiled=compiled_settings(args)).items():
            tasks[f"{net_name}/{setting}"] = fn
    times: Dict[str, List[float]] = {k: [] for k in tasks}
    names = list(tasks)
    compile_seconds: Dict[str, float] = {}
    with torch.no_grad():
        for name in names:  # warm-up (and the compilations)
            start = time.perf_counter()
            tasks[name](volume)
            inferer = getattr(tasks[name], "inferer", None)
            if inferer is not None and inferer.compile:
                compiled = inferer.compiled(tasks[name].network)  # type: ignore[attr-defined]
                compile_seconds[name] = compiled.compile_seconds if compiled else time.perf_counter() - start
        for round_index in range(args.rounds):
            order = round_order(names, round_index)
            for name in order:
                task = tasks[name]
                times[name].append(timed(lambda task=task: task(volume), device))
    for name in names:
        if name.startswith("matmul-"):
            dtype = name.split("-", 1)[1]
            tflops = [2 * args.matmul**3 / t / 1e9 for t in times[name]]
            # a peak is what the machine can do: the best round (the median mixes in other jobs' load)
            results["matmul"][dtype] = {"gflops": max(tflops), "median_gflops": median(tflops), "seconds": times[name]}
    rows = []
    for net_name in args.networks:
        base = times[f"{net_name}/{BASELINE}"]
        entry = results["networks"][net_name]
        entry["settings"] = {}
        for setting in SETTINGS + compiled_settings(args):
            t = times[f"{net_name}/{setting}"]
            dtype = _setting_dtype(setting, device)
            peak = results["matmul"].get(dtype, {}).get("gflops", float("nan"))
            slices_per_s = slices / median(t)
            speedup = median([b / x for b, x in zip(base, t)])
            share = slices_per_s * flops[net_name] / peak
            entry["settings"][setting] = {
                "seconds": t,
                "slices_per_s": slices_per_s,
                "speedup": speedup,
                "precision": dtype,
                "share_of_peak": share,
            }
            if f"{net_name}/{setting}" in compile_seconds:
                entry["settings"][setting]["compile_seconds"] = compile_seconds[f"{net_name}/{setting}"]
            rows.append([net_name, setting, dtype, slices_per_s, speedup, f"{100 * share:.0f} % of {dtype}"])
    results["table"] = format_table(
        ["network", "setting", "precision", "slices/s", "x MONAI defaults", "of matmul peak"], rows
    )
    results["matmul_table"] = format_table(
        ["dtype", "GFLOP/s (best round)", "median"],
        [[k, v["gflops"], v["median_gflops"]] for k, v in results["matmul"].items()],
    )
    return results


def compiled_settings(args: argparse.Namespace) -> Tuple[str, ...]:
    """The compiled settings that ``--compile`` asks for (none in ``--quick`` runs)."""
    if args.quick or args.compile == "none":
        return ()
    return COMPILED_SETTINGS if args.compile == "all" else ("engine-compiled",)


def _setting_dtype(setting: str, device: torch.device) -> str:
    if setting == "batch+cl-bf16":
        return "bf16"
    if setting in ("engine-auto", "engine-compiled"):
        dtype = resolve_precision("auto", device)
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return "fp32"


def ct_like_volume(path: str, shape: List[int], spacing: List[float], seed: int = 0) -> None:
    """A CT-like int16 NIfTI volume: air, an elliptic body of soft tissue with brighter organs, noise, LPS axes."""
    rng = np.random.default_rng(seed)
    h, w, d = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    body = (yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1
    organ = ((yy - 0.2) / 0.3) ** 2 + ((xx + 0.2) / 0.2) ** 2 < 1
    plane = np.where(body, 40.0, -1000.0) + np.where(organ, 60.0, 0.0)
    volume = np.repeat(plane[:, :, None], d, axis=2) + rng.normal(0, 20, (h, w, d))
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS-like: Orientationd("RAS") flips two axes
    nib.save(nib.Nifti1Image(volume.astype(np.int16), affine), path)


def end_to_end(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """The bundle's inference path on one volume, stage by stage (seconds per stage, medians of ``--e2e-rounds``)."""
    workdir = tempfile.mkdtemp(prefix="l2gnet_e2e_")
    image_path = os.path.join(workdir, "ct.nii.gz")
    ct_like_volume(image_path, args.volume, [0.7, 0.7, 2.5])
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundle", "configs", "inference.json"))
    parser["bundle_root"] = workdir
    parser["device"] = f"$torch.device('{device}')"
    parser["output_dir"] = os.path.join(workdir, "out")
    if args.quick:
        parser["slice_size"] = [args.size, args.size]
        for key, value in {"backbone": "resnet18", "codebook_size": 64, "codebook_dim": 128}.items():
            parser[f"network_def#{key}"] = value
    parser["compile"] = args.e2e_compile == "true"
    preprocessing = parser.get_parsed_content("preprocessing").transforms
    postprocessing = parser.get_parsed_content("postprocessing").transforms
    network = parser.get_parsed_content("network")
    network.eval()
    inferer = parser.get_parsed_content("inferer")
    stage_names = {
        "LoadImaged": "load",
        "CheckVoxelsd": "load",  # the voxel check of each case as it is loaded
        "EnsureChannelFirstd": "reorient",
        "Orientationd": "reorient",
        "IntensityNormalizationd": "window",
        "ResizeSlicesd": "resize",
        "EnsureTyped": "resize",
        "InvertToLabelsd": "softmax + invert + argmax",
        "SaveImaged": "save",
    }
    order = ["load", "reorient", "window", "resize", "slice inference", "softmax + invert + argmax", "save"]
    rounds: List[Dict[str, float]] = []
    for round_index in range(args.e2e_warmup + args.e2e_rounds):
        stages = dict.fromkeys(order, 0.0)
        data: Any = {"image": image_path}
        for transform in preprocessing:
            start = time.perf_counter()
            data = transform(data)
            stages[stage_names[type(transform).__name__]] += time.perf_counter() - start
        image = data["image"]
        with torch.no_grad():
            start = time.perf_counter()
            pred = inferer(image[None].to(device), network)
            synchronize(device)
            stages["slice inference"] += time.perf_counter() - start
        data = {"image": image, "pred": pred[0]}
        for transform in postprocessing:
            start = time.perf_counter()
            data = transform(data)
            stages[stage_names[type(transform).__name__]] += time.perf_counter() - start
        if round_index >= args.e2e_warmup:  # the warm-up measures the batch size (and compiles)
            rounds.append(stages)
    total = [sum(r.values()) for r in rounds]
    summary = {stage: median([r[stage] for r in rounds]) for stage in order}
    table_rows = [[stage, summary[stage], 100 * summary[stage] / median(total)] for stage in order]
    table_rows.append(["total", median(total), 100.0])
    if args.invert_rounds:
        prefix = [t for t in preprocessing if type(t).__name__ not in ("ResizeSlicesd", "EnsureTyped")]
        base: Dict[str, Any] = {"image": image_path}
        for transform in prefix:
            base = transform(base)
        comparison = invert_comparison(base, pred[0].cpu(), prefix, parser, args.invert_rounds)
    return {
        "volume": args.volume,
        "slice_size": parser.get_parsed_content("slice_size"),
        "engine_batch_size": [choice.batch_size for choice in inferer.batch_size_choices(network).values()],
        "precision": str(inferer.autocast_dtype(device)),
        "compiled": inferer.compiled(network) is not None,
        "rounds": rounds,
        "seconds": summary,
        "network_share": summary["slice inference"] / median(total),
        "table": format_table(["stage", "seconds (median)", "% of wall time"], table_rows),
        **({"invert_comparison": comparison} if args.invert_rounds else {}),
    }


def invert_comparison(
    base: Dict[str, Any], logits: torch.Tensor, prefix: List[Any], parser: ConfigParser, rounds: int
) -> Dict[str, Any]:
    """The resize and the inversion to a label map per variant, in interleaved rounds on the same image and logits.

    Args:
        base: the image after the preprocessing steps before the resize (loaded, reoriented, windowed).
        logits: ``(C, x, y, z)`` network output in the resized grid.
        prefix: the preprocessing steps that made ``base`` (their trace is inverted too).
        parser: the inference config (for the slice size and axis).
        rounds: timed rounds after one warm-up round.
    """
    size = volume_size(parser.get_parsed_content("slice_size"), parser.get_parsed_content("slice_axis"))
    softmax_invert_argmax = "Activationsd + Invertd + AsDiscreted"

    def chain(resize: Any, fused: bool) -> Dict[str, Any]:
        pre = Compose([*prefix, resize])
        if fused:
            post = InvertToLabelsd("pred", pre, orig_keys="image")
        else:
            post = Compose(
                [
                    Activationsd("pred", softmax=True),
                    Invertd("pred", pre, orig_keys="image", nearest_interp=False),
                    AsDiscreted("pred", argmax=True),
                ]
            )
        return {"resize": resize, "post": post}

    variants = {
        f"Resized + {softmax_invert_argmax} (before)": chain(Resized("image", size, mode="bilinear"), False),
        f"ResizeSlicesd + {softmax_invert_argmax}": chain(ResizeSlicesd("image", size), False),
        "ResizeSlicesd + InvertToLabelsd (bundle)": chain(ResizeSlicesd("image", size), True),
    }
    names = list(variants)
    times: Dict[str, Dict[str, List[float]]] = {n: {"resize": [], "invert": []} for n in names}
    labels: Dict[str, torch.Tensor] = {}
    for round_index in range(rounds + 1):
        order = round_order(names, round_index)
        for name in order:
            data = copy.deepcopy(base)
            start = time.perf_counter()
            data = variants[name]["resize"](data)
            resized = time.perf_counter() - start
            data["pred"] = logits.clone()
            start = time.perf_counter()
            data = variants[name]["post"](data)
            inverted = time.perf_counter() - start
            labels[name] = data["pred"]
            if round_index:  # the first round warms up
                times[name]["resize"].append(resized)
                times[name]["invert"].append(inverted)
            del data
    before = names[0]
    rows, summary = [], {}
    for name in names:
        resize_s, invert_s = median(times[name]["resize"]), median(times[name]["invert"])
        speedup = median([b / a for a, b in zip(times[name]["invert"], times[before]["invert"])])
        agreement = float((labels[name].as_tensor() == labels[before].as_tensor()).float().mean())
        summary[name] = {"resize_s": resize_s, "invert_s": invert_s, "invert_speedup": speedup, "agreement": agreement}
        rows.append([name, resize_s, invert_s, f"{speedup:.2f}x", f"{100 * agreement:.4f} %"])
    headers = ["variant", "resize s", "softmax + invert + argmax s", "speed-up (invert)", "labels = before"]
    return {"rounds": rounds, "variants": summary, "times": times, "table": format_table(headers, rows)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--networks", nargs="+", default=["l2gnet", "flexunet"], choices=["l2gnet", "flexunet"])
    parser.add_argument("--size", type=int, default=224, help="slice size")
    parser.add_argument("--slices", type=int, default=24, help="slices of the volume of the network table")
    parser.add_argument("--rounds", type=int, default=3, help="timed interleaved rounds")
    parser.add_argument("--matmul", type=int, default=2048, help="size of the square matrices of the peak")
    parser.add_argument("--volume", type=int, nargs=3, default=[512, 512, 150], help="end-to-end volume shape")
    parser.add_argument("--e2e-rounds", type=int, default=1, help="rounds of the end-to-end measurement")
    parser.add_argument("--skip-table", action="store_true", help="only the end-to-end measurement")
    parser.add_argument(
        "--invert-rounds", type=int, default=0, help="rounds of the inversion before/after comparison (0: skip)"
    )
    parser.add_argument("--skip-e2e", action="store_true", help="only the network table")
    parser.add_argument(
        "--compile",
        default="all",
        choices=["all", "engine", "none"],
        help="compiled settings: both, engine-compiled only, or none (each costs a compilation, 20-60 s on 2 cores)",
    )
    parser.add_argument(
        "--e2e-compile",
        default="false",
        choices=["false", "true"],
        help="end to end with the network compiled (the bundle's compile 'auto' once its budget is spent)",
    )
    parser.add_argument("--e2e-warmup", type=int, default=1, help="untimed passes before the end-to-end rounds")
    parser.add_argument("--quick", action="store_true", help="smoke run: small networks, 64 x 64, one round")
    parser.add_argument("--json", default="", help="write all numbers to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.slices, args.rounds, args.matmul = 64, 6, 1, 256
        args.volume = [96, 96, 6]
        args.invert_rounds = args.invert_rounds or 1
    device = setup_device(args.device, args.threads)
    info = machine_info(device)
    info["cpu_flags"] = cpu_flags()
    info["cpu_native_bf16"] = cpu_has_native_bf16()
    print(json.dumps(info))
    results: Dict[str, Any] = {"machine": info, "args": vars(args)}
    if not args.skip_table:
        table = results["network_table"] = network_table(args, device)
        print(f"\nMatmul peaks ({args.matmul} x {args.matmul}, same rounds):\n" + table["matmul_table"])
        print(f"\nSlice inference, {args.size} x {args.size} x {args.slices} volume, {args.rounds} rounds:")
        print(table["table"])
        for net_name, entry in table["networks"].items():
            for setting, values in entry["settings"].items():
                if "compile_seconds" in values:
                    print(f"{net_name}/{setting}: compiled in {values['compile_seconds']:.1f} s (warm-up round)")
    if not args.skip_e2e:
        results["end_to_end"] = end_to_end(args, device)
        e2e = results["end_to_end"]
        shape = " x ".join(map(str, args.volume))
        compiled = ", compiled" if e2e["compiled"] else ""
        print(f"\nEnd to end, {shape} volume ({e2e['precision']}, batch {e2e['engine_batch_size']}{compiled}):")
        print(e2e["table"])
        print(f"network share of the wall time: {100 * e2e['network_share']:.0f} %")
        if args.invert_rounds:
            print(f"\nResize and inversion per variant, {args.invert_rounds} interleaved rounds (medians):")
            print(e2e["invert_comparison"]["table"])
    pressures = [info["cpu_pressure_start"], cpu_pressure()]
    results["cpu_pressure_end"] = pressures[-1]
    warning = contention_warning(pressures)
    if warning:
        print(warning)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
