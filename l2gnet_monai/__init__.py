# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""L2GNet for MONAI: an optimal-transport bottleneck for medical image segmentation.

``from l2gnet_monai import L2GNet, L2GNetLoss``. The network classes are imported on first use, so the
command-line interface starts without loading torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# OpenMP threads that wait for work spin by default; on a machine shared with other jobs that made a training
# step several times slower (docs/benchmarks.md). The runtime reads the policy once, when torch loads it, so
# this default only applies where l2gnet_monai is imported before torch (the l2gnet-monai command line); set
# OMP_WAIT_POLICY yourself for `python -m monai.bundle` (README, quick start). An explicit value is kept.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "L2GNet": "l2gnet_monai.networks",
    "L2GMapper": "l2gnet_monai.networks",
    "L2GNetLoss": "l2gnet_monai.losses",
}

__all__ = ["L2GNet", "L2GMapper", "L2GNetLoss", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'l2gnet_monai' has no attribute {name!r}")
