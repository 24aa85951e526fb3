# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The L2GNet training loss: Dice + cross-entropy + the quantizer's loss (eq. 4 of the paper)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from monai.losses import DiceCELoss
from torch import nn

from l2gnet_monai.networks.utils import unwrap_network

__all__ = ["L2GNetLoss"]

logger = logging.getLogger(__name__)


def _wrapped_in_data_parallel(network: nn.Module) -> bool:
    while isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        if isinstance(network, nn.DataParallel):
            return True
        network = network.module
    return False


class L2GNetLoss(DiceCELoss):
    """``L = CE(y, y_hat) + (1 - Dice(y, y_hat)) + w * L_quant``, a drop-in ``loss`` for MONAI trainers.

    The Dice and cross-entropy terms are MONAI's :class:`~monai.losses.DiceCELoss` (softmax over
    classes, one-hot labels by default, as in TransUNet's protocol). The quantization loss is taken
    from ``network``, which records it during each training forward pass
    (:meth:`l2gnet_monai.networks.L2GNet.pop_quantization_loss`), so ``SupervisedTrainer`` can keep
    calling ``loss_function(pred, label)``. ``network`` may be wrapped in ``DistributedDataParallel``.

    The quantization term cannot go missing silently: each call takes the loss of the network's last forward
    pass (:meth:`~l2gnet_monai.networks.L2GNet.take_quantization_loss`) and raises ``RuntimeError`` when that
    pass recorded none (eval mode, no forward pass at all), when the recorded loss is stale (eval passes ran
    since) or was read already, or when several training passes ran since the last call. ``nn.DataParallel``
    is refused at construction: its replicas' records are lost (use ``DistributedDataParallel``).

    Bundle config::

        "loss": {"_target_": "l2gnet_monai.losses.L2GNetLoss", "network": "@network"}

    Args:
        network: the L2GNet being trained (or its DDP wrapper). ``None``, or a network without a vector quantizer
            (another network trained through the bundle, e.g. MONAI's ``FlexibleUNet``), gives plain Dice + CE.
        quantization_weight: weight ``w`` of the quantization loss.
        to_onehot_y: one-hot encode the label (``DiceCELoss`` argument).
        softmax: apply softmax to the logits (``DiceCELoss`` argument).
        kwargs: further :class:`~monai.losses.DiceCELoss` arguments (``lambda_dice``, ``lambda_ce``,
            ``include_background``, ...).

    Attributes:
        last_terms: the last call's terms, ``{"dice_ce": tensor, "quantization": tensor}`` (detached 0-d
            tensors on the loss's device, so the step needs no host read; ``float()`` them when logging).

    Raises:
        ValueError: ``network`` is wrapped in ``nn.DataParallel``.
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
        self._untrainable: str | None = None  # a network that is never trained further (an ensemble of folds)
        if network is not None:
            if _wrapped_in_data_parallel(network):
                raise ValueError(
                    "L2GNetLoss: network is wrapped in nn.DataParallel, whose replicas record the quantization "
                    "loss where the loss cannot read it; use DistributedDataParallel (or a single device)."
                )
            if getattr(unwrap_network(network), "trainable", True) is False:
                self._untrainable = type(unwrap_network(network)).__name__
            if not hasattr(unwrap_network(network), "take_quantization_loss"):
                # another network through the bundle (MONAI's FlexibleUNet, a UNet, ...): nothing to add
                logger.info(
                    "L2GNetLoss: %s has no vector quantizer; training with Dice + CE alone.",
                    type(unwrap_network(network)).__name__,
                )
                network = None
        # a tuple keeps the network out of this module's children (and its state dict)
        self._network = (network,) if network is not None else ()
        self.quantization_weight = quantization_weight
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: labels ``(B, 1, *spatial)`` (or one-hot ``(B, C, *spatial)`` with ``to_onehot_y=False``).

        Returns:
            The scalar loss.

        Raises:
            RuntimeError: built with a network whose last forward pass left no fresh quantization loss to take
                (see the class docstring); the message says which case it is. Built with a network that is never
                trained (``trainable = False``: an ensemble of trained folds).
        """
        if self._untrainable:
            raise RuntimeError(
                f"L2GNetLoss: {self._untrainable} is not trained further (an ensemble of trained folds); train its "
                "folds with train.json --fold K and ensemble them again."
            )
        loss = super().forward(input, target)
        terms = {"dice_ce": loss.detach()}
        if self._network:
            try:
                quantization_loss = unwrap_network(self._network[0]).take_quantization_loss()
            except RuntimeError as e:
                raise RuntimeError(f"L2GNetLoss: {e}") from None
            loss = loss + self.quantization_weight * quantization_loss
            terms["quantization"] = quantization_loss.detach()
        self.last_terms = terms
        return loss
