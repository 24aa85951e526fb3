# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The poly learning-rate schedule of the paper's protocol, resumable onto a longer (or shorter) run."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["PolynomialLR"]


class PolynomialLR(LRScheduler):
    """Poly decay ``lr = base_lr * (1 - step / total_iters) ** power``, computed in closed form at every step.

    Unlike :class:`torch.optim.lr_scheduler.PolynomialLR`, a checkpoint gives back only the *position* in the
    schedule (``last_epoch``, the number of steps taken). Its *shape* (``total_iters``, ``power`` and the base
    learning rates) stays what this run was built with, and the optimizer's learning rate is set to the value
    at that position when the state is loaded. So a run trained for all 150 of its 150 epochs and resumed with
    ``max_epochs`` 300 continues from ``base_lr * (1 - 150/300) ** 0.9`` and decays to 0 at epoch 300. torch's
    own scheduler would restore the old ``total_iters`` and multiply the restored learning rate (0 at the end of
    the finished schedule) and so train the extra epochs at learning rate 0. Resuming an interrupted run with
    unchanged settings gives exactly the schedule of an uninterrupted one.

    Args:
        optimizer: the optimizer whose parameter groups' ``lr`` is set.
        total_iters: number of steps until the learning rate reaches 0 (``max_epochs * iterations_per_epoch`` with
            a step per iteration). Steps beyond it keep the learning rate at 0.
        power: exponent of the decay (0.9 in the paper's protocol).
        last_epoch: index of the last step taken; -1 starts a new schedule.

    Raises:
        ValueError: when ``total_iters`` is not a positive number.
    """

    def __init__(self, optimizer: Optimizer, total_iters: int, power: float = 0.9, last_epoch: int = -1) -> None:
        if int(total_iters) < 1:
            raise ValueError(
                f"lr_scheduler: total_iters must be a positive number of steps, got {total_iters}; "
                "check max_epochs and iterations_per_epoch."
            )
        self.total_iters = int(total_iters)
        self.power = float(power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The learning rate of each parameter group at step ``last_epoch``, from ``base_lrs``."""
        return self._get_closed_form_lr()

    def _get_closed_form_lr(self) -> list[float]:
        fraction = min(max(self.last_epoch, 0), self.total_iters) / self.total_iters
        return [base_lr * (1.0 - fraction) ** self.power for base_lr in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position ``last_epoch`` and set the optimizer's learning rates for it.

        Load the optimizer's state before this one (the bundle's ``load_dict`` does), since loading an
        optimizer's state brings back the learning rate it had when it was saved.
        """
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        for group, lr in zip(self.optimizer.param_groups, self._get_closed_form_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
