# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A progress bar over the iterations of an engine's epoch, showing the loss read every ``log_every`` iterations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm progress bar over the iterations of each epoch (ignite's ``ProgressBar``) showing the loss.

    The bar advances every iteration; the loss it shows is read every ``log_every`` iterations (and at the first
    of each epoch) and kept in between: on a GPU, reading a value on the host waits for the device's queued work,
    so a read per step stalls the pipeline of kernels the next step would have queued behind it.

    Args:
        output_transform: maps ``engine.state.output`` to a float or dict of floats to display, e.g.
            ``monai.handlers.from_engine(["loss"], first=True)``; ``None`` shows none.
        persist: keep the finished bar of every epoch on screen.
        log_every: iterations between two reads of the loss (>= 1).
    """

    def __init__(self, output_transform: Callable | None = None, persist: bool = True, log_every: int = 1) -> None:
        if not (isinstance(log_every, int) and log_every >= 1):
            raise ValueError(f"ProgressBar: log_every must be an int >= 1, got {log_every!r}.")
        self.output_transform = output_transform
        self.persist = persist
        self.log_every = log_every

    def attach(self, engine: Engine) -> None:
        transform = None
        if self.output_transform is not None:
            shown: dict[str, float] = {}

            def transform(output: Any) -> dict[str, float]:
                iteration = engine.state.iteration
                first_of_epoch = (iteration - 1) % max(1, engine.state.epoch_length or 1) == 0
                if shown and not first_of_epoch and iteration % self.log_every:
                    return shown
                value = self.output_transform(output)
                value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
                shown.clear()
                shown.update(value if isinstance(value, dict) else {"loss": float(value)})
                return shown

        IgniteProgressBar(persist=self.persist).attach(engine, output_transform=transform)
