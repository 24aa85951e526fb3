# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Slice-by-slice inference tuned for the machine: precision, memory format, batch size and compilation.

* :mod:`~l2gnet_monai.inference.engine`: :class:`TunedSliceInferer`, MONAI's ``SliceInferer`` with those choices
  made for the device;
* :mod:`~l2gnet_monai.inference.compilation`: ``torch.compile`` with frozen weights for inference;
* :mod:`~l2gnet_monai.inference.precision` and :mod:`~l2gnet_monai.inference.batch_size`: the precision and the
  batch size it chooses.

May import torch and MONAI only: any 2-D network runs through it.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "PRECISIONS": "l2gnet_monai.inference.precision",
    "BatchSizeChoice": "l2gnet_monai.inference.engine",
    "TunedSliceInferer": "l2gnet_monai.inference.engine",
    "cpu_has_native_bf16": "l2gnet_monai.inference.precision",
    "measure_batch_size": "l2gnet_monai.inference.batch_size",
    "resolve_precision": "l2gnet_monai.inference.precision",
    "COMPILE_LOCK": "l2gnet_monai.inference.compilation",
    "CompilationError": "l2gnet_monai.inference.compilation",
    "CompiledInference": "l2gnet_monai.inference.compilation",
    "compiler_available": "l2gnet_monai.inference.compilation",
    "detached_copy": "l2gnet_monai.inference.compilation",
    "weights_version": "l2gnet_monai.inference.compilation",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
