# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Data: datalists and slice datasets, checks of users' volumes, the synthetic CT phantom, and the conversion of the
paper's datasets (Synapse, ACDC) to the Medical Segmentation Decathlon layout.

* :mod:`~l2gnet_monai.data.errors`: :class:`DatasetError`, the one-line error of unusable input data;
* :mod:`~l2gnet_monai.data.datalist`: ``dataset.json`` splits, image lists and the checks run before training;
* :mod:`~l2gnet_monai.data.volume_checks`: header and voxel checks of images and labels;
* :mod:`~l2gnet_monai.data.streaming`: voxels checked as each case is loaded, bad cases skipped and listed;
* :mod:`~l2gnet_monai.data.slices`: the 2-D slices of cached volumes as a training dataset;
* :mod:`~l2gnet_monai.data.loading`: how many loader workers this machine gets;
* :mod:`~l2gnet_monai.data.phantom`: the synthetic abdominal CT phantom, the bundle's default data;
* :mod:`~l2gnet_monai.data.msd`, :mod:`~l2gnet_monai.data.synapse`, :mod:`~l2gnet_monai.data.acdc`,
  :mod:`~l2gnet_monai.data.prepare`: the downloads converted to the Decathlon layout;
* :mod:`~l2gnet_monai.data.labels`: the class names of the paper's datasets.

May import numpy, nibabel, scipy, torch and MONAI; nothing else of this package. Names are imported from their
modules on first use, so that the converters (used by the command line) load without torch and MONAI.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "DatalistError": "l2gnet_monai.data.datalist",
    "check_datalist": "l2gnet_monai.data.datalist",
    "dataset_labels": "l2gnet_monai.data.datalist",
    "dataset_modality": "l2gnet_monai.data.datalist",
    "dataset_num_classes": "l2gnet_monai.data.datalist",
    "list_images": "l2gnet_monai.data.datalist",
    "load_split": "l2gnet_monai.data.datalist",
    "resolve_datalist": "l2gnet_monai.data.datalist",
    "default_num_workers": "l2gnet_monai.data.loading",
    "BAD_CASE_ACTIONS": "l2gnet_monai.data.streaming",
    "CheckVoxelsd": "l2gnet_monai.data.streaming",
    "CheckedDataset": "l2gnet_monai.data.streaming",
    "CheckedDataLoader": "l2gnet_monai.data.streaming",
    "SliceDataset": "l2gnet_monai.data.slices",
    "check_batches": "l2gnet_monai.data.slices",
    "ensure_phantom_dataset": "l2gnet_monai.data.phantom.cache",
    "generate_phantom_dataset": "l2gnet_monai.data.phantom.generate",
    "DatasetError": "l2gnet_monai.data.errors",
    "one_line": "l2gnet_monai.data.errors",
    "detect_layout": "l2gnet_monai.data.prepare",
    "prepare_dataset": "l2gnet_monai.data.prepare",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
