# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""L2GNet: ResNet encoder, vector quantizer, optimal-transport L2GMapper and U-Net decoder."""

from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Union

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
from torch import nn

from l2gnet_monai.networks.attention import TransformerBottleneck
from l2gnet_monai.networks.checkpoints import CheckpointMismatchError, check_fits, describe_checkpoint
from l2gnet_monai.networks.encoders import ResNetStages, build_encoder, load_torchvision_resnet
from l2gnet_monai.networks.explain import explain as explain_bottleneck
from l2gnet_monai.networks.l2g_mapper import L2GMapper
from l2gnet_monai.networks.quantizer import CodebookQuantizer

__all__ = ["L2GNet", "CheckpointMismatchError", "describe_checkpoint", "BOTTLENECKS"]

#: What relates the bottleneck's positions (``bottleneck``): the paper's L2GMapper or TransUNet's transformer.
BOTTLENECKS = ("l2g", "attention")


class L2GNet(nn.Module):
    """L2GNet (Gorade et al.): a U-Net whose bottleneck relates vector-quantised codes by optimal transport.

    ::

        image (B, C_in, *S)
          -> encoder (stem + 3 residual stages, stride 16)           skips at strides 2, 4, 8
          -> pre-bottleneck: 2 conv blocks                          z_con (B, D, *S/16)
          -> vector quantizer (K codes of size D)                   z_dis, commitment loss
          -> L2GMapper (q references, Sinkhorn on a kernel embedding)
          -> post-bottleneck: 2 conv blocks
          -> U-Net decoder (MONAI's UNetDecoder, 4 up-sampling blocks) and segmentation head
        logits (B, out_channels, *S)

    The defaults are the paper's configuration: ResNet50, ``K = 512`` codes of size ``D = 1024``, ``q = 4``
    references, 10 Sinkhorn iterations.

    **Variants** (the paper's ablations and baselines, as arguments): ``codebook_size=0`` drops the quantizer
    (the mapper relates continuous features; ``quantization_loss`` is a zero, ``codebook_stats`` empty and
    ``quantizer`` is ``None``); ``num_references=0`` drops the L2GMapper (``mapper`` is ``None``: VQUNet); both 0
    give a plain ResNet U-Net with the same bottleneck convolutions. ``bottleneck="attention"`` puts TransUNet's
    transformer layers (:class:`~l2gnet_monai.networks.attention.TransformerBottleneck`) where the mapper was
    (TransUNet itself: with ``codebook_size=0``). ``codebook_init`` and ``code_assignment`` are the quantizer's
    remedies against codebook collapse (:class:`~l2gnet_monai.networks.quantizer.CodebookQuantizer`).

    **Outputs and the quantization loss.** ``forward`` always returns the logits tensor alone, so the
    network drops into MONAI's inferers, ``SupervisedTrainer``/``SupervisedEvaluator`` and TorchScript
    export unchanged. In training mode it also stores the quantizer's commitment loss in
    ``self.quantization_loss`` (a tensor in the autograd graph of that forward pass) and the codebook
    statistics in ``self.codebook_stats``; :class:`l2gnet_monai.losses.L2GNetLoss` (built with
    ``network=...``) takes the loss from there and adds it to Dice + CE. This works under
    ``DistributedDataParallel``, whose wrapper forwards to this module (the loss unwraps ``.module``).

    **Loading weights.** :meth:`load_state_dict` accepts only a state dict that fits this network exactly, also
    when called with ``strict=False`` (as MONAI Label's bundle tasks do): a partial load would leave the missing
    layers random and serve them without a word. A misfit raises :class:`CheckpointMismatchError`, naming the
    missing, unexpected and mis-shaped parameters and what the checkpoint was trained with. The constructor's
    arguments are kept in ``init_args`` (recorded in the training plan, see :mod:`l2gnet_monai.planning.plan`).

    **Input sizes.** Spatial sizes that are not multiples of 16 are zero-padded at the high end and the
    logits cropped back, so any size works; multiples of 16 avoid the padding.

    Args:
        spatial_dims: 2 (the paper) or 3.
        in_channels: image channels.
        out_channels: classes, background included.
        backbone: ``resnet10`` ... ``resnet200`` (torchvision layout, see
            :class:`~l2gnet_monai.networks.encoders.ResNetStages`) or one of MONAI's ``FLEXUNET_BACKBONE``
            EfficientNets ``efficientnet-b0`` ... ``efficientnet-l2``, cut at stride 16 (see
            :class:`~l2gnet_monai.networks.encoders.BackboneStages` and
            :func:`~l2gnet_monai.networks.encoders.supported_backbones`).
        pretrained_encoder: path of a torchvision-format ResNet state dict to load into the encoder
            (e.g. ImageNet ``resnet50-0676ba61.pth``); ``None`` for random initialisation.
        codebook_size: number of codes ``K``; 0: no quantizer.
        codebook_dim: code size ``D``, the width of the bottleneck.
        commitment_cost: weight ``beta`` of the commitment loss.
        codebook_decay: EMA decay of the codebook.
        dead_code_threshold: relative usage below which codes are restarted (0 disables).
        num_references: references ``q`` of the L2GMapper; 0: no mapper (with ``bottleneck="l2g"``).
        reference_grid: grid of each reference (``t`` = product); an int is used along every axis.
            In ``"full"`` mode it should be the bottleneck's grid at the training size (input / 16).
        mapper_mode: ``"pooled"`` (linear in the number of positions) or ``"full"`` (one bin per position).
        num_anchors: Nyström anchors ``m`` of the kernel embedding.
        kernel_sigma: bandwidth of the Nyström kernel.
        sinkhorn_iterations: Sinkhorn iterations.
        sinkhorn_epsilon: entropic regularisation of the transport problem.
        position_sigma: bandwidth of the positional prior, relative to the image extent.
        bottleneck_kernel_size: kernel size of the pre- and post-bottleneck conv blocks.
        decoder_channels: output channels of the 4 decoder blocks (strides 8, 4, 2, 1).
        norm: normalisation of the bottleneck and decoder blocks (MONAI's layer factory spec).
        act: activation of the bottleneck and decoder blocks.
        upsample: decoder up-sampling, ``"nontrainable"``, ``"deconv"`` or ``"pixelshuffle"``.
        codebook_init: ``"sample"`` (random encoder outputs of the first batch) or ``"kmeans"``.
        code_assignment: ``"nearest"`` or ``"sinkhorn"`` (balanced assignment in training).
        bottleneck: ``"l2g"`` (the L2GMapper) or ``"attention"`` (transformer layers); see :data:`BOTTLENECKS`.
        attention_layers: transformer layers of the ``"attention"`` bottleneck (TransUNet's ViT-B: 12).
        attention_heads: its attention heads; must divide ``codebook_dim`` (8: 128 channels per head at the
            paper's width, 16 in the smoke settings).
        attention_grid: grid of its learned position embedding, interpolated to other grids (TransUNet: 14, the
            bottleneck of 224 x 224 inputs).

    Raises:
        ValueError: ``spatial_dims``, ``decoder_channels`` or ``bottleneck`` out of range.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 9,
        backbone: str = "resnet50",
        pretrained_encoder: Optional[str] = None,
        codebook_size: int = 512,
        codebook_dim: int = 1024,
        commitment_cost: float = 0.25,
        codebook_decay: float = 0.99,
        dead_code_threshold: float = 0.03,
        num_references: int = 4,
        reference_grid: Union[Sequence[int], int] = 8,
        mapper_mode: str = "pooled",
        num_anchors: int = 256,
        kernel_sigma: float = 0.5,
        sinkhorn_iterations: int = 10,
        sinkhorn_epsilon: float = 0.5,
        position_sigma: float = 0.1,
        bottleneck_kernel_size: int = 1,
        decoder_channels: Sequence[int] = (128, 64, 32, 16),
        norm: Union[str, tuple] = ("batch", {"eps": 1e-3, "momentum": 0.1}),
        act: Union[str, tuple] = ("relu", {"inplace": True}),
        upsample: str = "nontrainable",
        codebook_init: str = "sample",
        code_assignment: str = "nearest",
        bottleneck: str = "l2g",
        attention_layers: int = 12,
        attention_heads: int = 8,
        attention_grid: Union[Sequence[int], int] = 14,
    ) -> None:
        super().__init__()
        #: the arguments that shape the network (JSON-serialisable), as the training plan records them
        self.init_args: Dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "backbone": backbone,
            "codebook_size": codebook_size,
            "codebook_dim": codebook_dim,
            "commitment_cost": commitment_cost,
            "codebook_decay": codebook_decay,
            "dead_code_threshold": dead_code_threshold,
            "num_references": num_references,
            "reference_grid": reference_grid if isinstance(reference_grid, int) else list(reference_grid),
            "mapper_mode": mapper_mode,
            "num_anchors": num_anchors,
            "kernel_sigma": kernel_sigma,
            "sinkhorn_iterations": sinkhorn_iterations,
            "sinkhorn_epsilon": sinkhorn_epsilon,
            "position_sigma": position_sigma,
            "bottleneck_kernel_size": bottleneck_kernel_size,
            "decoder_channels": list(decoder_channels),
            "norm": norm if isinstance(norm, str) else list(norm),
            "act": act if isinstance(act, str) else list(act),
            "upsample": upsample,
            "codebook_init": codebook_init,
            "code_assignment": code_assignment,
            "bottleneck": bottleneck,
            "attention_layers": attention_layers,
            "attention_heads": attention_heads,
            "attention_grid": attention_grid if isinstance(attention_grid, int) else list(attention_grid),
        }
        if spatial_dims not in (2, 3):
            raise ValueError(f"L2GNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(decoder_channels) != 4:
            raise ValueError(
                f"L2GNet: decoder_channels needs 4 entries (strides 8, 4, 2, 1), got {tuple(decoder_channels)}."
            )
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"L2GNet: bottleneck must be one of {BOTTLENECKS}, got {bottleneck!r}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = 16  # the bottleneck's output stride; inputs are padded to a multiple of it

        self.encoder = build_encoder(backbone, spatial_dims=spatial_dims, in_channels=in_channels, num_stages=3)
        if pretrained_encoder is not None:
            if not isinstance(self.encoder, ResNetStages):
                raise ValueError(f"L2GNet: pretrained_encoder loads torchvision ResNets only, not {backbone!r}.")
            load_torchvision_resnet(self.encoder, pretrained_encoder)
        encoder_channels: List[int] = list(self.encoder.out_channels)

        def conv_block(cin: int, cout: int) -> Convolution:
            return Convolution(spatial_dims, cin, cout, kernel_size=bottleneck_kernel_size, norm=norm, act=act)

        self.pre_bottleneck = nn.Sequential(
            conv_block(encoder_channels[-1], codebook_dim), conv_block(codebook_dim, codebook_dim)
        )
        self.quantizer = None  # codebook_size=0: none (TorchScript drops the branches that use it)
        if codebook_size > 0:
            self.quantizer = CodebookQuantizer(
                spatial_dims,
                num_embeddings=codebook_size,
                embedding_dim=codebook_dim,
                commitment_cost=commitment_cost,
                decay=codebook_decay,
                dead_code_threshold=dead_code_threshold,
                codebook_init=codebook_init,
                code_assignment=code_assignment,
            )
        self.mapper = None  # num_references=0: none
        if bottleneck == "attention":
            self.mapper = TransformerBottleneck(
                spatial_dims, codebook_dim, attention_layers, attention_heads, position_grid=attention_grid
            )
        elif num_references > 0:
            self.mapper = L2GMapper(
                spatial_dims,
                in_channels=codebook_dim,
                out_channels=codebook_dim,
                num_references=num_references,
                reference_grid=reference_grid,
                mode=mapper_mode,
                num_anchors=num_anchors,
                kernel_sigma=kernel_sigma,
                sinkhorn_iterations=sinkhorn_iterations,
                sinkhorn_epsilon=sinkhorn_epsilon,
                position_sigma=position_sigma,
            )
        bottleneck_out = 2 * decoder_channels[0]
        self.post_bottleneck = nn.Sequential(
            conv_block(codebook_dim, codebook_dim), conv_block(codebook_dim, bottleneck_out)
        )
        self.decoder = UNetDecoder(
            spatial_dims=spatial_dims,
            encoder_channels=[in_channels] + encoder_channels[:-1] + [bottleneck_out],
            decoder_channels=list(decoder_channels),
            act=act,
            norm=norm,
            dropout=0.0,
            bias=False,
            upsample=upsample,
            pre_conv="default",
            interp_mode="nearest",
            align_corners=None,
            is_pad=True,
        )
        self.segmentation_head = SegmentationHead(spatial_dims, decoder_channels[-1], out_channels, kernel_size=3)
        self.quantization_loss: Optional[torch.Tensor] = None
        self.codebook_stats: Dict[str, torch.Tensor] = {}
        # which forward pass recorded quantization_loss, and which was read last (for take_quantization_loss)
        self._forward_count = 0
        self._recorded_at = 0
        self._read_at = 0
        self._unread_overwritten = 0

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pads: List[int] = []
        for size in x.shape[2:][::-1]:
            pads += [0, (self.stride - size % self.stride) % self.stride]
        if sum(pads) == 0:
            return x
        return nn.functional.pad(x, pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images ``(B, in_channels, *spatial)``, any spatial size.

        Returns:
            Logits ``(B, out_channels, *spatial)``. In training mode, ``self.quantization_loss`` and
            ``self.codebook_stats`` are set as a side effect (see the class docstring).
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"L2GNet: expected a {self.spatial_dims + 2}-D input (batch, {self.in_channels} channels, "
                f"{self.spatial_dims} spatial dims), got shape {x.shape}."
            )
        spatial = x.shape[2:]
        features = self.encoder(self._pad(x))
        z = self.pre_bottleneck(features[-1])
        quantization_loss = torch.zeros((), dtype=torch.float32, device=x.device)
        if self.quantizer is not None:
            z, quantization_loss, _ = self.quantizer(z)
        if self.mapper is not None:
            z = self.mapper(z)
        z = self.post_bottleneck(z)
        decoded = self.decoder(features[:-1] + [z], len(features) - 1)
        logits = self.segmentation_head(decoded)
        if not torch.jit.is_scripting():
            self._record_outputs(quantization_loss)
        if self.spatial_dims == 2:
            return logits[:, :, : spatial[0], : spatial[1]]
        return logits[:, :, : spatial[0], : spatial[1], : spatial[2]]

    @torch.jit.unused
    @torch.compiler.disable  # mutates Python counters: compiled, every new count would recompile the graph
    def _record_outputs(self, quantization_loss: torch.Tensor) -> None:
        self._forward_count += 1
        if not self.training:
            return
        if self.quantization_loss is not None:
            self._unread_overwritten += 1
        self.quantization_loss = quantization_loss
        self._recorded_at = self._forward_count
        if self.quantizer is None:
            return
        # tensors, left on the device: reading them (a host sync) is up to the consumer
        self.codebook_stats = {
            "perplexity": self.quantizer.perplexity,
            "usage": self.quantizer.usage,
            "restarted_codes": self.quantizer.restarted_codes,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load weights that fit this network exactly, whatever ``strict`` says.

        Entries that are this network's own tensors count as missing: that is how a lenient loader (MONAI's
        ``CheckpointLoader(strict_shape=False)``, ``copy_model_state``) hands over what a checkpoint lacked. To
        reload a network's own weights, pass a copy (``{k: v.clone() for k, v in net.state_dict().items()}``).

        Args:
            state_dict: parameters and buffers, as :meth:`state_dict` returns them.
            strict: accepted for compatibility; a partial or mis-shaped state dict is refused either way.
            assign: as in :meth:`torch.nn.Module.load_state_dict`.

        Raises:
            CheckpointMismatchError: missing, unexpected or mis-shaped entries; the message lists them and says
                what network the checkpoint holds.
        """
        check_fits(state_dict, self.state_dict())
        return super().load_state_dict(state_dict, strict=True, assign=assign)

    @torch.jit.unused
    def explain(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The bottleneck's codes, transport plans, bins and codebook usage for images ``x`` ``(B, C_in, *S)``.

        See :func:`l2gnet_monai.networks.explain.explain` for the returned tensors and their shapes.
        """
        return explain_bottleneck(self, x)

    def pop_quantization_loss(self) -> Optional[torch.Tensor]:
        """The quantization loss of the last training forward pass, cleared so that it is added only once.

        Lenient: ``None`` when there is none. :meth:`take_quantization_loss` checks that it is the right one.
        """
        loss, self.quantization_loss = self.quantization_loss, None
        self._read_at, self._unread_overwritten = self._forward_count, 0
        return loss

    @torch.jit.unused
    def take_quantization_loss(self) -> torch.Tensor:
        """The quantization loss of the last forward pass, which must be a training pass not read before.

        What :class:`~l2gnet_monai.losses.L2GNetLoss` calls, so that the term cannot go missing silently.

        Returns:
            The scalar loss, in the autograd graph of that forward pass; it is cleared here.

        Raises:
            RuntimeError: no training forward pass of this module recorded one (none ran, or it ran in a
                ``nn.DataParallel`` replica), the last forward pass ran in eval mode (the recorded loss is
                stale), the loss of the last pass was read already, or several training passes ran since the
                last read (all but the last one's losses would be lost). A stale or overwritten record is
                discarded before raising.
        """
        count = self._forward_count
        if self.quantization_loss is None:
            if count == 0:
                reason = (
                    "no forward pass of this network has run (under nn.DataParallel the replicas run it and "
                    "their records are lost: use DistributedDataParallel)"
                )
            elif self._read_at == count:
                reason = f"the quantization loss of its last forward pass (#{count}) was read already"
            else:
                reason = f"its last forward pass (#{count}) ran in eval mode, which records none"
            raise RuntimeError(f"No quantization loss to take from L2GNet: {reason}. {self._TAKE_ADVICE}")
        if self._unread_overwritten:
            overwritten = self._unread_overwritten
            self.pop_quantization_loss()  # discarded, so that one mistake gives one error
            raise RuntimeError(
                f"L2GNet ran {overwritten + 1} training forward passes since its quantization loss was "
                f"last read; the losses of all but the last would be lost. {self._TAKE_ADVICE}"
            )
        if self._recorded_at != count:
            self.pop_quantization_loss()
            raise RuntimeError(
                f"The quantization loss recorded by L2GNet is stale: it comes from forward pass "
                f"#{self._recorded_at}, and {count - self._recorded_at} eval-mode pass(es) ran since. "
                f"{self._TAKE_ADVICE}"
            )
        loss = self.pop_quantization_loss()
        assert loss is not None
        return loss

    _TAKE_ADVICE = (
        "Compute the loss once after each training forward pass, on its logits "
        "(net.pop_quantization_loss() discards a recorded loss you do not want)."
    )
