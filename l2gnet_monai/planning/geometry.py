# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Voxel geometry of a dataset: spacing in RAS order, the axis to slice across.

**Slicing axis.** As nnU-Net's 2-D configuration, the network sees slices across the dataset's lowest-resolution
axis: the largest median voxel spacing after reorientation to RAS (:func:`lowest_resolution_axis`), so that a
sagittally acquired MRI stack is cut into its sharp sagittal slices. Ties keep the axial axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np

__all__ = ["AXIS_NAMES", "ras_spacing", "lowest_resolution_axis"]

#: Axis names after reorientation to RAS, for messages.
AXIS_NAMES = ("sagittal (R-L)", "coronal (A-P)", "axial (S-I)")


def ras_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing (mm) along the R, A, S axes of a volume once reoriented to RAS (``Orientationd("RAS")``).

    Args:
        affine: the ``(4, 4)`` voxel-to-world affine.

    Returns:
        ``(3,)`` spacings in RAS axis order.
    """
    affine = np.asarray(affine, dtype=float)
    orientation = nib.orientations.io_orientation(affine)
    sizes = nib.affines.voxel_sizes(affine)
    spacing = np.empty(3)
    for voxel_axis, (ras_axis, _) in enumerate(orientation):
        spacing[int(ras_axis)] = sizes[voxel_axis]
    return spacing


def lowest_resolution_axis(spacing: Sequence[float], rtol: float = 1e-3) -> int:
    """The RAS axis with the largest spacing (the axis to slice across); on a tie, the axial axis (2) if it is
    among the largest, else the first of them.

    Args:
        spacing: ``(3,)`` spacings in RAS axis order.
        rtol: relative tolerance for a tie.
    """
    spacing = np.asarray(spacing, dtype=float)
    largest = [axis for axis in range(3) if spacing[axis] >= spacing.max() * (1 - rtol)]
    return 2 if 2 in largest else largest[0]
