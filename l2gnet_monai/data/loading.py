# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""How many worker processes a ``DataLoader`` gets on this machine."""

from __future__ import annotations

import os

__all__ = ["default_num_workers"]


def default_num_workers(limit: int = 4) -> int:
    """``limit`` loader workers, or fewer: as many as the CPUs this process may run on.

    More workers than CPUs only compete with the network for the same cores (and torch warns about it).

    Args:
        limit: the most workers wanted (the bundle's GPU setting).
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(0, min(int(limit), available))
