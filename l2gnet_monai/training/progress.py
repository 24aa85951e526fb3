# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A progress bar over the iterations of an engine's epoch, showing the loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm progress bar over the iterations of each epoch (ignite's ``ProgressBar``) showing the loss.

    Args:
        output_transform: maps ``engine.state.output`` to a float or dict of floats to display, e.g.
            ``monai.handlers.from_engine(["loss"], first=True)``; ``None`` shows none.
        persist: keep the finished bar of every epoch on screen.
    """

    def __init__(self, output_transform: Callable | None = None, persist: bool = True) -> None:
        self.output_transform = output_transform
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        transform = None
        if self.output_transform is not None:

            def transform(output: Any) -> dict[str, float]:
                value = self.output_transform(output)
                value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
                return value if isinstance(value, dict) else {"loss": float(value)}

        IgniteProgressBar(persist=self.persist).attach(engine, output_transform=transform)
