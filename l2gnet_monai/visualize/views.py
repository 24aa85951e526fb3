# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""One view for every picture: a slice of a volume across a RAS axis, as radiologists read it, at true proportions.

A volume's voxel axes may run in any anatomical direction (LPS for most CT, PIR for a sagittal MRI stack, RAS after
``Orientationd("RAS")``). :func:`slice_view` reads them from the voxel-to-world affine and returns a
:class:`SliceView` that cuts the volume across the plan's slicing axis (a RAS axis, see
:mod:`l2gnet_monai.planning.geometry`: 0 sagittal, 1 coronal, 2 axial) and lays the slice out in the radiological
convention:

============  =====================  =============================
plane         top of the picture     left of the picture
============  =====================  =============================
axial         anterior               the patient's right
coronal       superior               the patient's right
sagittal      superior               anterior
============  =====================  =============================

Pixels are drawn at their physical proportions: :attr:`SliceView.aspect` is the height of a screen pixel over its
width in mm (matplotlib's ``imshow(aspect=...)``), and :meth:`SliceView.square_pixels` resamples a screen image for
writers without an aspect (TensorBoard). The report, the inference preview, the TensorBoard overlays and
``l2gnet-monai explain`` all draw through this module, and caption every panel with :meth:`SliceView.caption`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PLANES", "SliceView", "slice_view", "orientation_letters"]

#: Per RAS slicing axis: the plane's name, the RAS axis running down the screen and the one running to the right
#: (both drawn towards their negative end: posterior/inferior downwards, the patient's left/posterior rightwards).
PLANES: dict[int, tuple[str, int, int]] = {0: ("sagittal", 2, 1), 1: ("coronal", 2, 0), 2: ("axial", 1, 0)}

_POSITIVE = "RAS"
_NEGATIVE = "LPI"
_WORDS = {
    "R": "the patient's right",
    "L": "the patient's left",
    "A": "anterior",
    "P": "posterior",
    "S": "superior",
    "I": "inferior",
}


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)


def _orientation(affine: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(ras_axis, sign)`` of each voxel axis and the voxel sizes (mm) of a ``(4, 4)`` (or ``(3, 3)``) affine."""
    import nibabel as nib

    matrix = np.eye(4)
    given = _as_array(affine)
    if given.shape not in ((4, 4), (3, 3)):
        raise ValueError(f"slice_view: the affine must be (4, 4) or (3, 3), got shape {given.shape}.")
    matrix[:3, :3] = given[:3, :3]
    orientation = nib.orientations.io_orientation(matrix)
    if np.isnan(orientation).any():
        raise ValueError(f"slice_view: the affine {given[:3, :3].tolist()} has no anatomical direction per axis.")
    return orientation, nib.affines.voxel_sizes(matrix)


@dataclass(frozen=True)
class SliceView:
    """How to cut a volume across one RAS axis and lay the slice out for display.

    Attributes:
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        slice_axis: the RAS axis sliced across (0, 1, 2).
        voxel_axis: the volume's voxel axis that runs along ``slice_axis`` (the one :meth:`take` indexes).
        row_axis: the voxel axis (of the two left in a slice, in their volume order: 0 or 1) that runs down the
            screen.
        flip_rows: whether that axis is reversed on screen.
        flip_columns: whether the other in-slice axis (across the screen) is reversed.
        top: anatomical code at the top of the picture (``"A"`` or ``"S"``).
        left: anatomical code at the left of the picture (``"R"`` or ``"A"``).
        aspect: height over width of a screen pixel in mm (``imshow(aspect=aspect)``).
        spacing: ``(row, column)`` spacing of the screen pixels in mm.
    """

    plane: str
    slice_axis: int
    voxel_axis: int
    row_axis: int
    flip_rows: bool
    flip_columns: bool
    top: str
    left: str
    spacing: tuple[float, float]

    @property
    def aspect(self) -> float:
        return float(self.spacing[0] / self.spacing[1])

    @property
    def orientation(self) -> str:
        """E.g. ``"anterior up, the patient's right on the left"``."""
        return f"{_WORDS[self.top]} up, {_WORDS[self.left]} on the left"

    def caption(self, index: int | None = None) -> str:
        """Plane, slice and orientation, e.g. ``"axial slice 12 (anterior up, the patient's right on the left)"``."""
        where = f"{self.plane} slice" if index is None else f"{self.plane} slice {int(index)}"
        return f"{where} ({self.orientation})"

    def screen(self, array: Any) -> np.ndarray:
        """A slice already taken across :attr:`voxel_axis` laid out for display.

        Args:
            array: ``(A, B, ...)``: the two remaining voxel axes in their volume order, then any trailing axes (RGB).

        Returns:
            ``(rows, columns, ...)`` for ``imshow`` with the default ``origin="upper"``.
        """
        out = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
        if self.row_axis == 1:
            out = np.swapaxes(out, 0, 1)
        if self.flip_rows:
            out = out[::-1]
        if self.flip_columns:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def take(self, volume: Any, index: int) -> np.ndarray:
        """Slice ``index`` of a ``(X, Y, Z, ...)`` volume across the plan's axis, laid out for display."""
        array = np.asarray(volume.detach().cpu() if hasattr(volume, "detach") else volume)
        if not 0 <= int(index) < array.shape[self.voxel_axis]:
            raise ValueError(
                f"{self.plane} slice {index} is outside the volume's {array.shape[self.voxel_axis]} slices."
            )
        return self.screen(np.take(array, int(index), axis=self.voxel_axis))

    def screen_point(self, a: float, b: float, shape: Sequence[int]) -> tuple[float, float]:
        """Coordinates ``(a, b)`` in a slice of ``shape`` (volume order, as given to :meth:`screen`) -> ``(x, y)``
        on screen (column, row), for markers drawn over the picture."""
        row, column = (a, b) if self.row_axis == 0 else (b, a)
        rows, columns = (shape[0], shape[1]) if self.row_axis == 0 else (shape[1], shape[0])
        if self.flip_rows:
            row = rows - 1 - row
        if self.flip_columns:
            column = columns - 1 - column
        return float(column), float(row)

    def square_pixels(self, screen: np.ndarray) -> np.ndarray:
        """A screen image resampled (nearest neighbour) so that each pixel is square, for writers without an aspect.

        The finer axis keeps its size; the coarser one is stretched by the spacing ratio.
        """
        screen = np.asarray(screen)
        finest = min(self.spacing)
        sizes = [max(1, round(n * s / finest)) for n, s in zip(screen.shape[:2], self.spacing)]
        rows = np.minimum((np.arange(sizes[0]) * screen.shape[0] / sizes[0]).astype(int), screen.shape[0] - 1)
        columns = np.minimum((np.arange(sizes[1]) * screen.shape[1] / sizes[1]).astype(int), screen.shape[1] - 1)
        return np.ascontiguousarray(screen[rows][:, columns])

    def label_axes(self, ax: Any, fontsize: int = 7) -> None:
        """Write the orientation letters at the top and left edges of a matplotlib axes showing this view."""
        from matplotlib import patheffects

        edges = orientation_letters(self)
        outline = [patheffects.withStroke(linewidth=2, foreground="black")]  # readable on white tissue too
        style = {"transform": ax.transAxes, "color": "white", "fontsize": fontsize, "fontweight": "bold"}
        style["path_effects"] = outline
        ax.text(0.5, 0.99, edges["top"], ha="center", va="top", **style)
        ax.text(0.5, 0.01, edges["bottom"], ha="center", va="bottom", **style)
        ax.text(0.01, 0.5, edges["left"], ha="left", va="center", **style)
        ax.text(0.99, 0.5, edges["right"], ha="right", va="center", **style)


def slice_view(affine: Any, slice_axis: int | None = 2) -> SliceView:
    """The radiological view of a volume's slices across one RAS axis.

    Args:
        affine: the volume's voxel-to-world (RAS, mm) affine, ``(4, 4)``; a ``MetaTensor``'s ``.affine`` or a
            NIfTI header's. ``None`` is an identity affine (a RAS volume with 1 mm voxels).
        slice_axis: the RAS axis sliced across (the plan's ``slice_axis``): 0 sagittal, 1 coronal, 2 axial;
            ``None``: the volume's own lowest-resolution axis, as a plan would choose it
            (:func:`~l2gnet_monai.planning.geometry.lowest_resolution_axis`), for volumes without a plan.

    Returns:
        The :class:`SliceView`.

    Raises:
        ValueError: ``slice_axis`` is not 0, 1 or 2, or the affine is not a 3-D voxel-to-world matrix.
    """
    orientation, sizes = _orientation(np.eye(4) if affine is None else affine)
    if slice_axis is None:
        from l2gnet_monai.planning.geometry import lowest_resolution_axis

        spacing = np.empty(3)
        spacing[orientation[:, 0].astype(int)] = sizes  # in RAS order
        slice_axis = lowest_resolution_axis(spacing)
    if slice_axis not in PLANES:
        raise ValueError(f"slice_view: slice_axis must be a RAS axis, 0, 1 or 2; got {slice_axis!r}.")
    ras = [int(r) for r in orientation[:, 0]]
    plane, down, across = PLANES[int(slice_axis)]
    voxel_axis = ras.index(int(slice_axis))
    remaining = [v for v in range(3) if v != voxel_axis]  # the slice's axes, in volume order
    row_voxel, column_voxel = ras.index(down), ras.index(across)
    return SliceView(
        plane=plane,
        slice_axis=int(slice_axis),
        voxel_axis=voxel_axis,
        row_axis=remaining.index(row_voxel),
        # screen rows run towards inferior/posterior and columns towards left/posterior: the negative RAS ends
        flip_rows=bool(orientation[row_voxel, 1] > 0),
        flip_columns=bool(orientation[column_voxel, 1] > 0),
        top=_POSITIVE[down],
        left=_POSITIVE[across],
        spacing=(float(sizes[row_voxel]), float(sizes[column_voxel])),
    )


def orientation_letters(view: SliceView) -> dict[str, str]:
    """The anatomical code at each edge of a view's picture: ``{"top", "bottom", "left", "right"}``."""
    return {
        "top": view.top,
        "bottom": _NEGATIVE[_POSITIVE.index(view.top)],
        "left": view.left,
        "right": _NEGATIVE[_POSITIVE.index(view.left)],
    }
