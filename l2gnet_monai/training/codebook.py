# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The vector quantizer's codebook statistics as epoch metrics of a training engine."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from l2gnet_monai.networks.utils import unwrap_network

__all__ = ["CodebookStatsHandler"]


class CodebookStatsHandler:
    """Puts the vector quantizer's codebook statistics into the engine's metrics after every epoch.

    At every iteration it reads ``codebook_stats`` (perplexity, fraction of codes used, restarted codes) that
    :class:`~l2gnet_monai.networks.L2GNet` records during its training forward pass; at the end of the epoch
    it stores the epoch's means (restarts: the sum) as ``engine.state.metrics["codebook_perplexity"]``,
    ``["codebook_usage"]`` and ``["codebook_restarts"]``, where ``StatsHandler`` and
    ``TensorBoardStatsHandler`` (attached after this one) log them. A collapsing codebook shows up as a
    perplexity falling towards 1.

    Args:
        network: the network (or its DDP wrapper); defaults to ``engine.network``.
    """

    def __init__(self, network: torch.nn.Module | None = None) -> None:
        self.network = network
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._publish)

    def _reset(self, engine: Engine) -> None:
        self._sums, self._count = {}, 0

    def _accumulate(self, engine: Engine) -> None:
        network = unwrap_network(self.network if self.network is not None else engine.network)
        stats = getattr(network, "codebook_stats", {})
        if not stats:
            return
        for key, value in stats.items():  # summed on the device; read once per epoch
            value = torch.as_tensor(value).detach().float()
            self._sums[key] = self._sums[key] + value.to(self._sums[key].device) if key in self._sums else value
        self._count += 1

    def _publish(self, engine: Engine) -> None:
        if self._count == 0:
            return
        engine.state.metrics["codebook_perplexity"] = float(self._sums["perplexity"]) / self._count
        engine.state.metrics["codebook_usage"] = float(self._sums["usage"]) / self._count
        engine.state.metrics["codebook_restarts"] = float(self._sums["restarted_codes"])
