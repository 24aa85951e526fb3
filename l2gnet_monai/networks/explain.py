# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What L2GNet's bottleneck does with an image: codes, transport plans, bins, codebook usage.

:func:`explain` runs the network once (in eval mode, without gradients) and reads, from that pass, the vector
quantizer's code at each bottleneck position and the L2GMapper's input; from the mapper's own public pieces
(``embedding``, ``references_for``, :func:`positional_prior`, ``transport_plan``) it then recomputes the transport
plan of every reference, exactly as the mapper's forward pass does (the tests check that pooling with these
plans reproduces the mapper's output).

:class:`CodeUsageRecorder` attaches to a network that an evaluator runs and counts, over all the images it sees,
how many pixels of each predicted class use each code: the per-class code histograms of the evaluation report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from l2gnet_monai.networks.l2g_mapper import L2GMapper, positional_prior

__all__ = ["explain", "CodeUsageRecorder", "codes_to_pixels"]


@torch.no_grad()
def explain(network: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The bottleneck's view of a batch of images.

    The network runs in eval mode (restored afterwards), so nothing it learns (codebook EMA, batch-norm
    statistics) changes; the outputs are deterministic for fixed weights and input.

    Args:
        network: an :class:`~l2gnet_monai.networks.L2GNet`.
        x: images ``(B, in_channels, *S)`` as the network takes them (2-D slices for the paper's model).

    Raises:
        ValueError: the network has no quantizer or no L2GMapper (a variant), or ``x`` has the wrong shape.

    Returns:
        A dict of tensors, with ``g`` the bottleneck grid (``S / 16`` rounded up), ``n = prod(g)`` positions,
        ``q`` references of ``t`` bins (``t = prod(reference_grid)`` in pooled mode, ``n`` in full mode) and
        ``K`` codes:

        * ``"logits"``: ``(B, out_channels, *S)``, the network's output;
        * ``"codes"``: ``(B, *g)`` long, the code index at each bottleneck position;
        * ``"code_counts"``: ``(B, K)`` long, how many positions of each image use each code (codebook usage);
        * ``"plans"``: ``(B, q, n, t)``, the transport plan of each reference: ``plans[b, r, i, j]`` is the mass
          position ``i`` sends to bin ``j``; rows sum to the row marginal ``1 / n`` (up to the convergence of the
          fixed number of Sinkhorn iterations), columns to ``1 / t``;
        * ``"prior"``: ``(n, t)``, the positional prior ``S``; the mapper pools with the weights ``S * P``;
        * ``"content"``: ``(B, q, n, t)``, the similarity ``<psi(x_i), z_j>`` before the prior weights it (the
          plan's cost is ``-content * prior``): what the image's content alone asks of the plan;
        * ``"bins"``: ``(B, q, *g)`` long, the bin each position sends most of its mass to (a partition of the
          positions, one per reference).
    """
    if getattr(network, "quantizer", None) is None or not isinstance(getattr(network, "mapper", None), L2GMapper):
        raise ValueError(
            "L2GNet.explain: explains the codes and transport plans of an L2GNet with both a quantizer and an "
            "L2GMapper; this network was built without one (codebook_size=0, num_references=0 or "
            "bottleneck='attention')."
        )
    if x.ndim != network.spatial_dims + 2:
        raise ValueError(
            f"L2GNet.explain: expected images of shape (batch, {network.in_channels}, "
            f"{network.spatial_dims} spatial dims), got {tuple(x.shape)}."
        )
    captured: dict[str, torch.Tensor] = {}

    def keep_quantizer_output(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        captured["quantized"], _, captured["codes"] = output

    was_training = network.training
    network.eval()
    handle = network.quantizer.register_forward_hook(keep_quantizer_output)
    try:
        logits = network(x)
    finally:
        handle.remove()
        network.train(was_training)

    mapper = network.mapper
    quantized = captured["quantized"]
    features = quantized.double() if quantized.dtype == torch.float64 else quantized.float()
    grid = [int(s) for s in features.shape[2:]]
    psi = mapper.embedding(features.flatten(2).transpose(1, 2))  # (B, n, m)
    references = mapper.references_for(grid).to(psi.dtype)  # (q, t, m)
    out_grid = grid if mapper.mode == "full" else mapper.reference_grid
    prior = positional_prior(grid, out_grid, mapper.position_sigma, device=x.device).to(psi.dtype)  # (n, t)
    content = torch.einsum("bnm,qtm->bqnt", psi, references)  # (B, q, n, t)
    plans = mapper.transport_plan(-content * prior)

    codes = captured["codes"].long()
    batch = codes.shape[0]
    num_codes = int(network.quantizer.num_embeddings)
    code_counts = torch.stack([torch.bincount(c.flatten(), minlength=num_codes) for c in codes])
    bins = plans.argmax(dim=-1).reshape([batch, plans.shape[1]] + grid)
    return {
        "logits": logits,
        "codes": codes,
        "code_counts": code_counts,
        "plans": plans,
        "prior": prior,
        "content": content,
        "bins": bins,
    }


def codes_to_pixels(codes: torch.Tensor, spatial: list[int] | tuple[int, ...], stride: int = 16) -> torch.Tensor:
    """Each pixel's code: the bottleneck code map repeated ``stride`` times along each axis, cropped to ``spatial``.

    Args:
        codes: ``(B, *g)`` code indices.
        spatial: the image size ``S``.
        stride: the bottleneck's output stride.

    Returns:
        ``(B, *S)`` code indices.
    """
    out = codes
    for axis in range(1, codes.ndim):
        out = out.repeat_interleave(stride, dim=axis)
    index = (slice(None),) + tuple(slice(0, int(s)) for s in spatial)
    return out[index]


class CodeUsageRecorder:
    """Counts, over every forward pass of a network, the pixels of each predicted class per code.

    While attached, a forward hook on the quantizer keeps the code map of each pass and a hook on the network
    pairs it with the pass's output: each pixel's code (:func:`codes_to_pixels`) is counted under the class
    the network predicts there (``argmax`` of the logits). Tensors stay on the device until
    :meth:`class_code_counts` is read.

    Args:
        network: an :class:`~l2gnet_monai.networks.L2GNet` (or a wrapper whose ``.module`` is one).
        num_classes: classes of the network's output, background included.

    Raises:
        ValueError: the network has no quantizer (``codebook_size=0``, or not an L2GNet); check with
            :meth:`applies_to` first.
    """

    def __init__(self, network: torch.nn.Module, num_classes: int) -> None:
        self.network = getattr(network, "module", network)
        if not self.applies_to(self.network):
            raise ValueError(f"CodeUsageRecorder: {type(self.network).__name__} has no vector quantizer to record.")
        self.num_classes = int(num_classes)
        self.num_codes = int(self.network.quantizer.num_embeddings)
        self._handles: list[Any] = []
        self._codes: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None

    @staticmethod
    def applies_to(network: Any) -> bool:
        """Whether ``network`` (or the ``.module`` it wraps) has a vector quantizer whose codes can be counted."""
        return isinstance(getattr(getattr(network, "module", network), "quantizer", None), nn.Module)

    def attach(self) -> CodeUsageRecorder:
        """Start recording (idempotent)."""
        if not self._handles:
            self._handles = [
                self.network.quantizer.register_forward_hook(self._keep_codes),
                self.network.register_forward_hook(self._count),
            ]
        return self

    def detach(self) -> None:
        """Stop recording; the counts are kept."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self) -> None:
        """Forget the counts."""
        self._codes, self._counts, self._positions = None, None, None

    def _keep_codes(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self._codes = output[2].detach()
        with torch.no_grad():
            positions = torch.bincount(self._codes.flatten().long(), minlength=self.num_codes)
            self._positions = positions if self._positions is None else self._positions + positions

    def _count(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if self._codes is None or not isinstance(output, torch.Tensor):
            return
        codes, self._codes = self._codes, None
        with torch.no_grad():
            classes = output.detach().argmax(dim=1)  # (B, *S)
            pixel_codes = codes_to_pixels(codes.long(), classes.shape[1:], getattr(self.network, "stride", 16))
            channels = max(int(output.shape[1]), self.num_classes)
            flat = classes.long().flatten() * self.num_codes + pixel_codes.flatten()
            counts = torch.bincount(flat, minlength=channels * self.num_codes)
            counts = counts.reshape(channels, self.num_codes)[: self.num_classes]  # classes beyond num_classes: dropped
            self._counts = counts if self._counts is None else self._counts + counts.to(self._counts.device)

    def code_counts(self) -> np.ndarray:
        """``(K,)``: how many bottleneck positions used each code (every forward pass, whatever its output)."""
        if self._positions is None:
            return np.zeros(self.num_codes, dtype=np.int64)
        return self._positions.cpu().numpy().astype(np.int64)

    def class_code_counts(self) -> np.ndarray:
        """``(num_classes, K)`` pixel counts: row ``c`` is the code histogram of the pixels predicted as class ``c``."""
        if self._counts is None:
            return np.zeros((self.num_classes, self.num_codes), dtype=np.int64)
        return self._counts.cpu().numpy().astype(np.int64)
