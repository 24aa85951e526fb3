# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Parameters and forward FLOPs of any network for one input, as the paper's comparison tables report them."""

from collections.abc import Sequence
from typing import Any, Dict, Optional, Union

import torch
from monai.utils import pytorch_after
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ["count_parameters", "count_flops", "network_complexity"]


def _attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """FLOPs of one attention call from its shapes (torch's formula for its CUDA kernels)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA kernels of scaled_dot_product_attention, not the one it takes on the CPU
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``), shared parameters counted once."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


@torch.no_grad()
def count_flops(
    network: nn.Module, input_shape: Sequence[int], device: Optional[Union[str, torch.device]] = None
) -> Dict[str, int]:
    """Forward FLOPs of ``network`` on one random input of ``input_shape``, in total and per direct child module.

    The network runs once in eval mode (its mode is restored afterwards) without gradients, under
    ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products, convolutions and attention
    (``scaled_dot_product_attention``, also its CPU kernel), 2 FLOPs per multiply-add, and no element-wise
    operations (normalisation, activations, the Sinkhorn iterations' exp and logsumexp).

    Args:
        network: any module taking one tensor.
        input_shape: the input's shape, batch included, e.g. ``(1, 1, 224, 224)``.
        device: where the input is made; ``None``: the device of the network's first parameter (CPU without any).

    Returns:
        ``{"total": flops, child name: flops, ...}`` for every direct child of ``network``.
    """
    if device is None:
        device = next((p.device for p in network.parameters()), torch.device("cpu"))
    was_training = network.training
    network.eval()
    # torch < 2.4 attributes FLOPs to modules only when given them (``mods``); later versions track every module
    # and deprecate the argument
    modules = {} if pytorch_after(2, 4) else {"mods": network}
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION, **modules)
    try:
        with counter:
            network(torch.randn(*input_shape, device=device))
    finally:
        network.train(was_training)
    counts = counter.get_flop_counts()
    root = type(network).__name__
    flops = {"total": int(counter.get_total_flops())}
    for name, _ in network.named_children():
        flops[name] = int(sum(counts.get(f"{root}.{name}", {}).values()))
    return flops


def network_complexity(
    network: nn.Module, input_shape: Sequence[int], device: Optional[Union[str, torch.device]] = None
) -> Dict[str, int]:
    """Trainable parameters and forward FLOPs of ``network`` for one input (batch 1, eval mode).

    Args:
        network: any module taking one tensor (an L2GNet variant, MONAI's FlexibleUNet, ...).
        input_shape: one input's shape, e.g. ``(1, 1, 224, 224)``; a shape without the batch axis (``(1, 224,
            224)`` for a 2-D network of one channel) is given a batch of 1.
        device: as in :func:`count_flops`.

    Returns:
        ``{"parameters": int, "flops": int}`` (FLOPs as :func:`count_flops` counts them).

    Example::

        >>> network_complexity(L2GNet(out_channels=9), (1, 1, 224, 224))
    """
    shape = [int(s) for s in input_shape]
    spatial_dims = getattr(network, "spatial_dims", None)
    if spatial_dims is not None and len(shape) == int(spatial_dims) + 1:
        shape = [1] + shape
    return {"parameters": count_parameters(network), "flops": count_flops(network, shape, device)["total"]}
