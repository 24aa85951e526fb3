# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The one preprocessing chain of the bundle: training, validation, evaluation, inference and MONAI Label.

Every workflow turns a NIfTI volume into the network's input the same way; only what happens to the label differs
(training resamples it with the image, evaluation keeps it in the original grid to score against, inference has
none). :func:`volume_preprocessing` builds that chain from the plan's settings, so the configs name it once::

    "preprocessing": {
        "_target_": "l2gnet_monai.transforms.volume_preprocessing",
        "modality": "@modality", "ct_window": "@ct_window", "slice_size": "@slice_size", "slice_axis": "@slice_axis"
    }

The image path, in order:

1. ``LoadImaged`` with :class:`~l2gnet_monai.transforms.readers.ContiguousNibabelReader` (float32, C order),
   followed by the ``voxel_check`` transform when one is given (inference and evaluation pass
   :class:`~l2gnet_monai.data.streaming.CheckVoxelsd`, which checks each volume's voxels as it is loaded);
2. ``EnsureChannelFirstd``;
3. ``Orientationd("RAS")``: the plan's slicing axis is a RAS axis;
4. :class:`~l2gnet_monai.transforms.intensity.IntensityNormalizationd` (CT window or MRI min-max to ``[0, 1]``);
5. :class:`~l2gnet_monai.transforms.slice_resize.ResizeSlicesd` in plane to ``slice_size``, bilinear;
6. ``EnsureTyped`` (float32).

The result is a ``Compose``: MONAI Label's bundle tasks take its ``transforms`` and swap ``LoadImaged`` for their
own loader, and :class:`~l2gnet_monai.transforms.invert.InvertToLabelsd` inverts it on the way back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Orientationd

from l2gnet_monai.transforms.intensity import IntensityNormalizationd
from l2gnet_monai.transforms.readers import ContiguousNibabelReader
from l2gnet_monai.transforms.slice_resize import ResizeSlicesd, volume_size

__all__ = ["LABEL_GRIDS", "volume_preprocessing"]

#: What happens to the label: resampled with the image into the network's grid (training, validation), or left in
#: its original grid (evaluation, which scores the prediction inverted to that grid).
LABEL_GRIDS = ("network", "original")


def volume_preprocessing(
    modality: str,
    ct_window: Sequence[float],
    slice_size: Sequence[int],
    slice_axis: int,
    label_key: str | None = None,
    label_grid: str = "network",
    image_key: str = "image",
    voxel_check: Callable | None = None,
) -> Compose:
    """The bundle's preprocessing of a volume (and its label) for a 2-D network that slices across ``slice_axis``.

    Args:
        modality: ``"CT"`` or ``"MRI"`` (the plan's), for the intensity normalisation.
        ct_window: the CT window in HU, ``(low, high)``.
        slice_size: the network's slice size ``(H, W)``, in the order of the two in-plane RAS axes.
        slice_axis: the RAS axis the network slices across (0 sagittal, 1 coronal, 2 axial).
        label_key: the label's key, or ``None`` for images alone (inference).
        label_grid: ``"network"``: the label goes through the same reorientation and in-plane resize as the
            image (nearest neighbour) and becomes ``uint8``; ``"original"``: the label is loaded and left in its
            own grid (channel first).
        image_key: the image's key.
        voxel_check: a dictionary transform run on the loaded volumes before anything changes them (e.g.
            :class:`~l2gnet_monai.data.streaming.CheckVoxelsd`: finite intensities, declared label values);
            ``None``: none.

    Returns:
        A ``Compose`` of dictionary transforms taking ``{image_key: path[, label_key: path]}`` to the image
        ``(1, *RAS spatial)`` float32 ``MetaTensor`` (the sliced axis keeps its size, the others are
        ``slice_size``) and the label.

    Raises:
        ValueError: ``label_grid`` is not one of :data:`LABEL_GRIDS` (the other arguments are checked by the
            transforms that use them).
    """
    if label_grid not in LABEL_GRIDS:
        raise ValueError(f"volume_preprocessing: label_grid must be one of {LABEL_GRIDS}, got {label_grid!r}.")
    loaded = [image_key] if label_key is None else [image_key, label_key]
    resampled = [image_key] if label_key is None or label_grid == "original" else [image_key, label_key]
    checks = [] if voxel_check is None else [voxel_check]
    return Compose(
        [
            LoadImaged(keys=loaded, reader=ContiguousNibabelReader(), image_only=True),
            *checks,
            EnsureChannelFirstd(keys=loaded),
            # labels given: MONAI 1.6 warns that their default will follow the image's space; these are RAS's
            Orientationd(keys=resampled, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            IntensityNormalizationd(keys=image_key, modality=modality, window=ct_window),
            ResizeSlicesd(
                keys=resampled,
                spatial_size=volume_size(slice_size, slice_axis),
                mode=["bilinear", "nearest"][: len(resampled)],
            ),
            EnsureTyped(keys=resampled, dtype=[torch.float32, torch.uint8][: len(resampled)]),
        ]
    )
