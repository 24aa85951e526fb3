# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Encoders for L2GNet: MONAI's ResNet in torchvision's layout, or a MONAI FlexibleUNet EfficientNet backbone."""

from __future__ import annotations

import logging
import os

import torch
from monai.networks.nets.efficientnet import EfficientNetBNFeatures
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from monai.networks.nets.resnet import ResNet, get_inplanes
from torch import nn

__all__ = [
    "ResNetStages",
    "BackboneStages",
    "build_encoder",
    "supported_backbones",
    "load_torchvision_resnet",
    "RESNET_LAYOUTS",
]

logger = logging.getLogger(__name__)

#: block type and blocks per stage of the ResNets that torchvision and MONAI share.
RESNET_LAYOUTS: dict[str, tuple[str, list[int]]] = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
    "resnet200": ("bottleneck", [3, 24, 36, 3]),
}


class ResNetStages(ResNet):
    """MONAI's :class:`~monai.networks.nets.ResNet` in torchvision's parameter layout, as a multi-scale encoder.

    MONAI's FlexibleUNet ResNet backbones use MedicalNet's shortcut type "A" (parameter-free) for
    resnet18/34, which cannot hold torchvision's ImageNet weights; here every depth uses torchvision's
    1x1-convolution shortcut without bias, so ``load_torchvision_resnet`` fits every depth. Only the
    stages the network uses are built.

    Args:
        model_name: one of :data:`RESNET_LAYOUTS` (``resnet10`` ... ``resnet200``).
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_stages: residual stages to build and return, 3 (output stride 16) or 4 (stride 32).
    """

    def __init__(self, model_name: str, spatial_dims: int = 2, in_channels: int = 1, num_stages: int = 3) -> None:
        if model_name not in RESNET_LAYOUTS:
            raise ValueError(
                f"ResNetStages: unknown model_name {model_name!r}; expected one of {sorted(RESNET_LAYOUTS)}."
            )
        if num_stages not in (3, 4):
            raise ValueError(f"ResNetStages: num_stages must be 3 or 4, got {num_stages}.")
        block, layers = RESNET_LAYOUTS[model_name]
        super().__init__(
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        self.model_name = model_name
        self.spatial_dims = spatial_dims
        self.num_stages = num_stages
        expansion = 4 if block == "bottleneck" else 1
        self.out_channels: list[int] = [64] + [w * expansion for w in get_inplanes()][:num_stages]
        del self.avgpool
        if num_stages == 3:
            self.layer4 = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """
        Args:
            x: ``(B, in_channels, *spatial)``.

        Returns:
            ``num_stages + 1`` feature maps at strides 2, 4, 8, 16 (and 32), channels ``self.out_channels``.
        """
        x = self.act(self.bn1(self.conv1(x)))
        features = [x]
        x = self.layer1(self.maxpool(x))
        features.append(x)
        x = self.layer2(x)
        features.append(x)
        x = self.layer3(x)
        features.append(x)
        if self.layer4 is not None:
            features.append(self.layer4(x))
        return features


class BackboneStages(nn.Module):
    """A MONAI ``FLEXUNET_BACKBONE`` EfficientNet (``efficientnet-b0`` ... ``efficientnet-l2``), cut at stride 16.

    MONAI's :class:`~monai.networks.nets.EfficientNetEncoder` returns the feature maps after the stem's
    first stack and after every stack that changes the resolution (its ``extract_stacks``: strides 2, 4, 8, 16,
    32) and also builds the classifier head. Here only the stacks up to the last feature map that the network
    uses are built (for ``num_stages=3``: strides 2 ... 16) and the head is removed, so every parameter takes
    part in the forward pass: nothing is computed for nothing, and ``DistributedDataParallel`` needs no
    ``find_unused_parameters``. With ``efficientnet-b0`` this keeps 0.85 M of the backbone's 5.3 M weights
    (the stride-32 stacks and the 1280-channel head are where most of them sit).

    Parameter names are MONAI's (``encoder._conv_stem.weight``, ``encoder._blocks.<stack>.<block>...``).

    Args:
        backbone: an EfficientNet name in ``monai.networks.nets.flexible_unet.FLEXUNET_BACKBONE.register_dict``.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        num_stages: feature maps after the first to return (3: strides up to 16; 4: up to 32).
    """

    def __init__(self, backbone: str, spatial_dims: int = 2, in_channels: int = 1, num_stages: int = 3) -> None:
        super().__init__()
        if backbone not in FLEXUNET_BACKBONE.register_dict:
            raise ValueError(f"BackboneStages: {backbone!r} is not registered in MONAI's FLEXUNET_BACKBONE.")
        entry = FLEXUNET_BACKBONE.register_dict[backbone]
        if not issubclass(entry["type"], EfficientNetBNFeatures):
            raise ValueError(
                f"BackboneStages: {backbone!r} is a {entry['type'].__name__}; L2GNet cuts EfficientNet backbones "
                f"only (ResNets use ResNetStages). Supported backbones: {supported_backbones()}."
            )
        if num_stages not in (3, 4):
            raise ValueError(f"BackboneStages: num_stages must be 3 or 4, got {num_stages}.")
        params = dict(entry["parameter"])
        params.update({"spatial_dims": spatial_dims, "in_channels": in_channels, "pretrained": False})
        encoder = entry["type"](**params)
        # extract_stacks[k]: after how many stacks feature map k is taken (0: the stem's output)
        self.extract_stacks: list[int] = list(encoder.extract_stacks)[: num_stages + 1]
        encoder._blocks = encoder._blocks[: self.extract_stacks[-1]]
        for head in ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            delattr(encoder, head)
        self.encoder = encoder
        self.num_stages = num_stages
        self.out_channels: list[int] = list(entry["feature_channel"])[: num_stages + 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """
        Args:
            x: ``(B, in_channels, *spatial)``.

        Returns:
            ``num_stages + 1`` feature maps at strides 2, 4, 8, 16 (and 32), channels ``self.out_channels``.
        """
        x = self.encoder._swish(self.encoder._bn0(self.encoder._conv_stem(self.encoder._conv_stem_padding(x))))
        features = [x] if 0 in self.extract_stacks else []
        for index, stack in enumerate(self.encoder._blocks, start=1):
            x = stack(x)
            if index in self.extract_stacks:
                features.append(x)
        return features


def supported_backbones() -> list[str]:
    """Backbone names :func:`build_encoder` accepts: the torchvision-layout ResNets and MONAI's EfficientNets."""
    efficientnets = [
        name
        for name, entry in FLEXUNET_BACKBONE.register_dict.items()
        if issubclass(entry["type"], EfficientNetBNFeatures)
    ]
    return list(RESNET_LAYOUTS) + efficientnets


def build_encoder(backbone: str, spatial_dims: int, in_channels: int, num_stages: int = 3) -> nn.Module:
    """Encoder by name: torchvision-layout ResNets for ``resnet*``, MONAI's EfficientNets cut at the last stage used.

    Raises:
        ValueError: ``backbone`` is none of :func:`supported_backbones`.
    """
    if backbone in RESNET_LAYOUTS:
        return ResNetStages(backbone, spatial_dims=spatial_dims, in_channels=in_channels, num_stages=num_stages)
    if backbone in supported_backbones():
        return BackboneStages(backbone, spatial_dims=spatial_dims, in_channels=in_channels, num_stages=num_stages)
    raise ValueError(f"Unknown backbone {backbone!r}; expected one of {supported_backbones()}.")


def _adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit an RGB stem ``(C_out, 3, k, k)`` to ``in_channels`` inputs.

    One channel: the sum over RGB, which equals feeding the grey image to all three. Other counts: the
    RGB filters repeated cyclically, scaled by ``3 / in_channels`` to keep the response's magnitude.
    """
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def load_torchvision_resnet(encoder: ResNetStages, checkpoint: str | os.PathLike | dict) -> None:
    """Load a torchvision-format ResNet state dict (e.g. ImageNet ``resnet50-*.pth``) into ``encoder``.

    The classifier (``fc.*``) and the stages the encoder does not build are skipped; the RGB stem is
    adapted to ``encoder``'s input channels (see ``_adapt_first_conv``). Every other key must match
    name and shape exactly.

    Args:
        encoder: the encoder to fill.
        checkpoint: path of a file saved with ``torch.save`` holding the state dict (possibly under
            ``"state_dict"`` or ``"model"``, possibly with a ``"module."`` prefix), or the dict itself.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a state dict, or keys are missing, unexpected or mis-shaped; the
            message lists them.
    """
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "<state dict>"
    if isinstance(checkpoint, dict):
        state = checkpoint
    else:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"pretrained_encoder: no such file {source!r}.")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"pretrained_encoder: {source!r} is not a readable torch state dict ({e}).") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained_encoder: {source!r} does not hold a state dict of tensors.")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}

    if encoder.spatial_dims != 2:
        raise ValueError("pretrained_encoder: torchvision ResNet weights are 2-D; the encoder has spatial_dims=3.")
    skipped_prefixes = ["fc."] + ([] if encoder.num_stages == 4 else ["layer4."])
    expected = encoder.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unexpected, mismatched, skipped = [], [], []
    for key, value in state.items():
        if any(key.startswith(p) for p in skipped_prefixes):
            skipped.append(key)
            continue
        if key not in expected:
            unexpected.append(key)
            continue
        if key == "conv1.weight":
            value = _adapt_first_conv(value, expected[key].shape[1])
        if value.shape != expected[key].shape:
            mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(expected[key].shape)}")
            continue
        loaded[key] = value
    present = set(loaded) | {m.split(":")[0] for m in mismatched}
    missing = [k for k in expected if k not in present and not k.endswith("num_batches_tracked")]
    if unexpected or mismatched or missing:
        lines = [f"pretrained_encoder: {source!r} does not fit a torchvision {encoder.model_name}:"]
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                lines.append(f"  {title}: {shown}")
        raise ValueError("\n".join(lines))
    encoder.load_state_dict(loaded, strict=False)
    logger.info(
        "Loaded %d encoder tensors from %s (skipped %d: classifier and unused stages).",
        len(loaded),
        source,
        len(skipped),
    )
