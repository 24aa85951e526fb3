# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The batch size of inference, measured: the smallest batch past which the network's throughput stops growing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Dict, Tuple

import torch

__all__ = ["measure_batch_size", "synchronize"]


def measure_batch_size(
    network: Callable[[torch.Tensor], Any],
    example: torch.Tensor,
    max_batch_size: int,
    min_gain: float = 1.1,
    repeats: int = 2,
    patience: int = 1,
) -> Tuple[int, Dict[int, float]]:
    """The batch size with the highest measured throughput of ``network`` on copies of ``example``.

    Tries 1, 2, 4, ... up to ``max_batch_size`` (each once to warm up, then ``repeats`` timed calls, best
    kept). A size becomes the choice when it beats the current choice's throughput by a factor ``min_gain``;
    the search stops after ``patience + 1`` doublings in a row without such a gain (one slow measurement on a
    busy machine does not end it), or when the device runs out of memory. Run it under the autocast and
    ``no_grad`` context of the inference.

    Args:
        network: callable on a batch ``(B, *example.shape[1:])``.
        example: one input, shape ``(1, ...)``, on the network's device and in its memory format.
        max_batch_size: the largest batch to try (e.g. the number of slices of the volume).
        min_gain: throughput ratio that doubling must reach to go on.
        repeats: timed calls per batch size.
        patience: doublings without gain tolerated before stopping.

    Returns:
        The chosen batch size and the measured throughput (inputs per second) of every size tried.
    """
    device = example.device
    throughput: Dict[int, float] = {}
    best, batch, misses = 1, 1, 0
    while batch <= max(1, max_batch_size):
        inputs = example.repeat(batch, *([1] * (example.ndim - 1)))
        try:
            network(inputs)  # warm-up: kernel selection, allocator growth
            seconds = []
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                network(inputs)
                synchronize(device)
                seconds.append(time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:  # not torch.OutOfMemoryError: torch 2.3, the floor, lacks that name
            torch.cuda.empty_cache()
            break
        throughput[batch] = batch / min(seconds)
        if batch == 1 or throughput[batch] >= min_gain * throughput[best]:
            best, misses = batch, 0
        else:
            misses += 1
            if misses > patience:
                break
        batch *= 2
    return best, throughput


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a CUDA device; nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
