# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Synapse multi-organ CT (BTCV, MICCAI 2015 Multi-Atlas Abdomen Labeling) in the TransUNet protocol.

Two source layouts are converted to the MSD layout of :mod:`l2gnet_monai.data.msd`
(:mod:`~l2gnet_monai.data.synapse.raw`, :mod:`~l2gnet_monai.data.synapse.transunet`; the protocol's cases, labels
and intensity mapping in :mod:`~l2gnet_monai.data.synapse.protocol`):

* ``synapse-raw``, the BTCV "RawData" release::

      <root>/RawData/Training/img/img0001.nii.gz
      <root>/RawData/Training/label/label0001.nii.gz

  (``<root>`` may also be ``RawData/`` or ``RawData/Training/``). The 13 BTCV labels are mapped to the
  paper's 8 organs (:data:`BTCV_TO_SYNAPSE`); HU values, spacing, orientation and header are kept.

* ``synapse-transunet``, TransUNet's preprocessed release::

      <root>/train_npz/case0005_slice000.npz     # keys image (H, W) float32 in [0, 1], label (H, W)
      <root>/test_vol_h5/case0001.npy.h5        # datasets image, label of shape (D, H, W)
      <root>/lists/lists_Synapse/{train.txt,test_vol.txt}   # optional

  Intensities there are HU clipped to [-125, 275] and scaled to [0, 1]; they are mapped back with
  ``hu = x * 400 - 125`` so that the bundle's CT window [-125, 275] -> [0, 1] gives the original values back.
  Labels are already in the 8-class order. A slice's (row, col) becomes the NIfTI (x, y) plane and the slice
  index the z axis, for the npz slices and the h5 volumes alike. These files carry no spacing: 1 mm voxels
  and an identity affine are written and ``source.spacing_known`` is ``false``.

Both give output cases named ``caseNNNN``: 18 in ``training``, 12 in ``test`` (:data:`SYNAPSE_TRAIN_CASES`,
:data:`SYNAPSE_TEST_CASES`, TransUNet's ``lists_Synapse``). The protocol has no validation set, so the
``validation`` list is empty.
"""

from l2gnet_monai.data.synapse.protocol import (
    BTCV_LABELS,
    BTCV_TO_SYNAPSE,
    SYNAPSE_LABELS,
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAIN_CASES,
    TRANSUNET_HU_RANGE,
    btcv_to_synapse,
    transunet_to_hu,
)
from l2gnet_monai.data.synapse.raw import locate_synapse_raw, prepare_synapse_raw
from l2gnet_monai.data.synapse.transunet import locate_synapse_transunet, prepare_synapse_transunet

__all__ = [
    "SYNAPSE_TRAIN_CASES",
    "SYNAPSE_TEST_CASES",
    "SYNAPSE_LABELS",
    "BTCV_LABELS",
    "BTCV_TO_SYNAPSE",
    "TRANSUNET_HU_RANGE",
    "btcv_to_synapse",
    "transunet_to_hu",
    "locate_synapse_raw",
    "locate_synapse_transunet",
    "prepare_synapse_raw",
    "prepare_synapse_transunet",
]
