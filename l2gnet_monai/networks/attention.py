# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A TransUNet-style bottleneck: transformer layers over the positions of a feature map."""

from typing import List, Sequence, Union

import torch
from torch import nn

__all__ = ["TransformerBottleneck", "PreNormTransformerLayer"]


class PreNormTransformerLayer(nn.Module):
    """ViT's pre-norm transformer layer: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))`` (GELU), on ``(B, n, D)``.

    The attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (flash or memory-efficient
    kernels where the device has them). The same layer as MONAI's ``TransformerBlock`` (which needs ``einops``, not
    a dependency of this package) and as torch's ``TransformerEncoderLayer(norm_first=True)``, written out so that
    it has one code path in training and evaluation (torch's takes a fused kernel in eval mode, which
    ``FlopCounterMode`` does not count and ``torch.jit.trace`` does not reproduce).

    Args:
        channels: token width ``D``.
        num_heads: attention heads; must divide ``channels``.
        mlp_channels: hidden width of the MLP.
        dropout: dropout rate of the attention weights, the attention output and the MLP.
    """

    def __init__(self, channels: int, num_heads: int, mlp_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, mlp_channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_channels, channels),
            nn.Dropout(dropout),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: tokens ``(B, n, D)``.

        Returns:
            ``(B, n, D)``.
        """
        batch, n, channels = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, n, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, n, D / heads)
        dropout = self.dropout if self.training else 0.0
        attended = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(batch, n, channels)))
        return x + self.mlp(self.norm2(x))


class TransformerBottleneck(nn.Module):
    """Pre-norm transformer layers over the ``n`` positions of a ``(B, D, *g)`` map, as TransUNet's bottleneck.

    ::

        x (B, D, *g) -> tokens (B, n, D) + position embedding (interpolated to g)
          -> L x [x + MSA(LN(x)); x + MLP(LN(x))]   (PreNormTransformerLayer)
          -> LN -> (B, D, *g)

    The layers are :class:`PreNormTransformerLayer` (multi-head self-attention and a GELU MLP, each behind a
    LayerNorm and a residual connection: ViT's pre-norm layer); a final LayerNorm follows, as in ViT's and
    TransUNet's encoder. Cost: ``O(L n^2 D)`` time and ``O(n^2)`` memory per head for the attention (less with
    flash kernels), ``O(L n D^2)`` for the projections and MLPs.

    **Position embedding.** Learned, on a fixed grid (``position_grid``, TransUNet's 14 x 14 for 224 x 224 inputs
    at stride 16), and resized by (bi/tri)linear interpolation to the grid of each input, as ViT does when it is
    fine-tuned at another resolution. A learned embedding is what TransUNet uses; interpolating it gives any input
    size a smooth embedding that equals the learned one at the training size. A sinusoidal embedding would need
    no interpolation, but is not what the compared model learns.

    Args:
        spatial_dims: 2 or 3.
        channels: the width ``D`` of the map and of the tokens.
        num_layers: transformer layers ``L`` (TransUNet's ViT-B: 12).
        num_heads: attention heads; must divide ``channels``.
        mlp_ratio: width of the MLP's hidden layer, in multiples of ``channels`` (ViT: 4).
        position_grid: grid of the learned position embedding; an int is used along every axis.
        dropout: dropout rate of the attention and MLP outputs.

    Raises:
        ValueError: ``num_heads`` does not divide ``channels``, or ``num_layers`` < 1.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_layers: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        position_grid: Union[Sequence[int], int] = 14,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"TransformerBottleneck: num_layers must be >= 1, got {num_layers}.")
        if channels % num_heads != 0:
            raise ValueError(f"TransformerBottleneck: num_heads ({num_heads}) must divide channels ({channels}).")
        grid = [position_grid] * spatial_dims if isinstance(position_grid, int) else [int(g) for g in position_grid]
        if len(grid) != spatial_dims:
            raise ValueError(f"TransformerBottleneck: position_grid needs {spatial_dims} entries, got {grid}.")
        self.spatial_dims = spatial_dims
        self.position_grid: List[int] = grid
        self.position_embedding = nn.Parameter(torch.zeros([1, channels] + grid))
        nn.init.trunc_normal_(self.position_embedding, std=0.02)
        mlp_channels = int(mlp_ratio * channels)
        self.layers = nn.ModuleList(
            [PreNormTransformerLayer(channels, num_heads, mlp_channels, dropout) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(channels)

    def positions_for(self, grid: List[int]) -> torch.Tensor:
        """The position embedding on ``grid``: ``(1, D, *grid)``, the learned one interpolated when it differs."""
        if grid == self.position_grid:
            return self.position_embedding
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return nn.functional.interpolate(self.position_embedding, size=grid, mode=mode, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: features ``(B, D, *g)``.

        Returns:
            ``(B, D, *g)``, each position updated from all others.
        """
        grid = [int(s) for s in x.shape[2:]]
        x = x + self.positions_for(grid).to(x.dtype)
        tokens = x.flatten(2).transpose(1, 2)  # (B, n, D)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm(tokens)
        return tokens.transpose(1, 2).reshape(x.shape)
