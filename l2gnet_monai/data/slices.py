# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""2-D training samples from 3-D volumes: every slice of every volume, as TransUNet's slice-wise protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from l2gnet_monai.data.errors import DatasetError

__all__ = ["SliceDataset", "check_batches"]


class SliceDataset(Dataset):
    """Map-style dataset of all 2-D slices along one axis of a dataset of 3-D volumes.

    One epoch visits every slice of every volume once (shuffled by the loader), which is how the paper's
    protocol trains 2-D networks on CT and MRI volumes. The volumes are typically a
    :class:`monai.data.CacheDataset` of preprocessed volumes (loaded, oriented, normalised, resized in
    plane) created with ``copy_cache=False``: slices are copied out of the cached volume, so the cache is
    never modified and no volume is copied per sample. Works with ``DistributedSampler``.

    Args:
        volumes: dataset whose items are dicts holding channel-first volumes ``(C, H, W, D)`` under ``keys``.
        keys: keys of the volumes to slice (same shape); other keys are passed through unchanged.
        transform: applied to each 2-D sample (e.g. random augmentation).
        slice_axis: spatial axis to slice along; ``-1`` is the last (axial after ``Orientationd("RAS")``).

    Each sample is a dict with ``keys`` as tensors ``(C, H, W)`` and ``"slice_index"``, ``"volume_index"``.
    """

    def __init__(
        self,
        volumes: Dataset,
        keys: Sequence[str] = ("image", "label"),
        transform: Callable | None = None,
        slice_axis: int = -1,
    ) -> None:
        self.volumes = volumes
        self.keys = tuple(keys)
        self.transform = transform
        # tensors are channel-first: spatial axis s is tensor axis s + 1; negative axes count from the end
        self.tensor_axis = slice_axis + 1 if slice_axis >= 0 else slice_axis
        self.index: list[tuple[int, int]] = []
        for volume_index in range(len(volumes)):  # type: ignore[arg-type]
            depth = int(self._volume(volume_index)[self.keys[0]].shape[self.tensor_axis])
            self.index.extend((volume_index, z) for z in range(depth))

    def _volume(self, volume_index: int) -> dict[str, Any]:
        item = self.volumes[volume_index]
        if isinstance(item, list):  # a volume transform that returns several samples
            raise TypeError("SliceDataset: the volume dataset must return one dict per volume, got a list.")
        return item

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        volume_index, z = self.index[i]
        volume = self._volume(volume_index)
        sample: dict[str, Any] = {k: v for k, v in volume.items() if k not in self.keys}
        for key in self.keys:
            data = volume[key]
            tensor = data.as_tensor() if hasattr(data, "as_tensor") else torch.as_tensor(data)
            sample[key] = tensor.select(self.tensor_axis, z).clone()
        sample["volume_index"], sample["slice_index"] = volume_index, z
        return self.transform(sample) if self.transform is not None else sample


def check_batches(loader: DataLoader, name: str = "train#dataloader") -> DataLoader:
    """``loader``, or a :class:`DatasetError` when it yields no batch at all.

    The training loader drops an incomplete last batch (``drop_last``), so a dataset with fewer slices than
    ``batch_size`` (per process, under ``DistributedSampler``) would train for zero iterations without a word.

    Args:
        loader: the training data loader.
        name: the config key, for the message.
    """
    if len(loader) == 0:
        samples = len(loader.sampler) if loader.sampler is not None else len(loader.dataset)  # type: ignore[arg-type]
        raise DatasetError(
            f"{name}: {samples} training slices per process make no full batch of {loader.batch_size} "
            "(incomplete batches are dropped); set --batch_size to at most that, or add training volumes."
        )
    return loader
