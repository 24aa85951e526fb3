# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""How an evaluation ran: precision, compilation, device, versions, the checkpoint's SHA-256 and the plan.

Scores depend on more than the weights: the precision the network ran in, the device, the library versions. The
bundle's evaluation records them with its scores (``summary.json``'s ``"run"``, the "How it ran" table of
``report.html``), so that two results can be compared knowing what differed.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from typing import Any

import torch

from l2gnet_monai._files import file_sha256

__all__ = ["RUN_INFO_KEYS", "describe_device", "run_provenance"]

#: What :func:`run_provenance` takes from a bundle's config (``PaperMetricsHandler(run_info=...)``).
RUN_INFO_KEYS = ("device", "inferer", "checkpoint", "plan")


def describe_device(device: torch.device | str) -> str:
    """The device and what it is, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (AMD EPYC 7B13, 2 threads)"``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
        except OSError:
            pass
        return f"cpu ({name}, {torch.get_num_threads()} threads)"
    return str(device)


def _precision(inferer: Any, device: torch.device) -> dict[str, Any]:
    """The precision setting of ``inferer`` and the dtype it resolves to on ``device`` (float32 without autocast)."""
    setting = getattr(inferer, "precision", None)
    resolve = getattr(inferer, "autocast_dtype", None)
    if not callable(resolve):
        return {"precision": "float32" if inferer is None else "unknown", "precision_setting": setting}
    dtype = resolve(device)
    return {"precision": str(dtype or torch.float32).replace("torch.", ""), "precision_setting": setting}


def run_provenance(
    device: torch.device | str | None = None,
    inferer: Any = None,
    checkpoint: str | os.PathLike | None = None,
    plan: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What an evaluation ran with, JSON-serialisable.

    Args:
        device: the device the network ran on (``None``: the CPU).
        inferer: the inferer that ran it; its ``precision`` setting is resolved for ``device`` by its
            ``autocast_dtype`` (as :class:`~l2gnet_monai.inference.TunedSliceInferer` does), its ``compile``
            setting is recorded. ``None``: a plain float32 run.
        checkpoint: the weights' file, hashed.
        plan: the training plan of the weights (a dict, recorded as it is).

    Returns:
        ``{"precision", "precision_setting", "compile", "device", "torch", "monai", "l2gnet_monai", "python",
        "checkpoint", "checkpoint_sha256", "plan"}``; ``precision`` is the dtype the network ran in
        (``"float32"``, ``"bfloat16"``, ``"float16"``), never ``"auto"``.

    Raises:
        FileNotFoundError: ``checkpoint`` names no file.
        ValueError: ``plan`` is not a JSON-serialisable mapping.
    """
    import monai

    from l2gnet_monai import __version__

    device = torch.device(device if device is not None else "cpu")
    if plan is not None and not isinstance(plan, Mapping):
        raise ValueError(f"run_provenance: plan must be a dict (the training plan), got {type(plan).__name__}.")
    try:
        plan_record = json.loads(json.dumps(dict(plan), allow_nan=False)) if plan is not None else None
    except (TypeError, ValueError) as error:
        raise ValueError(f"run_provenance: the plan cannot be written to summary.json: {error}.") from None
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"run_provenance: checkpoint {os.fspath(checkpoint)!r} is not a file.")
    compile_setting = getattr(inferer, "compile", False)
    return {
        **_precision(inferer, device),
        "compile": compile_setting if isinstance(compile_setting, (bool, str)) else str(compile_setting),
        "device": describe_device(device),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "l2gnet_monai": __version__,
        "python": platform.python_version(),
        "checkpoint": None if checkpoint is None else os.path.abspath(checkpoint),
        "checkpoint_sha256": None if checkpoint is None else file_sha256(checkpoint),
        "plan": plan_record,
    }
