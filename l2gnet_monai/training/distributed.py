# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Where a process of a ``torchrun`` job runs and what it writes: device, main process, SyncBatchNorm, and the
buffers every rank validates with."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["is_main_process", "local_device", "sync_batchnorm", "BroadcastBuffers"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer in the environment, got {value!r}.") from None


def is_main_process() -> bool:
    """Whether this process writes the run's outputs (checkpoints, logs, TensorBoard, evaluation files).

    True for the global rank 0 of an initialised process group, else for ``RANK`` 0 in the environment that
    ``torchrun`` sets (``WORLD_SIZE`` > 1), so the answer is the same before and after ``init_process_group``.
    A process outside a multi-process job (no ``WORLD_SIZE``, or 1) is always the main process.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("WORLD_SIZE", 1) <= 1 or _env_int("RANK", 0) == 0


def local_device() -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    ``LOCAL_RANK`` (set by ``torchrun``) numbers the processes of one node, whereas ``RANK`` numbers all the
    processes of the job: on the second node of a 2 x 4-GPU job ranks 4-7 must use ``cuda:0``-``cuda:3``.

    Returns:
        ``torch.device("cuda:<LOCAL_RANK>")`` (``cuda:0`` without ``LOCAL_RANK``) or ``torch.device("cpu")``.

    Raises:
        ValueError: when ``LOCAL_RANK`` is not an integer or names a GPU this node does not have.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = _env_int("LOCAL_RANK", 0)
    count = torch.cuda.device_count()
    if not 0 <= local_rank < count:
        raise ValueError(
            f"LOCAL_RANK: {local_rank} names a GPU this node does not have (it sees {count}: "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). Start at most {count} processes per "
            "node (torchrun --nproc_per_node)."
        )
    return torch.device(f"cuda:{local_rank}")


def sync_batchnorm(network: nn.Module, enabled: bool, device: torch.device | str) -> nn.Module:
    """``network`` with its batch norms converted to :class:`torch.nn.SyncBatchNorm` when ``enabled``.

    Synchronised batch statistics help when each GPU holds only a few slices. Convert before wrapping the
    network in ``DistributedDataParallel``. torch computes SyncBatchNorm on GPUs only, so it is refused on the
    CPU (gloo) here, before training starts, rather than failing at the first training step.

    Args:
        network: the network (not yet wrapped).
        enabled: convert (the bundle's ``sync_batchnorm`` key) or return ``network`` unchanged.
        device: the device the network will train on.

    Returns:
        The same module, converted in place where ``enabled``.

    Raises:
        ValueError: when ``enabled`` and ``device`` is not a CUDA device.
    """
    if not enabled:
        return network
    if torch.device(device).type != "cuda":
        raise ValueError(
            f"sync_batchnorm: torch's SyncBatchNorm runs on CUDA devices only, and this process trains on {device}. "
            "Set sync_batchnorm to false for CPU (gloo) training."
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(network)


class BroadcastBuffers:
    """Copies rank 0's buffers (batch-norm running statistics, the codebook) to every rank when an evaluator starts.

    ``DistributedDataParallel`` broadcasts buffers from rank 0 before each training forward pass, and that pass
    then updates each rank's batch-norm statistics from its own slices: after an epoch they differ by rank.
    Validation runs the wrapped module directly (:class:`~l2gnet_monai.inference.TunedSliceInferer` makes no
    collective calls, as ranks may validate different numbers of volumes), so without this each rank would score
    its share of the volumes with its own statistics, not with those of the model rank 0 saves. Every rank runs
    the evaluator at the same time (``ValidationHandler``), so the one broadcast per round is safe. A no-op
    outside ``torch.distributed``.

    Args:
        network: the network, usually its ``DistributedDataParallel`` wrapper.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        module = self.network.module if isinstance(self.network, nn.parallel.DistributedDataParallel) else self.network
        for buffer in module.buffers():
            if buffer.dtype != torch.bool:  # flags (the codebook's "initialized") agree already; gloo has no bool
                dist.broadcast(buffer, src=0)
