# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Checkpoints of L2GNet: whether a state dict fits a network, and what one holds, read from its names and shapes."""

import re
from collections.abc import Mapping
from typing import Any, List

import torch

from l2gnet_monai.networks.encoders import RESNET_LAYOUTS

__all__ = ["CheckpointMismatchError", "check_fits", "describe_checkpoint", "same_storage"]


class CheckpointMismatchError(RuntimeError):
    """A state dict that does not fit the network it is loaded into; the message names the mismatch and the fix."""


def check_fits(state_dict: Mapping[str, Any], own: Mapping[str, torch.Tensor]) -> None:
    """Refuse a state dict that does not fit a network's own (``own``) exactly, as :meth:`L2GNet.load_state_dict`.

    Entries that are the network's own tensors count as missing (what a lenient loader fills in).

    Args:
        state_dict: the parameters and buffers to load.
        own: the network's ``state_dict()``.

    Raises:
        CheckpointMismatchError: missing, unexpected or mis-shaped entries; the message lists them and says what
            network the checkpoint holds.
    """
    expected = {k: tuple(v.shape) for k, v in own.items()}
    # MONAI's CheckpointLoader(strict_shape=False) and copy_model_state fill in what a checkpoint lacks with the
    # network's own tensors: those entries are missing from the checkpoint, whatever the dict says
    filled = {k for k, v in state_dict.items() if k in own and same_storage(v, own[k])}
    found = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor) and k not in filled}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or shapes:
        mis_shaped = ", ".join(f"{k} {found[k]} (network: {expected[k]})" for k in shapes[:3])
        raise CheckpointMismatchError(
            f"L2GNet: the checkpoint does not fit this network ({describe_checkpoint(expected)}); it holds "
            f"{describe_checkpoint(found)}. {len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected "
            f"{unexpected[:3]}, {len(shapes)} of another shape [{mis_shaped}]"
            + (
                f" ({len(filled)} filled in with the network's own tensors by a lenient loader, e.g. MONAI's "
                "CheckpointLoader(strict_shape=False))"
                if filled
                else ""
            )
            + ". Build the network with the settings it was trained with: load the model.pt that training wrote "
            "(it carries its plan, which the bundle's configs read), or for a plain state dict repeat the "
            "training's network_def settings (e.g. configs/cpu.json)."
        )


def same_storage(value: Any, own: torch.Tensor) -> bool:
    """Whether ``value`` is ``own`` (the network's tensor) rather than a tensor read from a checkpoint."""
    if not isinstance(value, torch.Tensor) or value.device != own.device or own.numel() == 0:
        return False
    return value.data_ptr() == own.data_ptr() != 0


def describe_checkpoint(shapes: Mapping[str, Any]) -> str:
    """What an L2GNet state dict holds, read from its parameter names and shapes, e.g.
    ``"backbone resnet18, 3 classes, codebook 64 x 128, 2 references"``.

    Args:
        shapes: parameter names to tensors or shape tuples.

    Returns:
        A short description (``"no codebook"``, ``"no mapper"``, ``"transformer bottleneck of L layers"`` for the
        variants without them); ``"no L2GNet weights"`` when the names are not L2GNet's.
    """
    shape = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in shapes.items()}
    parts: List[str] = []
    stage_blocks = [re.compile(rf"encoder\.layer{i}\.(\d+)\.") for i in (1, 2, 3)]
    blocks = [len({m.group(1) for k in shape if (m := pattern.match(k))}) for pattern in stage_blocks]
    if all(blocks):
        kind = "bottleneck" if "encoder.layer1.0.conv3.weight" in shape else "basic"
        names = [n for n, (b, layers) in RESNET_LAYOUTS.items() if b == kind and layers[:3] == blocks]
        parts.append(f"backbone {' or '.join(names) if names else f'{kind} blocks {blocks}'}")
    if "segmentation_head.0.weight" in shape:
        parts.append(f"{shape['segmentation_head.0.weight'][0]} classes")
    bottleneck = any(k.startswith("pre_bottleneck.") for k in shape)
    if "quantizer.embedding.weight" in shape:
        size, dim = shape["quantizer.embedding.weight"][:2]
        parts.append(f"codebook {size} x {dim}")
    elif bottleneck:
        parts.append("no codebook")
    if "mapper.position_embedding" in shape:
        layers = len({k.split(".")[2] for k in shape if k.startswith("mapper.layers.")})
        parts.append(f"transformer bottleneck of {layers} layers")
    elif bottleneck and not any(k.startswith("mapper.") for k in shape):
        parts.append("no mapper")
    if "mapper.references" in shape:
        parts.append(f"{shape['mapper.references'][0]} references of {shape['mapper.references'][1]} bins")
    if "mapper.embedding.anchors" in shape:
        parts.append(f"{shape['mapper.embedding.anchors'][0]} anchors")
    return ", ".join(parts) if parts else "no L2GNet weights"
