# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Weights plumbing shared by the package's parts: whether a network's weights changed since they were last seen.

The engine's compiled and ``channels_last`` copies (:mod:`~l2gnet_monai.inference`) and the checkpoint loader that
skips a file the network already holds (:mod:`~l2gnet_monai.planning.weights`) both ask it.
"""

from __future__ import annotations

import itertools
from typing import Tuple

from torch import nn

__all__ = ["weights_version"]


def weights_version(network: nn.Module) -> Tuple[Tuple[int, int], ...]:
    """Identity and in-place version of every parameter and buffer of ``network``.

    Changes when an optimizer step, ``load_state_dict``, a batch norm in training mode or ``.to()`` changes a
    weight, and is cheap to compute (no tensor data is read).
    """
    return tuple((t.data_ptr(), t._version) for t in itertools.chain(network.parameters(), network.buffers()))
