# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Class maps of the paper's datasets, shared by the phantom, the converters and the evaluation."""

from __future__ import annotations

__all__ = ["SYNAPSE_LABELS", "ACDC_LABELS"]

#: The paper's Synapse classes: TransUNet's 8 organs, in its label order, and background.
SYNAPSE_LABELS: dict[int, str] = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "aorta",
    8: "pancreas",
}

#: ACDC's classes: right ventricle, myocardium, left ventricle, and background.
ACDC_LABELS: dict[int, str] = {0: "background", 1: "RV", 2: "Myo", 3: "LV"}
