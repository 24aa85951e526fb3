# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What the phantom's structures look like: the canvas they are painted on, texture fields and CT noise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
from scipy import ndimage

from l2gnet_monai.data.phantom.geometry import WHOLE, Blob, Box, Grid, Tube
from l2gnet_monai.data.phantom.spec import PHANTOM_HU

__all__ = ["Canvas", "correlated_noise", "smooth_field"]


class Canvas:
    """The HU image, the label map, texture fields and the masks that structures are clipped to."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.image = np.full(grid.shape, PHANTOM_HU["air"], dtype=np.float32)
        self.label = np.zeros(grid.shape, dtype=np.uint8)
        self.masks: dict[str, np.ndarray] = {}
        self.textures: dict[str, np.ndarray] = {}

    def tex(self, name: str, box: Box = WHOLE) -> np.ndarray:
        """A texture field (unit std) over ``box`` (the whole grid by default)."""
        return self.textures[name][box]

    def paint(
        self,
        box: Optional[Box],
        mask: Optional[np.ndarray],
        hu: Union[float, np.ndarray],
        label: Optional[int] = None,
        clip: Optional[str] = "abdomen",
    ) -> None:
        """Set ``hu`` (scalar or box-shaped) and optionally ``label`` where ``mask`` (box-shaped) holds.

        Args:
            box: voxel box of ``mask``; nothing happens when ``None``.
            mask: boolean array over ``box`` (broadcastable to it).
            hu: intensity, a scalar or an array broadcastable to ``box``.
            label: label value to write, or ``None`` to leave the labels.
            clip: name of a mask in ``self.masks`` that limits the painting, or ``None``.
        """
        if box is None or mask is None:
            return
        shape = self.image[box].shape
        mask = np.broadcast_to(mask, shape)
        if clip is not None:
            mask = mask & self.masks[clip][box]
        if not mask.any():
            return
        image = self.image[box]
        image[mask] = hu if np.ndim(hu) == 0 else np.broadcast_to(hu, shape)[mask]
        if label is not None:
            self.label[box][mask] = label

    def fill(
        self,
        shape: Union[Blob, Tube],
        hu: Union[float, np.ndarray],
        label: Optional[int] = None,
        clip: Optional[str] = "abdomen",
    ) -> None:
        """:meth:`paint` the inside of a blob or tube (where its implicit function is negative).

        ``hu`` is a scalar or an array over the whole grid; ``label`` and ``clip`` are as in :meth:`paint`.
        """
        box, f = shape.field(self.grid)[:2]
        if box is not None:
            self.paint(box, f < 0, hu if np.ndim(hu) == 0 else hu[box], label, clip)


def smooth_field(rng: np.random.Generator, grid: Grid, correlation_mm: float) -> np.ndarray:
    """Zero-mean, unit-std random field, smooth over about ``correlation_mm`` (separable Gaussian synthesis).

    White noise on a coarse lattice (node spacing ``correlation_mm / 2``) is spread to the voxels by
    Gaussian kernels, one small matrix per axis, so the cost is a few tensor products.
    """
    step = correlation_mm / 2.0
    weights = []
    for axis in grid.axes:
        lo, hi = float(axis[0]) - 2 * step, float(axis[-1]) + 2 * step
        nodes = np.arange(lo, hi + step, step, dtype=np.float32)
        weights.append(np.exp(-0.5 * ((axis[:, None] - nodes[None, :]) / np.float32(step)) ** 2).astype(np.float32))
    coarse = rng.standard_normal(tuple(w.shape[1] for w in weights), dtype=np.float32)
    field = np.einsum("ia,abc->ibc", weights[0], coarse, optimize=True)
    field = np.einsum("jb,ibc->ijc", weights[1], field, optimize=True)
    field = np.einsum("kc,ijc->ijk", weights[2], field, optimize=True)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field.astype(np.float32, copy=False)


def correlated_noise(rng: np.random.Generator, shape: Sequence[int], sigma: Sequence[float]) -> np.ndarray:
    """Unit-std Gaussian noise blurred by ``sigma`` voxels (CT noise is correlated in-plane)."""
    white = rng.standard_normal(tuple(shape), dtype=np.float32)
    noise = ndimage.gaussian_filter(white, sigma=sigma, mode="wrap")
    noise /= max(float(noise.std()), 1e-6)
    return noise
