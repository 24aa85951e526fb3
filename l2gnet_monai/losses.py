# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The L2GNet training loss: Dice + cross-entropy + the quantizer's loss (eq. 4 of the paper)."""

from __future__ import annotations

from typing import Any

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["L2GNetLoss", "unwrap_network"]


def unwrap_network(network: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel`` wrappers (``.module``), or ``network``."""
    while isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        network = network.module
    return network


class L2GNetLoss(DiceCELoss):
    """``L = CE(y, y_hat) + (1 - Dice(y, y_hat)) + w * L_quant``, a drop-in ``loss`` for MONAI trainers.

    The Dice and cross-entropy terms are MONAI's :class:`~monai.losses.DiceCELoss` (softmax over
    classes, one-hot labels by default, as in TransUNet's protocol). The quantization loss is taken
    from ``network``, which records it during each training forward pass
    (:meth:`l2gnet_monai.networks.L2GNet.pop_quantization_loss`), so ``SupervisedTrainer`` can keep
    calling ``loss_function(pred, label)``. ``network`` may be wrapped in ``DistributedDataParallel``.

    Bundle config::

        "loss": {"_target_": "l2gnet_monai.losses.L2GNetLoss", "network": "@network"}

    Args:
        network: the L2GNet being trained (or its DDP wrapper). ``None`` gives plain Dice + CE.
        quantization_weight: weight ``w`` of the quantization loss.
        to_onehot_y: one-hot encode the label (``DiceCELoss`` argument).
        softmax: apply softmax to the logits (``DiceCELoss`` argument).
        kwargs: further :class:`~monai.losses.DiceCELoss` arguments (``lambda_dice``, ``lambda_ce``,
            ``include_background``, ...).

    Attributes:
        last_terms: the last call's terms, ``{"dice_ce": float, "quantization": float}``, for logging.
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        quantization_weight: float = 1.0,
        to_onehot_y: bool = True,
        softmax: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(to_onehot_y=to_onehot_y, softmax=softmax, **kwargs)
        # a tuple keeps the network out of this module's children (and its state dict)
        self._network = (network,) if network is not None else ()
        self.quantization_weight = quantization_weight
        self.last_terms: dict[str, float] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: labels ``(B, 1, *spatial)`` (or one-hot ``(B, C, *spatial)`` with ``to_onehot_y=False``).

        Returns:
            The scalar loss.
        """
        loss = super().forward(input, target)
        terms = {"dice_ce": float(loss.detach())}
        if self._network:
            pop = getattr(unwrap_network(self._network[0]), "pop_quantization_loss", None)
            quantization_loss = pop() if pop is not None else None
            if quantization_loss is not None:
                loss = loss + self.quantization_weight * quantization_loss
                terms["quantization"] = float(quantization_loss.detach())
        self.last_terms = terms
        return loss
