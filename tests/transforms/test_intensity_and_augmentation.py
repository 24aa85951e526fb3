"""The protocol's transforms: modality-dependent normalisation and the rot90/flip-or-rotate augmentation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from l2gnet_monai.transforms.augmentation import RandRotFlipOrRotated
from l2gnet_monai.transforms.intensity import IntensityNormalizationd


def test_ct_is_windowed_to_the_protocols_hu_range() -> None:
    hu = torch.tensor([[[-1000.0, -125.0, 75.0, 275.0, 1500.0]]])
    out = IntensityNormalizationd("image", modality="CT")({"image": hu})["image"]
    torch.testing.assert_close(torch.as_tensor(out), torch.tensor([[[0.0, 0.0, 0.5, 1.0, 1.0]]]))


def test_ct_window_is_monais_scale_intensity_range_bit_for_bit() -> None:
    from monai.data import MetaTensor
    from monai.transforms import ScaleIntensityRanged

    generator = torch.Generator().manual_seed(0)
    hu = torch.randn(1, 40, 30, 7, generator=generator) * 600 + torch.rand(1, 40, 30, 7, generator=generator)
    reference = ScaleIntensityRanged("image", a_min=-160.0, a_max=240.0, b_min=0.0, b_max=1.0, clip=True)
    ours = IntensityNormalizationd("image", modality="CT", window=(-160, 240))
    for image in (MetaTensor(hu, meta={"filename_or_obj": "ct.nii.gz"}), hu.to(torch.int16), hu.numpy()):
        expected = torch.as_tensor(reference({"image": image})["image"])
        got = ours({"image": image})["image"]
        assert got.dtype == torch.float32 and torch.equal(torch.as_tensor(got), expected)
    assert ours({"image": MetaTensor(hu, meta={"filename_or_obj": "ct.nii.gz"})})["image"].meta["filename_or_obj"] == (
        "ct.nii.gz"
    )


def test_mri_is_min_max_scaled_per_volume() -> None:
    volume = torch.tensor([[[200.0, 300.0, 600.0]]])
    out = IntensityNormalizationd("image", modality="mri")({"image": volume})["image"]
    torch.testing.assert_close(torch.as_tensor(out), torch.tensor([[[0.0, 0.25, 1.0]]]))


def test_bad_modality_and_window_are_named() -> None:
    with pytest.raises(ValueError, match="modality"):
        IntensityNormalizationd("image", modality="PET")
    with pytest.raises(ValueError, match="window"):
        IntensityNormalizationd("image", window=(275, -125))


def _pair(size: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, size, size + 4, generator=generator)
    label = (image > 0.6).to(torch.float32) + (image > 0.85).to(torch.float32)
    return {"image": image, "label": label}


def test_branch_probabilities_are_the_papers() -> None:
    transform = RandRotFlipOrRotated(["image", "label"])
    transform.set_random_state(seed=0)
    counts = Counter()
    for _ in range(4000):
        transform.randomize()
        counts[transform._branch] += 1
    # p(rot90 + flip) = 0.5, p(rotation) = 0.5 * 0.5, p(nothing) = 0.25
    assert abs(counts["rot_flip"] / 4000 - 0.5) < 0.03
    assert abs(counts["rotate"] / 4000 - 0.25) < 0.03
    assert abs(counts["none"] / 4000 - 0.25) < 0.03


def test_rot_flip_moves_image_and_label_together_exactly() -> None:
    sample = _pair()
    transform = RandRotFlipOrRotated(["image", "label"], prob_rot_flip=1.0)
    transform.set_random_state(seed=3)
    for _ in range(10):
        out = transform(sample)
        relation = (out["image"] > 0.6).float() + (out["image"] > 0.85).float()
        assert torch.equal(relation, out["label"])
        assert sorted(out["image"].flatten().tolist()) == sorted(sample["image"].flatten().tolist())


def test_rotation_keeps_the_size_and_label_values() -> None:
    sample = _pair()
    transform = RandRotFlipOrRotated(["image", "label"], prob_rot_flip=0.0, prob_rotate=1.0, max_angle=20)
    transform.set_random_state(seed=1)
    out = transform(sample)
    assert transform._branch == "rotate" and 0 < abs(transform._angle) <= 20
    assert out["image"].shape == sample["image"].shape and out["label"].shape == sample["label"].shape
    assert set(np.unique(out["label"].numpy())) <= {0.0, 1.0, 2.0}  # nearest neighbour: no new label values
    assert not torch.equal(out["image"], sample["image"])
    assert type(out["image"]) is torch.Tensor  # plain tensors, like unaugmented samples, for collation


def test_every_branch_keeps_the_dtypes_so_that_worker_batches_collate() -> None:
    """The training labels are uint8: a rotated slice must stay uint8 beside unrotated ones in a batch, else
    collating in a DataLoader worker (into a uint8 tensor) fails."""
    sample = {"image": _pair()["image"], "label": _pair()["label"].to(torch.uint8)}
    for rot_flip, rotate in ((1.0, 0.0), (0.0, 1.0), (0.0, 0.0)):
        transform = RandRotFlipOrRotated(["image", "label"], prob_rot_flip=rot_flip, prob_rotate=rotate)
        out = transform(dict(sample))
        assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.uint8, transform._branch
    rotated = RandRotFlipOrRotated(["image", "label"], prob_rot_flip=0.0, prob_rotate=1.0)
    batch = next(iter(torch.utils.data.DataLoader(_Augmented([sample] * 4, rotated), batch_size=4, num_workers=1)))
    assert batch["label"].dtype == torch.uint8 and batch["label"].shape[0] == 4


class _Augmented(torch.utils.data.Dataset):
    """Every other sample augmented, as in a training batch."""

    def __init__(self, samples: list, transform: RandRotFlipOrRotated) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.transform(dict(self.samples[i])) if i % 2 else dict(self.samples[i])


def test_no_op_branch_returns_the_input() -> None:
    sample = _pair()
    transform = RandRotFlipOrRotated(["image", "label"], prob_rot_flip=0.0, prob_rotate=0.0)
    out = transform(sample)
    assert torch.equal(out["image"], sample["image"]) and torch.equal(out["label"], sample["label"])


def test_one_mode_per_key_is_required() -> None:
    with pytest.raises(ValueError, match="interpolation modes"):
        RandRotFlipOrRotated(["image", "label"], mode=("bilinear",))
