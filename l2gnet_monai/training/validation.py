# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Validation that observes the training without changing it: its random draws never reach the training's."""

from __future__ import annotations

from ignite.engine import Engine
from monai.handlers import ValidationHandler

from l2gnet_monai.training.resume import RandomStates

__all__ = ["IsolatedValidationHandler"]


class IsolatedValidationHandler(ValidationHandler):
    """MONAI's :class:`~monai.handlers.ValidationHandler` that gives the training back its random generators.

    A validation run draws from the process's global generators, so how often the training validates would change
    the model it trains (``val_interval`` 1 and 4 gave two models 0.2 Dice points apart). The draws found:

    * every iteration over a ``DataLoader`` without a ``generator`` draws its base seed from torch's global
      generator (also with ``num_workers=0``, for the sampler and the workers' seeds);
    * randomizable transforms and handlers of the evaluator (pictures, sliding-window helpers) may use NumPy's,
      Python's or torch's global generators.

    Here the states of torch's (CPU and current CUDA device), NumPy's and Python's generators are saved before the
    validator runs and restored after it, whatever ran in between (the evaluator's handlers included), also when it
    raises. The one other way validation changed the training was not random: ``TunedSliceInferer`` converts the
    network to ``channels_last`` in place on its first call, and later training steps then ran other convolution
    kernels; the bundle's validation inferer is therefore built with ``channels_last: false``. With both, training
    with ``val_interval`` 1 and 4 trains the same weights, bit for bit, on the CPU.

    Args: those of :class:`~monai.handlers.ValidationHandler`.
    """

    def __call__(self, engine: Engine) -> None:
        """Run the validator for ``engine``'s epoch, leaving the random generators as they were.

        Args:
            engine: the trainer.
        """
        generators = RandomStates()
        saved = generators.state_dict()
        try:
            super().__call__(engine)
        finally:
            generators.load_state_dict(saved)
