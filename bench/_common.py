# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Helpers shared by the benchmark scripts: device set-up, timing, peak memory, statistics and output.

Peak memory is measured the same way on both kinds of device, for one workload in a fresh process:

* CUDA: ``torch.cuda.reset_peak_memory_stats`` after the module and the inputs exist, then
  ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` (bytes allocated by tensors
  during the workload, at their peak);
* CPU: the process's resident set. Writing ``5`` to ``/proc/self/clear_refs`` resets the high-water mark
  ``VmHWM`` to the current ``VmRSS`` (Linux >= 4.0); after the workload ``VmHWM - VmRSS(before)`` is the
  peak of the memory the workload added. glibc keeps freed blocks below its (adaptive) mmap threshold
  for reuse, which would make the resident set lag behind the live tensors; the scripts therefore start
  the measuring process with ``MALLOC_MMAP_THRESHOLD_`` fixed (:data:`CPU_MEMORY_ENV`), so that every
  tensor above 128 KiB is its own mapping and is returned to the system when freed.
  :func:`rss_probe_mib` checks the method on a tensor of known size.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any, Callable, Dict, List, Optional

import torch

__all__ = [
    "CPU_MEMORY_ENV",
    "PeakMemory",
    "contention_warning",
    "cpu_pressure",
    "format_table",
    "loglog_slope",
    "machine_info",
    "median",
    "rss_probe_mib",
    "setup_device",
    "synchronize",
    "timed",
    "write_json",
]

#: Environment of the processes that measure peak memory on CPU (see the module docstring).
CPU_MEMORY_ENV: Dict[str, str] = {"MALLOC_MMAP_THRESHOLD_": "131072"}

MIB = 1024.0 * 1024.0

#: ``inference.json`` overrides of a small L2GNet (ResNet18, codebook 64 x 128, q = 2) on 64 x 64 slices: the
#: network of the benchmarks that measure what surrounds the network rather than the network itself.
SMALL_NETWORK_OVERRIDE: Dict[str, Any] = {
    "network_def#backbone": "resnet18",
    "network_def#codebook_size": 64,
    "network_def#codebook_dim": 128,
    "network_def#num_references": 2,
    "network_def#reference_grid": 2,
    "slice_size": [64, 64],
}


def setup_device(device: str, threads: int) -> torch.device:
    """Check that ``device`` (``"cpu"`` or ``"cuda"``) is usable and set the number of CPU threads."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch.cuda.is_available() is False.")
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn``, with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def round_order(names: Sequence[str], round_index: int) -> List[str]:
    """The order of the variants in interleaved round ``round_index``: ``names`` rotated to start at that index
    (A B C, B C A, C A B, ...), so that every variant meets every position, and the conditions that go with it."""
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (``nan`` if there are none)."""
    return statistics.median(values) if values else float("nan")


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log(y)`` against ``log(x)``: the empirical exponent ``k`` of ``y ~ x^k``."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return float("nan")
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    sxx = sum((p[0] - mean_x) ** 2 for p in points)
    sxy = sum((p[0] - mean_x) * (p[1] - mean_y) for p in points)
    return sxy / sxx


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field.")


class PeakMemory:
    """Context manager: the peak memory (MiB) that the enclosed workload adds, in ``self.mib``.

    On CUDA it reads the caching allocator's statistics, on CPU the process's resident set (see the
    module docstring; the CPU variant needs a fresh process started with :data:`CPU_MEMORY_ENV`).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = float("nan")
        self._before = 0

    def __enter__(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current VmRSS
            self._before = _proc_status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc_info: object) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status_kib("VmHWM") * 1024
        self.mib = (peak - self._before) / MIB


def rss_probe_mib(device: torch.device, size_mib: int = 256) -> float:
    """Peak memory measured by :class:`PeakMemory` for filling a float32 tensor of ``size_mib`` MiB.

    A correct method gives ``size_mib`` (plus a little bookkeeping).
    """
    with PeakMemory(device) as peak:
        probe = torch.ones(size_mib * 1024 * 1024 // 4, device=device)
        synchronize(device)
        del probe
    return peak.mib


def cpu_pressure() -> str:
    """Linux's CPU pressure (``/proc/pressure/cpu``, "some" line): the share of time in which runnable tasks
    waited for a CPU over the last 10, 60 and 300 s. High values mean that other processes competed for the
    cores during the measurement."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            some = pressure.readline().split()
    except OSError:
        return "n/a"
    return " ".join(field for field in some[1:4])


def contention_warning(pressures: Sequence[str], limit: float = 10.0) -> str:
    """A warning when any of the :func:`cpu_pressure` readings has ``avg10`` or ``avg60`` above ``limit`` %.

    Returns an empty string otherwise. Timings taken under such contention are unreliable (see
    ``bench/README.md``); peak memory is not affected.
    """
    worst = 0.0
    for reading in pressures:
        for field in reading.split()[:2]:
            if field.startswith(("avg10=", "avg60=")):
                worst = max(worst, float(field.split("=")[1]))
    if worst <= limit:
        return ""
    return (
        f"WARNING: CPU pressure reached {worst:.0f}% (other processes competed for the cores): the timings "
        "of this run are unreliable; rerun on a quiet machine or with OMP_WAIT_POLICY=PASSIVE."
    )


def machine_info(device: torch.device) -> Dict[str, Any]:
    """Description of the machine and software the numbers come from."""
    import monai

    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "device": str(device),
        "cpu_pressure_start": cpu_pressure(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable as plain text too); floats are printed with 3 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    text_rows: List[List[str]] = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in text_rows]
    return "\n".join(lines)


def write_json(path: Optional[str], payload: Dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` as indented JSON (nothing if ``path`` is empty)."""
    if path:
        with open(path, "w") as out:
            json.dump(payload, out, indent=2)
        print(f"results written to {path}")
