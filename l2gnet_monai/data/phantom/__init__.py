# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A synthetic abdominal CT phantom with the 8 Synapse organs: the bundle's default dataset.

Every case is a 3-D CT-like volume in Hounsfield units with an organ label map in the Synapse order used by
TransUNet and the L2GNet paper (:data:`PHANTOM_LABELS`). The anatomy is modelled in millimetres and rasterised
onto the requested grid: a body outline, spine, muscles, ribs and lung bases, bowel, colon and duodenum, the IVC,
portal and mesenteric vessels (all unlabelled context), and the eight labelled organs in their usual places.
Organs are random ellipsoids and tubes deformed by smooth random modes; their sizes, positions, rotations, z
extents and intensities vary per case, and the scanned z range is shifted per case, so some organs appear only in
some slices. Several organs share intensities, so a network has to use shape and position, not thresholds. The
image is blurred slightly (partial volume) and gets correlated Gaussian noise.

Geometry and orientation: voxel ``(i, j, k)`` of an array of shape ``(H, W, D)`` lies at the patient's left for
growing ``i``, posterior for growing ``j`` and superior for growing ``k``. The NIfTI affine is
``diag(-sx, -sy, sz)`` (the "LPS" voxel order of CT NIfTI files converted from DICOM; nibabel's ``aff2axcodes``
gives ``("L", "P", "S")``), with the volume centred on the world origin. Displayed radiologically, an axial slice
is ``array[:, :, k].T``. MONAI's ``LoadImaged`` keeps this array order; ``Orientationd(axcodes="RAS")`` flips the
first two axes.

Images are ``int16`` HU, labels ``uint8``, both gzipped NIfTI-1 with qform and sform (code 1, scanner) and
millimetre units. Datasets use the Medical Segmentation Decathlon layout (``imagesTr/``, ``labelsTr/``,
``dataset.json``), readable by ``monai.data.load_decathlon_datalist`` for the ``training`` and ``validation`` keys.

* :mod:`~l2gnet_monai.data.phantom.spec`: generator version, labels, nominal HU, default grid and case counts;
* :mod:`~l2gnet_monai.data.phantom.geometry`: the voxel grid in millimetres, the NIfTI affine, blobs and tubes;
* :mod:`~l2gnet_monai.data.phantom.canvas`: the image and label map being painted, texture fields and CT noise;
* :mod:`~l2gnet_monai.data.phantom.anatomy`: one case's random parameters and the helpers that draw and paint;
* :mod:`~l2gnet_monai.data.phantom.torso` and :mod:`~l2gnet_monai.data.phantom.organs`: the unlabelled context,
  and the labelled organs with their vessels;
* :mod:`~l2gnet_monai.data.phantom.generate`: one case, and a dataset written as NIfTI files;
* :mod:`~l2gnet_monai.data.phantom.cache`: generate-once access, safe for concurrent callers.

This package re-exports the public names; importing it loads none of its modules until one is used. Its modules
may import numpy, scipy, nibabel and :mod:`l2gnet_monai.data.labels` only.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "DEFAULT_NUM_TRAINING": "l2gnet_monai.data.phantom.spec",
    "DEFAULT_NUM_VALIDATION": "l2gnet_monai.data.phantom.spec",
    "DEFAULT_SHAPE": "l2gnet_monai.data.phantom.spec",
    "DEFAULT_SPACING": "l2gnet_monai.data.phantom.spec",
    "PHANTOM_GENERATOR_VERSION": "l2gnet_monai.data.phantom.spec",
    "PHANTOM_HU": "l2gnet_monai.data.phantom.spec",
    "PHANTOM_LABELS": "l2gnet_monai.data.phantom.spec",
    "phantom_affine": "l2gnet_monai.data.phantom.geometry",
    "generate_phantom_case": "l2gnet_monai.data.phantom.generate",
    "generate_phantom_dataset": "l2gnet_monai.data.phantom.generate",
    "ensure_phantom_dataset": "l2gnet_monai.data.phantom.cache",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
