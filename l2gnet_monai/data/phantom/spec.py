# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What the phantom promises: its generator version, labels, nominal intensities and default grid."""

from __future__ import annotations

from l2gnet_monai.data.labels import SYNAPSE_LABELS

__all__ = [
    "DEFAULT_NUM_TRAINING",
    "DEFAULT_NUM_VALIDATION",
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "GENERATOR_NAME",
    "PHANTOM_GENERATOR_VERSION",
    "PHANTOM_HU",
    "PHANTOM_LABELS",
]

#: Version of the generator. Bump it whenever the output for the same arguments changes.
PHANTOM_GENERATOR_VERSION = 1

#: The generator's name in ``dataset.json`` (how a folder is recognised as a phantom); keep it, even if the
#: code moves.
GENERATOR_NAME = "l2gnet_monai.data.phantom"

#: Label values and names in the Synapse order (TransUNet protocol, as in the L2GNet paper).
PHANTOM_LABELS: dict[int, str] = dict(SYNAPSE_LABELS)

#: Nominal HU of the organs' parenchyma (before per-case jitter, texture, blur and noise). The
#: kidneys are a bright cortex (~190) around a medulla (~130) and a dark sinus; the stomach value is
#: its wall, its lumen holds fluid, food and air.
PHANTOM_HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 50.0,
    "bone_cortex": 700.0,
    "bone_cancellous": 250.0,
    "spleen": 50.0,
    "kidney": 160.0,
    "gallbladder": 10.0,
    "liver": 60.0,
    "stomach": 40.0,
    "aorta": 200.0,
    "pancreas": 40.0,
}

#: The bundle's phantom: 160 x 160 x 48 voxels of 2.5 x 2.5 x 5 mm (400 x 400 x 240 mm), 20 + 4 cases.
DEFAULT_SHAPE = (160, 160, 48)
DEFAULT_SPACING = (2.5, 2.5, 5.0)
DEFAULT_NUM_TRAINING = 20
DEFAULT_NUM_VALIDATION = 4
