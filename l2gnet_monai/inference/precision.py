# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The precision of inference: float32, or autocast in bfloat16 or float16 where the device computes it natively.

``"auto"`` runs the network under ``torch.autocast`` in bfloat16 on CPUs with native bf16 arithmetic (AVX-512 BF16
or AMX) and on GPUs of compute capability >= 8.0, in float16 on older GPUs, and in float32 otherwise.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import torch

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "resolve_precision"]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX tiles).

    Asks torch's own CPU feature detection (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``), else reads the ``avx512_bf16`` / ``amx_bf16`` flags of
    ``/proc/cpuinfo``. Without native support, bf16 is emulated and slower than float32.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: Union[torch.device, str]) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``, ``torch.float16`` or ``None`` (fp32).

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: where the network runs.

    Returns:
        ``None`` for float32, else the dtype to pass to ``torch.autocast``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}.")
    device = torch.device(device)
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            logger.warning("precision 'bf16': this CPU has no native bf16 (AVX-512 BF16 / AMX); it will be slow.")
        return _DTYPES[precision]
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None
