"""Every picture path draws through the radiological view: report, inference preview, TensorBoard and explain.

Each path gets the marker volumes of :mod:`tests.synthetic_mri` (axial LPS, sagittal PIR, coronal LSA, 2 x 3 x 6 mm
voxels) and a slicing axis; every image panel it draws (recorded at matplotlib's ``imshow``, or the array handed to
TensorBoard) must show the marker in the top-left quadrant at the aspect ratio of the plane's spacing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import matplotlib.axes
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from l2gnet_monai.evaluation import EvaluationResults, compute_case_metrics
from l2gnet_monai.evaluation.report import ReportBuilder
from l2gnet_monai.visualize.handlers import SegmentationPreviewHandler, TensorBoardOverlayHandler
from l2gnet_monai.visualize.views import slice_view
from tests.synthetic_mri import marker_volume
from tests.visualize.test_views import assert_top_left, marker_centre

#: (acquisition, RAS slicing axis): each acquisition sliced as its own plane, and the sagittal stack also axially.
CASES = [("axial", 2), ("sagittal", 0), ("coronal", 1), ("sagittal", 2)]
NAMES = {1: "marker"}


@pytest.fixture
def drawn(monkeypatch) -> list[tuple[np.ndarray, Any]]:
    """Every ``(image, aspect)`` drawn with ``Axes.imshow`` while the test runs."""
    calls: list[tuple[np.ndarray, Any]] = []
    original = matplotlib.axes.Axes.imshow

    def imshow(self, image, *args, **kwargs):
        calls.append((np.asarray(image), kwargs.get("aspect")))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", imshow)
    return calls


def assert_drawn_in_view(calls: list[tuple[np.ndarray, Any]], aspect: float) -> None:
    """Every drawn panel that shows the marker has it top-left, at ``aspect``."""
    showing = [(image, a) for image, a in calls if image.ndim >= 2 and np.ptp(image) > 0]
    assert showing, "no picture was drawn"
    for image, drawn_aspect in showing:
        assert drawn_aspect == pytest.approx(aspect)
        assert_top_left(image)


@pytest.mark.parametrize(("acquisition", "slice_axis"), CASES)
def test_report_draws_the_plans_plane_radiologically(tmp_path, drawn, acquisition: str, slice_axis: int) -> None:
    image, label, affine = marker_volume(acquisition)
    builder = ReportBuilder(NAMES, modality="CT", window=(0.0, 1.0), slice_axis=slice_axis)
    builder.add_case("case", label, label, image, affine)
    results = EvaluationResults(NAMES, hd95_unit="mm")
    results.per_case["case"] = compute_case_metrics(label, label, NAMES)
    builder.write(results, str(tmp_path), paper_table="none")
    view = slice_view(affine, slice_axis)
    assert_drawn_in_view(drawn, view.aspect)
    assert view.plane in builder.cases["case"][0]["title"]


@pytest.mark.parametrize(("acquisition", "slice_axis"), CASES)
def test_inference_preview_draws_the_plans_plane_radiologically(
    tmp_path, drawn, acquisition: str, slice_axis: int
) -> None:
    image, label, affine = marker_volume(acquisition)
    handler = SegmentationPreviewHandler(str(tmp_path), NAMES, modality="CT", num_slices=4, slice_axis=slice_axis)
    output = {
        "pred": MetaTensor(torch.as_tensor(label[None]), affine=torch.as_tensor(affine)),
        "image": MetaTensor(torch.as_tensor(image[None]), affine=torch.as_tensor(affine)),
    }
    handler(SimpleNamespace(state=SimpleNamespace(output=[output])))
    assert len(list(tmp_path.glob("*_preview.png"))) == 1
    assert_drawn_in_view(drawn, slice_view(affine, slice_axis).aspect)


@pytest.mark.parametrize(("acquisition", "slice_axis"), CASES)
def test_tensorboard_overlay_is_the_plans_plane_at_true_proportions(
    tmp_path, acquisition: str, slice_axis: int
) -> None:
    image, label, affine = marker_volume(acquisition)
    handler = TensorBoardOverlayHandler(log_dir=str(tmp_path), class_names=NAMES, slice_axis=slice_axis)
    output = {
        "label": MetaTensor(torch.as_tensor(label[None]), affine=torch.as_tensor(affine)),
        "pred": MetaTensor(torch.as_tensor(label[None]), affine=torch.as_tensor(affine)),
        "image": MetaTensor(torch.as_tensor(image[None]), affine=torch.as_tensor(affine)),
    }
    try:
        handler._collect(SimpleNamespace(state=SimpleNamespace(output=[output])))
    finally:
        handler.close()
    (name, rgb), *_ = handler._images
    view = slice_view(affine, slice_axis)
    assert view.plane in name
    truth = np.moveaxis(rgb, 0, -1)[:, : rgb.shape[2] // 3]  # the ground-truth third of "truth | pred | errors"
    assert_top_left(truth)
    rows, columns = view.take(label, 0).shape
    physical = rows * view.spacing[0] / (columns * view.spacing[1])
    assert truth.shape[0] / truth.shape[1] == pytest.approx(physical, rel=0.05)


@pytest.mark.parametrize(("acquisition", "slice_axis"), CASES)
def test_explain_draws_the_models_plane_radiologically(
    tmp_path, drawn, monkeypatch, acquisition: str, slice_axis: int
) -> None:
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    import l2gnet_monai.visualize.explain as explain_module
    from tests.networks.test_l2gnet import initialised_small_net

    image, _, affine = marker_volume(acquisition, shape=(40, 32, 24))
    path = tmp_path / "marker.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    loaded = {
        "network": initialised_small_net(out_channels=2),
        "preprocessing": Compose(
            [LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), Orientationd("image", "RAS")]
        ),
        "modality": "CT",
        "class_names": NAMES,
        "slice_axis": slice_axis,
    }
    monkeypatch.setattr(explain_module, "load_bundle", lambda bundle_dir, overrides: loaded)
    ras = nib.as_closest_canonical(nib.Nifti1Image(image, affine))
    ras_view = slice_view(ras.affine, slice_axis)
    marker = np.rint(np.linalg.solve(ras.affine, [14.0, 16.0, 20.0, 1.0])[:3]).astype(int)
    explain_module.explain_volume(tmp_path, path, tmp_path / "out", slice_index=int(marker[slice_axis]), num_bins=2)
    greys = [(x, a) for x, a in drawn if x.ndim == 3 and np.allclose(x[..., 0], x[..., 1])]  # the plain image panels
    assert greys
    assert_drawn_in_view(greys, ras_view.aspect)
    row, column = marker_centre(greys[0][0])
    assert row < 0.5 and column < 0.5
