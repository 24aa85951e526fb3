# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The paper's (TransUNet's) 2-D augmentation: a rotation by 90 degrees and a flip, or a small rotation."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Flip, MapTransform, RandomizableTransform, Rotate, Rotate90
from monai.utils import convert_to_tensor

__all__ = ["RandRotFlipOrRotated"]


class RandRotFlipOrRotated(RandomizableTransform, MapTransform):
    """The paper's (TransUNet's) 2-D augmentation for images and label maps.

    With probability ``prob_rot_flip`` a random multiple of 90 degrees rotation followed by a flip along a
    random axis; otherwise, with probability ``prob_rotate``, a rotation by a uniform angle in
    ``[-max_angle, max_angle]`` degrees; otherwise nothing. Images are interpolated with ``mode`` and label
    maps with nearest neighbour (set per key with ``mode``).

    Args:
        keys: keys of the channel-first 2-D arrays ``(C, H, W)`` to transform together.
        prob_rot_flip: probability of the rotate-90-and-flip branch.
        prob_rotate: probability of the small-rotation branch when the first was not taken.
        max_angle: largest rotation in degrees.
        mode: interpolation per key for the small rotation, e.g. ``("bilinear", "nearest")``.
        allow_missing_keys: don't raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob_rot_flip: float = 0.5,
        prob_rotate: float = 0.5,
        max_angle: float = 20.0,
        mode: Sequence[str] | str = ("bilinear", "nearest"),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.prob_rot_flip = prob_rot_flip
        self.prob_rotate = prob_rotate
        self.max_angle = max_angle
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        if len(modes) != len(self.keys):
            raise ValueError(f"RandRotFlipOrRotated: {len(self.keys)} keys but {len(modes)} interpolation modes.")
        self.modes = dict(zip(self.keys, modes))
        self._branch = "none"
        self._k = 0
        self._flip_axis = 0
        self._angle = 0.0

    def randomize(self, data: Any = None) -> None:
        if self.R.random() < self.prob_rot_flip:
            self._branch = "rot_flip"
            self._k = int(self.R.randint(0, 4))
            self._flip_axis = int(self.R.randint(0, 2))
        elif self.R.random() < self.prob_rotate:
            self._branch = "rotate"
            self._angle = float(self.R.uniform(-self.max_angle, self.max_angle))
        else:
            self._branch = "none"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if self._branch == "none":
            return d
        for key in self.key_iterator(d):
            if self._branch == "rot_flip":
                d[key] = Flip(spatial_axis=self._flip_axis)(Rotate90(k=self._k, spatial_axes=(0, 1))(d[key]))
            else:
                rotate = Rotate(math.radians(self._angle), keep_size=True, mode=self.modes[key], padding_mode="zeros")
                dtype = d[key].dtype
                # Rotate resamples in float32; the input's dtype (uint8 labels) comes back, so that every sample of
                # a batch has the same dtype (DataLoader workers collate into a tensor of the first one's dtype)
                d[key] = convert_to_tensor(rotate(d[key]), dtype=dtype, track_meta=False)
            d[key] = convert_to_tensor(d[key], track_meta=False)  # plain tensors, like the unaugmented samples
        return d
