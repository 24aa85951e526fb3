# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""L2GNet for MONAI: an optimal-transport bottleneck for medical image segmentation."""

from l2gnet_monai.networks import L2GMapper, L2GNet

__version__ = "0.1.0"

__all__ = ["L2GNet", "L2GMapper", "__version__"]
