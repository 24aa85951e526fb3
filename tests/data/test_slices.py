"""SliceDataset: every slice of every volume once per epoch, copied out of the cache, other keys passed through."""

from __future__ import annotations

import torch
from monai.data import CacheDataset, MetaTensor
from torch.utils.data import DataLoader

from l2gnet_monai.data.slices import SliceDataset


def _volumes() -> list[dict]:
    volumes = []
    for depth in (3, 5):
        image = torch.arange(2 * 4 * depth, dtype=torch.float32).reshape(1, 2, 4, depth) + 100 * depth
        volumes.append({"image": MetaTensor(image), "label": (image > 110).to(torch.uint8), "case": f"d{depth}"})
    return volumes


def test_every_slice_of_every_volume_once() -> None:
    volumes = _volumes()
    slices = SliceDataset(CacheDataset(volumes, transform=None, copy_cache=False, progress=False))
    assert len(slices) == 8
    seen = {(s["volume_index"], s["slice_index"]) for s in (slices[i] for i in range(len(slices)))}
    assert seen == {(0, z) for z in range(3)} | {(1, z) for z in range(5)}
    sample = slices[4]  # volume 1, slice 1
    assert torch.equal(sample["image"], volumes[1]["image"].as_tensor()[..., 1])
    assert sample["image"].shape == (1, 2, 4) and sample["case"] == "d5"
    assert type(sample["image"]) is torch.Tensor


def test_slices_are_copies_so_the_cache_is_never_modified() -> None:
    volumes = _volumes()
    cache = CacheDataset(volumes, transform=None, copy_cache=False, progress=False)
    slices = SliceDataset(cache)
    slices[0]["image"].fill_(-1)
    assert (cache[0]["image"] >= 0).all()


def test_other_axes_and_transforms_and_batching() -> None:
    volumes = _volumes()
    along_rows = SliceDataset(volumes, slice_axis=0)
    assert len(along_rows) == 4 and along_rows[0]["image"].shape == (1, 4, 3)

    def double(sample: dict) -> dict:
        return {**sample, "image": sample["image"] * 2}

    doubled = SliceDataset(volumes, transform=double)
    assert torch.equal(doubled[0]["image"], 2 * volumes[0]["image"].as_tensor()[..., 0])
    batch = next(iter(DataLoader(SliceDataset(volumes[1:]), batch_size=5)))
    assert batch["image"].shape == (5, 1, 2, 4) and batch["label"].dtype == torch.uint8
