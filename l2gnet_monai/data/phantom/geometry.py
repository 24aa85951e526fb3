# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Where the phantom's structures are: the voxel grid in millimetres, its NIfTI affine and the shape primitives.

Coordinates are anatomical millimetres: x to the patient's left, y posterior, z superior. A :class:`Blob`
(deformed ellipsoid) or :class:`Tube` (smooth curve with a radius) is sampled once, independently of the grid,
and gives its implicit function (negative inside) over the grid's voxels when painted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

__all__ = ["WHOLE", "Blob", "Box", "Grid", "Tube", "phantom_affine", "rotation"]

#: A box of voxels: one slice per axis.
Box = tuple[slice, slice, slice]

#: The box of the whole grid.
WHOLE: Box = (slice(None), slice(None), slice(None))


def phantom_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """The NIfTI affine of a phantom volume: ``diag(-sx, -sy, sz)``, volume centred on the origin.

    Args:
        shape: ``(H, W, D)`` voxels.
        spacing: ``(sx, sy, sz)`` in millimetres.

    Returns:
        a ``(4, 4)`` float64 affine (voxel index to RAS+ millimetres).
    """
    sx, sy, sz = (float(s) for s in spacing)
    h, w, d = (int(n) for n in shape)
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (h - 1) / 2.0, sy * (w - 1) / 2.0, -sz * (d - 1) / 2.0]
    return affine


class Grid:
    """Voxel centres in the phantom's anatomical frame (mm): x to the patient's left, y posterior, z superior."""

    def __init__(self, shape: Sequence[int], spacing: Sequence[float], z_shift: float) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.axes = [
            ((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * s).astype(np.float32)
            for n, s in zip(self.shape, self.spacing)
        ]
        self.axes[2] = self.axes[2] + np.float32(z_shift)

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> Optional[Box]:
        """The voxel box covering the world box ``[lo, hi]``, or ``None`` when it misses the grid."""
        slices = []
        for axis, a, b in zip(self.axes, lo, hi):
            i0 = int(np.searchsorted(axis, a, side="left"))
            i1 = int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return tuple(slices)  # type: ignore[return-value]

    def open(self, box: Box, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, ...]:
        """Broadcastable coordinates ``(h,1,1), (1,w,1), (1,1,d)`` of ``box`` relative to ``origin``."""
        x = self.axes[0][box[0]] - np.float32(origin[0])
        y = self.axes[1][box[1]] - np.float32(origin[1])
        z = self.axes[2][box[2]] - np.float32(origin[2])
        return x[:, None, None], y[None, :, None], z[None, None, :]


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (radians); its columns are the local axes."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    cy, sy = math.cos(pitch), math.sin(pitch)
    cx, sx = math.cos(roll), math.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return rz @ ry @ rx


class Blob:
    """A deformed ellipsoid: ``|R^T (p - c) / a| - 1 - sum_m amp_m cos(k_m . u + phase_m) < 0``."""

    def __init__(
        self,
        rng: np.random.Generator,
        center: Sequence[float],
        semi: Sequence[float],
        angles: Sequence[float] = (0.0, 0.0, 0.0),
        lumpiness: float = 0.06,
        modes: int = 4,
    ) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.semi = np.asarray(semi, dtype=np.float64)
        self.rot = rotation(*angles)
        directions = rng.normal(size=(modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.k = directions * rng.uniform(1.5, 3.5, size=(modes, 1))
        self.phase = rng.uniform(0.0, 2.0 * math.pi, size=modes)
        self.amp = rng.uniform(0.3, 1.0, size=modes) * lumpiness

    def field(self, grid: Grid) -> tuple[Optional[Box], Optional[np.ndarray], list[np.ndarray]]:
        """``(box, f, u)``: the voxel box, the implicit function (negative inside) and local coordinates."""
        reach = float(self.semi.max()) * (1.0 + float(self.amp.sum())) + 1.0
        box = grid.box(self.center - reach, self.center + reach)
        if box is None:
            return None, None, []
        x, y, z = grid.open(box, self.center)
        u = [
            (x * np.float32(self.rot[0, c]) + y * np.float32(self.rot[1, c]) + z * np.float32(self.rot[2, c]))
            / np.float32(self.semi[c])
            for c in range(3)
        ]
        f = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2) - np.float32(1.0)
        for k, phase, amp in zip(self.k, self.phase, self.amp):
            arg = u[0] * np.float32(k[0]) + u[1] * np.float32(k[1]) + u[2] * np.float32(k[2]) + np.float32(phase)
            f -= np.float32(amp) * np.cos(arg)
        return box, f, u


class Tube:
    """A tube along a smooth curve through control points; radius interpolated along it (mm)."""

    def __init__(
        self,
        rng: np.random.Generator,
        points: Sequence[Sequence[float]],
        radii: Sequence[float],
        wobble: float = 0.1,
        z_scale: float = 1.0,
        step: float = 2.0,
    ) -> None:
        ctrl = np.asarray(points, dtype=np.float64)
        rad = np.asarray(radii, dtype=np.float64)
        seg = np.linalg.norm(np.diff(ctrl, axis=0), axis=1)
        arclen = np.concatenate([[0.0], np.cumsum(seg)])
        n = max(int(arclen[-1] / step) + 2, 2)
        t = np.linspace(0.0, arclen[-1], n)
        path = np.stack([np.interp(t, arclen, ctrl[:, c]) for c in range(3)], axis=1)
        if n > 6:  # round the corners of the polyline
            kernel = np.ones(5) / 5.0
            padded = np.concatenate([np.repeat(path[:1], 2, 0), path, np.repeat(path[-1:], 2, 0)])
            path = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(3)], axis=1)
        radius = np.interp(t, arclen, rad)
        freq = rng.uniform(0.02, 0.06)
        radius *= 1.0 + wobble * np.sin(2.0 * math.pi * freq * t + rng.uniform(0.0, 2.0 * math.pi))
        self.path, self.radius, self.z_scale = path, radius, z_scale

    def field(self, grid: Grid) -> tuple[Optional[Box], Optional[np.ndarray]]:
        """``(box, f)``: approximate signed distance (mm) to the tube surface, negative inside."""
        reach = float(self.radius.max()) / min(self.z_scale, 1.0) + 1.0
        box = grid.box(self.path.min(0) - reach, self.path.max(0) + reach)
        if box is None:
            return None, None
        x, y, z = grid.open(box)
        zs = np.float32(self.z_scale)
        f = np.full((x.shape[0], y.shape[1], z.shape[2]), np.inf, dtype=np.float32)
        for (px, py, pz), r in zip(self.path.astype(np.float32), self.radius.astype(np.float32)):
            d = np.sqrt((x - px) ** 2 + (y - py) ** 2 + ((z - pz) * zs) ** 2) - r
            np.minimum(f, d, out=f)
        return box, f
