# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Data: the synthetic CT phantom, dataset preparation for Synapse and ACDC, datalists and slice datasets.

Names are imported from their modules on first use, so that ``l2gnet_monai.data.msd`` (used by the
command-line interface) loads without torch and MONAI.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DatalistError": "l2gnet_monai.data.datalist",
    "check_datalist": "l2gnet_monai.data.datalist",
    "dataset_labels": "l2gnet_monai.data.datalist",
    "dataset_modality": "l2gnet_monai.data.datalist",
    "dataset_num_classes": "l2gnet_monai.data.datalist",
    "list_images": "l2gnet_monai.data.datalist",
    "load_split": "l2gnet_monai.data.datalist",
    "resolve_datalist": "l2gnet_monai.data.datalist",
    "SliceDataset": "l2gnet_monai.data.slices",
    "check_batches": "l2gnet_monai.data.slices",
    "ensure_phantom_dataset": "l2gnet_monai.data.phantom.cache",
    "generate_phantom_dataset": "l2gnet_monai.data.phantom.generate",
    "DatasetError": "l2gnet_monai.data.errors",
    "one_line": "l2gnet_monai.data.errors",
    "detect_layout": "l2gnet_monai.data.prepare",
    "prepare_dataset": "l2gnet_monai.data.prepare",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'l2gnet_monai.data' has no attribute {name!r}")
