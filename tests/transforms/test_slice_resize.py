"""ResizeSlicesd and InvertToLabelsd against MONAI's Resized, Invertd, Activationsd and AsDiscreted."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureTyped,
    Invertd,
    Orientationd,
    Resized,
    Spacingd,
)

from l2gnet_monai.transforms.invert import InvertToLabelsd
from l2gnet_monai.transforms.slice_resize import ResizeSlices, ResizeSlicesd, _first_argmax, resize_slices

# an oblique, anisotropic affine: the resize's affine update must follow the axes, not assume a diagonal
AFFINE = torch.tensor(
    [[0.0, -0.7, 0.1, 10.0], [1.2, 0.0, 0.0, -3.0], [0.0, 0.05, 2.5, 4.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)
LPS = torch.diag(torch.tensor([-0.7, -0.8, 2.5, 1.0], dtype=torch.float64))


def _volume(shape, affine=AFFINE, channels=2, seed=0) -> MetaTensor:
    generator = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.rand(channels, *shape, generator=generator), affine=affine.clone())


def _size(slice_axis: int, in_plane=(5, 9)) -> list:
    size = list(in_plane)
    size.insert(slice_axis, -1)
    return size


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_forward_and_inverse_equal_monai_resized(slice_axis: int, mode: str) -> None:
    shape = [13, 11, 10]
    shape[slice_axis] = 7  # 7 slices in chunks of 3: the last chunk is short
    size = _size(slice_axis)
    image = _volume(shape)
    monai_resize = Resized("image", spatial_size=size, mode=mode)
    ours = ResizeSlicesd("image", spatial_size=size, mode=mode, chunk_slices=3)
    expected, got = monai_resize({"image": image.clone()})["image"], ours({"image": image.clone()})["image"]
    assert got.shape == expected.shape and got.shape[1 + slice_axis] == 7
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.as_tensor(), expected.as_tensor(), rtol=0, atol=1e-6)
    torch.testing.assert_close(got.affine, expected.affine)
    assert got.applied_operations[-1]["class"] == "ResizeSlices"

    # Invertd over each: back to the input's size and affine, trace consumed
    back = {}
    for name, transform, data in (("monai", monai_resize, expected), ("ours", ours, got)):
        inverter = Invertd("pred", transform, orig_keys="image", nearest_interp=False)
        back[name] = inverter({"image": data, "pred": data * 3.0})["pred"]
    assert back["ours"].shape == image.shape and not back["ours"].applied_operations
    torch.testing.assert_close(back["ours"].as_tensor(), back["monai"].as_tensor(), rtol=0, atol=1e-5)
    torch.testing.assert_close(back["ours"].affine, AFFINE)


def test_plain_tensor_is_resized_slice_by_slice() -> None:
    image = torch.rand(3, 9, 8, 11)
    resized = ResizeSlices([4, 6, -1])(image)
    assert resized.shape == (3, 4, 6, 11) and resized.dtype == torch.float32
    slice_5 = torch.nn.functional.interpolate(image[None, ..., 5], size=(4, 6), mode="bilinear")[0]
    torch.testing.assert_close(resized.as_tensor()[..., 5], slice_5, rtol=0, atol=1e-6)


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_labels_do_not_depend_on_the_chunk_size(slice_axis: int) -> None:
    shape = [9, 8, 10]
    shape[slice_axis] = 11  # 11 slices: chunks of 4 leave 3, chunks of 64 take all
    logits = torch.nn.functional.avg_pool3d(torch.randn(5, *shape, generator=torch.Generator().manual_seed(3)), 3, 1, 1)
    dense = resize_slices(logits, [12, 7], slice_axis, softmax=True).argmax(0, keepdim=True)
    for chunk in (1, 4, 11, 64):
        labels = resize_slices(logits, [12, 7], slice_axis, chunk_slices=chunk, softmax=True, argmax=True)
        assert labels.dtype == torch.uint8 and labels.shape == dense.shape
        assert (labels.long() == dense).float().mean() >= 0.999, chunk


def _labels_reference(pre, image, logits, orig_key="image"):
    post = Compose(
        [
            Activationsd("pred", softmax=True),
            Invertd("pred", pre, orig_keys=orig_key, nearest_interp=False),
            AsDiscreted("pred", argmax=True),
        ]
    )
    return post({orig_key: image, "pred": logits.clone()})["pred"]


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_invert_to_labels_equals_softmax_invertd_argmax(slice_axis: int, caplog) -> None:
    shape = [26, 22, 20]
    shape[slice_axis] = 5
    size = _size(slice_axis, (10, 9))
    image = _volume(shape, affine=LPS, channels=1)  # LPS: Orientationd flips two axes, inverted on the labels
    monai_pre = Compose(
        [Orientationd("image", "RAS", labels=None), Resized("image", size, mode="bilinear"), EnsureTyped("image")]
    )
    our_pre = Compose(
        [Orientationd("image", "RAS", labels=None), ResizeSlicesd("image", size, chunk_slices=2), EnsureTyped("image")]
    )
    ours, monai = our_pre({"image": image.clone()})["image"], monai_pre({"image": image.clone()})["image"]
    generator = torch.Generator().manual_seed(1)
    logits = torch.nn.functional.avg_pool3d(torch.randn(4, *ours.shape[1:], generator=generator) * 4, 3, 1, 1)
    expected = _labels_reference(monai_pre, monai, logits)
    with caplog.at_level("INFO", logger="l2gnet_monai.transforms.invert"):
        got = InvertToLabelsd("pred", our_pre, orig_keys="image")({"image": ours, "pred": logits.clone()})["pred"]
    assert "full probability map" not in caplog.text, "the fused path ran"
    assert got.shape == (1, *shape) and got.dtype == torch.float32
    assert len(expected.unique()) == 4, "the test volume should have every class"
    assert (got.as_tensor() == expected.as_tensor()).float().mean() >= 0.999
    torch.testing.assert_close(got.affine, LPS)
    assert not got.applied_operations


def test_invert_to_labels_falls_back_when_the_trace_interpolates_elsewhere(caplog) -> None:
    """A Spacingd before the resize: the labels cannot be resampled by it, the full probability path runs."""
    image = _volume([20, 18, 6], affine=LPS, channels=1)
    pre = Compose(
        [
            Spacingd("image", pixdim=(1.0, 1.0, 2.5), mode="bilinear"),
            ResizeSlicesd("image", [10, 9, -1]),
            EnsureTyped("image"),
        ]
    )
    data = pre({"image": image})["image"]
    logits = torch.randn(3, *data.shape[1:], generator=torch.Generator().manual_seed(2))
    expected = _labels_reference(pre, data, logits)
    with caplog.at_level("INFO", logger="l2gnet_monai.transforms.invert"):
        got = InvertToLabelsd("pred", pre)({"image": data, "pred": logits.clone()})["pred"]
    assert "full probability map (SpatialResample in its trace may interpolate)" in caplog.text
    torch.testing.assert_close(got.as_tensor(), expected.as_tensor(), rtol=0, atol=0)
    assert got.shape == image.shape


def test_invert_to_labels_of_a_trace_recorded_in_a_spawned_worker(monkeypatch, caplog) -> None:
    """A worker started with "spawn" records its own copy of the transform (another id): matched by class name."""
    pre = Compose([ResizeSlicesd("image", [6, 5, -1]), EnsureTyped("image")])
    data = pre({"image": _volume([12, 10, 4], channels=1)})["image"]
    data.applied_operations[-1]["id"] = 1  # as recorded by the worker's copy
    logits = torch.randn(3, *data.shape[1:], generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(torch.multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    with caplog.at_level("INFO", logger="l2gnet_monai.transforms.invert"):
        got = InvertToLabelsd("pred", pre)({"image": data, "pred": logits})["pred"]
    assert "full probability map" not in caplog.text
    expected = resize_slices(logits, [12, 10], 2, softmax=True).argmax(0, keepdim=True)
    assert (got.as_tensor().long() == expected).float().mean() >= 0.999 and not got.applied_operations


def test_first_argmax_matches_torch_argmax_with_ties() -> None:
    scores = torch.randint(0, 3, (7, 5, 4, 3)).float()  # many exact ties: the first maximum wins, as torch's
    got = _first_argmax(scores)
    assert got.dtype == torch.uint8
    torch.testing.assert_close(got.long(), scores.argmax(0), rtol=0, atol=0)
    labels = resize_slices(scores, [8, 6], 2, argmax=True)
    dense = resize_slices(scores, [8, 6], 2).argmax(0, keepdim=True)
    torch.testing.assert_close(labels.long(), dense, rtol=0, atol=0)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ResizeSlices([224, 224]), "spatial_size must have 3 entries"),
        (lambda: ResizeSlices([224, 224, 16]), "-1 at the sliced axis"),
        (lambda: ResizeSlices([224, -1, -1]), "-1 at the sliced axis"),
        (lambda: ResizeSlicesd("image", [8, 8, -1], mode="trilinear"), "mode must be one of"),
        (lambda: ResizeSlices([8, 8, -1], chunk_slices=0), "chunk_slices must be a positive integer"),
    ],
)
def test_bad_arguments_are_one_line_errors(build, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(
        ValueError, match=r"expected a channel-first 3-D volume \(C, X, Y, Z\), got shape \(1, 32, 32\)"
    ):
        ResizeSlicesd("image", [8, 8, -1])({"image": torch.rand(1, 32, 32)})
    pre = Compose([ResizeSlicesd("image", [8, 8, -1])])
    with pytest.raises(ValueError, match="'image' must be the preprocessed image as a MetaTensor"):
        InvertToLabelsd("pred", pre)({"image": torch.rand(1, 8, 8, 3), "pred": torch.rand(2, 8, 8, 3)})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_invert_to_labels_refuses_nan_or_inf_scores_naming_the_case(bad: float) -> None:
    """Without the check, the argmax turned NaN scores into background labels without a word."""
    pre = Compose([ResizeSlicesd("image", [6, 5, -1]), EnsureTyped("image")])
    image = _volume([12, 10, 4], channels=1)
    image.meta["filename_or_obj"] = "/data/imagesTs/case_0007.nii.gz"
    data = pre({"image": image})["image"]
    logits = torch.randn(3, *data.shape[1:], generator=torch.Generator().manual_seed(5))
    logits[:, 2, 3, 1] = bad
    with pytest.raises(FloatingPointError, match=r"'pred' for case /data/imagesTs/case_0007.nii.gz hold 3 NaN or Inf"):
        InvertToLabelsd("pred", pre)({"image": data, "pred": logits})


def test_invert_to_labels_accepts_finite_scores_whose_sum_overflows() -> None:
    pre = Compose([ResizeSlicesd("image", [6, 5, -1]), EnsureTyped("image")])
    data = pre({"image": _volume([12, 10, 4], channels=1)})["image"]
    logits = torch.zeros(3, *data.shape[1:])
    logits[1] = 3e38  # finite, but a float32 sum of them is Inf
    labels = InvertToLabelsd("pred", pre)({"image": data, "pred": logits})["pred"]
    assert (labels == 1).all()


def test_invert_to_labels_without_a_resize_is_the_argmax_of_the_scores() -> None:
    """Slices already of the network's size: no interpolation, the label is the argmax (as MONAI's path gives)."""
    image = _volume([10, 9, 4], affine=LPS, channels=1)
    reorient = Orientationd("image", "RAS", labels=None)
    pre = Compose([reorient, ResizeSlicesd("image", [10, 9, -1]), EnsureTyped("image")])
    monai_pre = Compose([reorient, Resized("image", [10, 9, -1]), EnsureTyped("image")])
    ours, monai = pre({"image": image.clone()})["image"], monai_pre({"image": image.clone()})["image"]
    logits = torch.randn(5, *ours.shape[1:], generator=torch.Generator().manual_seed(2))
    logits[:, 0, 0, 0] = 1.5  # a tie: the first class wins
    expected = _labels_reference(monai_pre, monai, logits)
    got = InvertToLabelsd("pred", pre, orig_keys="image")({"image": ours, "pred": logits.clone()})["pred"]
    assert torch.equal(got.as_tensor(), expected.as_tensor())
    resizer = ResizeSlices([10, 9, -1])
    resized = resizer(image.clone())
    fast = resizer.inverse_to_labels(MetaTensor(logits.clone()).copy_meta_from(resized))
    assert fast.dtype == torch.uint8 and torch.equal(fast[0].long(), logits.argmax(0))
