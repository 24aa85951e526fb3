# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""MONAI transforms of the bundle's data pipeline, and the preprocessing every workflow shares.

* :mod:`~l2gnet_monai.transforms.preprocessing`: the one preprocessing chain of training, evaluation, inference
  and MONAI Label;
* :mod:`~l2gnet_monai.transforms.readers`: a NIfTI reader that returns contiguous float32 volumes;
* :mod:`~l2gnet_monai.transforms.intensity`: intensity normalisation by modality (CT window, MRI min-max);
* :mod:`~l2gnet_monai.transforms.slice_resize`: in-plane resizing of volumes, invertible;
* :mod:`~l2gnet_monai.transforms.invert`: class scores back to a label map in the original image space;
* :mod:`~l2gnet_monai.transforms.augmentation`: the paper's 2-D augmentation.

May import torch and MONAI only.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "LABEL_GRIDS": "l2gnet_monai.transforms.preprocessing",
    "volume_preprocessing": "l2gnet_monai.transforms.preprocessing",
    "ContiguousNibabelReader": "l2gnet_monai.transforms.readers",
    "IntensityNormalizationd": "l2gnet_monai.transforms.intensity",
    "ct_window": "l2gnet_monai.transforms.intensity",
    "SLICE_MODES": "l2gnet_monai.transforms.slice_resize",
    "volume_size": "l2gnet_monai.transforms.slice_resize",
    "resize_slices": "l2gnet_monai.transforms.slice_resize",
    "ResizeSlices": "l2gnet_monai.transforms.slice_resize",
    "ResizeSlicesd": "l2gnet_monai.transforms.slice_resize",
    "VOXEL_MOVING_TRANSFORMS": "l2gnet_monai.transforms.invert",
    "InvertToLabelsd": "l2gnet_monai.transforms.invert",
    "RandRotFlipOrRotated": "l2gnet_monai.transforms.augmentation",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
