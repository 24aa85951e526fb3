# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The L2GMapper: a trainable optimal-transport kernel embedding (OTKE) of a feature map.

Implements eq. (3) of the L2GNet paper (after Mialon et al., "A trainable optimal transport embedding
for feature aggregation", ICLR 2021) for feature maps, with a way back to a feature map for the decoder.
"""

import math
from collections.abc import Sequence
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from l2gnet_monai.networks.nystrom import NystromEmbedding
from l2gnet_monai.networks.sinkhorn import sinkhorn

__all__ = ["L2GMapper", "positional_prior", "MAPPER_MODES"]

MAPPER_MODES = ("pooled", "full")


def positional_prior(
    in_grid: List[int], out_grid: List[int], sigma: float, device: Optional[torch.device] = None
) -> torch.Tensor:
    """Gaussian positional similarity between the cells of two grids that cover the same extent.

    ``S_ij = prod_d exp(-((c_d(i) - c'_d(j)) / sigma)^2)`` where ``c_d`` are the cell centres along axis
    ``d`` in ``[0, 1]``. For 1-D grids of equal size this is the paper's
    ``exp(-(i/n - j/n)^2 / sigma^2)``; centres (rather than ``i/n``) keep a coarse reference grid
    aligned with the feature map it pools.

    Args:
        in_grid: spatial shape of the feature map, e.g. ``(h, w)``.
        out_grid: spatial shape of the reference grid, same number of axes.
        sigma: bandwidth relative to the image extent.
        device: device of the result.

    Returns:
        ``S`` of shape ``(prod(in_grid), prod(out_grid))``, row-major over the grid axes.
    """
    if len(in_grid) != len(out_grid):
        raise ValueError(f"positional_prior: grids {in_grid} and {out_grid} differ in dimension.")
    prior = torch.ones(1, 1, device=device)
    for n_in, n_out in zip(in_grid, out_grid):
        centres_in = (torch.arange(n_in, device=device, dtype=torch.float32) + 0.5) / n_in
        centres_out = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) / n_out
        axis = torch.exp(-(((centres_in[:, None] - centres_out[None, :]) / sigma) ** 2))
        prior = (prior[:, None, :, None] * axis[None, :, None, :]).reshape(prior.shape[0] * n_in, -1)
    return prior


class L2GMapper(nn.Module):
    """Optimal-transport kernel embedding of a feature map on ``q`` learnable references.

    For a map ``x`` of ``n`` positions (codes from the vector quantizer) and each reference ``z`` of ``t``
    elements:

    1. ``psi(x_i)``: Nyström embedding (:class:`NystromEmbedding`, learnable anchors) into ``R^m``;
    2. similarity ``K_ij = <psi(x_i), z_j>`` weighted by the positional prior, ``K <- S * K``;
    3. transport plan ``P`` for the cost ``-K`` by log-domain Sinkhorn (row marginals ``1/n``,
       column marginals ``1/t``), then ``W = S * P``;
    4. bins ``y_j = sum_i W_ij psi(x_i) / sum_i W_ij``: eq. (3)'s weighted pooling, normalised by the
       bin's mass (the paper's ``sqrt(t)`` scale is a constant that the normalisation replaces);
    5. back to a map: in ``"full"`` mode there is one bin per position (``t = n``) and position ``i``
       gets ``y_i``; in ``"pooled"`` mode (``t < n``) position ``i`` gets the transport-weighted mean of
       the bins it sent mass to, ``o_i = sum_j W_ij y_j / sum_j W_ij``;
    6. the ``q`` outputs are concatenated, scaled by ``1/sqrt(q)`` and mixed by a 1x1 convolution.

    Cost: ``O(n t (m + iters))`` time and ``O(n t)`` memory per reference; linear in ``n`` in pooled mode
    with ``t`` fixed, quadratic in full mode. The references form a grid (``reference_grid``); in full
    mode, when the feature map's grid differs from it (another input size), the references are resampled
    to the feature map's grid, so that there is always one bin per position.

    Args:
        spatial_dims: number of spatial dimensions of the feature map (2 or 3).
        in_channels: channels ``D`` of the input map.
        out_channels: channels of the output map.
        num_references: number ``q`` of references (the paper's 2-ref and 4-ref variants).
        reference_grid: grid of each reference's ``t`` elements, e.g. ``(8, 8)``; an int ``s`` means
            ``s`` along every axis. In full mode, the feature map's grid at the training input size.
        mode: ``"pooled"`` or ``"full"`` (see above).
        num_anchors: Nyström anchors ``m``, the dimension of the kernel embedding.
        kernel_sigma: bandwidth of the Nyström kernel.
        sinkhorn_iterations: number of Sinkhorn iterations (the paper uses 10).
        sinkhorn_epsilon: entropic regularisation of the transport problem.
        position_sigma: bandwidth of the positional prior relative to the image extent.
    """

    # the positional priors cached by eager calls (see prior_for) stay out of scripted modules
    __jit_ignored_attributes__ = ["_prior_cache"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_references: int = 4,
        reference_grid: Union[Sequence[int], int] = 8,
        mode: str = "pooled",
        num_anchors: int = 256,
        kernel_sigma: float = 0.5,
        sinkhorn_iterations: int = 10,
        sinkhorn_epsilon: float = 0.5,
        position_sigma: float = 0.1,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"L2GMapper: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if mode not in MAPPER_MODES:
            raise ValueError(f"L2GMapper: mode must be one of {MAPPER_MODES}, got {mode!r}.")
        if num_references < 1:
            raise ValueError(f"L2GMapper: num_references must be >= 1, got {num_references}.")
        if sinkhorn_iterations < 1:
            raise ValueError(f"L2GMapper: sinkhorn_iterations must be >= 1, got {sinkhorn_iterations}.")
        if sinkhorn_epsilon <= 0 or position_sigma <= 0:
            raise ValueError(
                "L2GMapper: sinkhorn_epsilon and position_sigma must be > 0, "
                f"got {sinkhorn_epsilon} and {position_sigma}."
            )
        grid = (reference_grid,) * spatial_dims if isinstance(reference_grid, int) else tuple(reference_grid)
        if len(grid) != spatial_dims or min(grid) < 1:
            raise ValueError(
                f"L2GMapper: reference_grid must be a positive int or {spatial_dims} positive ints, "
                f"got {reference_grid}."
            )
        self.spatial_dims = spatial_dims
        self.mode = mode
        self.reference_grid: List[int] = [int(s) for s in grid]
        self.num_references = num_references
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.position_sigma = position_sigma

        self.embedding = NystromEmbedding(in_channels, num_anchors, kernel_sigma=kernel_sigma)
        reference_size = math.prod(self.reference_grid)
        self.references = nn.Parameter(
            torch.randn(num_references, reference_size, num_anchors) / math.sqrt(num_anchors)
        )
        conv_type = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.projection = conv_type(num_references * num_anchors, out_channels, kernel_size=1)
        self._prior_cache: Dict[str, torch.Tensor] = {}

    def references_for(self, grid: List[int]) -> torch.Tensor:
        """The references laid out for a feature map of spatial shape ``grid``, shape ``(q, t, m)``.

        Pooled mode uses them as they are; full mode resamples them (linearly) to ``grid`` when it differs.
        """
        if self.mode == "pooled" or grid == self.reference_grid:
            return self.references
        q, _, m = self.references.shape
        as_image = self.references.transpose(1, 2).reshape([q, m] + self.reference_grid)
        interp_mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        resized = nn.functional.interpolate(as_image, size=grid, mode=interp_mode, align_corners=False)
        return resized.reshape(q, m, -1).transpose(1, 2)

    def transport_plan(self, cost: torch.Tensor) -> torch.Tensor:
        """Entropic OT plan for ``cost`` of shape ``(B, q, n, t)`` with uniform marginals, by :func:`sinkhorn`."""
        return sinkhorn(cost, epsilon=self.sinkhorn_epsilon, num_iters=self.sinkhorn_iterations)

    def prior_for(self, grid: List[int], out_grid: List[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """:func:`positional_prior` between ``grid`` and ``out_grid``, built once per grid, device and dtype.

        The prior depends on shapes only; eager calls reuse the cached tensor (a few hundred KiB per grid).
        Scripted and traced graphs compute it in the graph.
        """
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return positional_prior(grid, out_grid, self.position_sigma, device=device).to(dtype)
        return self._cached_prior(grid, out_grid, device, dtype)

    @torch.jit.unused
    def _cached_prior(
        self, grid: List[int], out_grid: List[int], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        key = f"{grid}:{out_grid}:{self.position_sigma}:{device}:{dtype}"
        prior = self._prior_cache.get(key)
        if prior is None:
            prior = positional_prior(grid, out_grid, self.position_sigma, device=device).to(dtype)
            self._prior_cache[key] = prior
        return prior

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-5 for each reference, concatenated: ``(B, D, *spatial)`` -> ``(B, q * m, *spatial)``."""
        grid = [int(s) for s in x.shape[2:]]
        features = x.flatten(2).transpose(1, 2)  # (B, n, D)
        psi = self.embedding(features)  # (B, n, m)
        references = self.references_for(grid).to(psi.dtype)  # (q, t, m)
        out_grid = grid if self.mode == "full" else self.reference_grid
        prior = self.prior_for(grid, out_grid, x.device, psi.dtype)  # (n, t)
        similarity = torch.einsum("bnm,qtm->bqnt", psi, references) * prior
        weights = self.transport_plan(-similarity) * prior  # (B, q, n, t)
        tiny = 1e-12
        bins = torch.einsum("bqnt,bnm->bqtm", weights, psi) / weights.sum(dim=2).unsqueeze(-1).clamp_min(tiny)
        if self.mode == "full":
            mapped = bins
        else:
            mapped = torch.einsum("bqnt,bqtm->bqnm", weights, bins) / weights.sum(dim=3).unsqueeze(-1).clamp_min(tiny)
        batch, q, n, m = mapped.shape
        return mapped.permute(0, 1, 3, 2).reshape([batch, q * m] + grid) / math.sqrt(q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: feature map ``(B, D, *spatial)``.

        Returns:
            The embedded map ``(B, out_channels, *spatial)`` in ``x``'s dtype. The optimal-transport
            part runs in float32 also under autocast.
        """
        features = x.double() if x.dtype == torch.float64 else x.float()
        if torch.jit.is_scripting():
            mapped = self.embed_map(features)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                mapped = self.embed_map(features)
        return self.projection(mapped.to(x.dtype))
