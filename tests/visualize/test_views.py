"""The radiological view of every picture: the plane sliced, its orientation on screen and its true proportions.

Each volume holds one marker to the patient's right, anterior and superior of its centre, stored as axial LPS,
sagittal PIR or coronal LSA with 2 x 3 x 6 mm voxels. Sliced across any RAS axis, the marker must land in the
top-left quadrant of the picture (axial: anterior up, the patient's right on the left; coronal: superior up, right
on the left; sagittal: superior up, anterior on the left), drawn at the spacing's aspect ratio.
"""

from __future__ import annotations

import numpy as np
import pytest

from l2gnet_monai.visualize.views import orientation_letters, slice_view
from tests.synthetic_mri import marker_volume, marker_voxel

ACQUISITIONS = ("axial", "sagittal", "coronal")
#: Per RAS slicing axis: the plane and the RAS axes drawn down and across the screen.
EXPECTED = {0: ("sagittal", 2, 1), 1: ("coronal", 2, 0), 2: ("axial", 1, 0)}


def ras_spacing(affine: np.ndarray) -> np.ndarray:
    """Spacing (mm) along R, A, S of an affine whose axes are permuted and flipped RAS axes."""
    matrix = np.abs(affine[:3, :3])
    return matrix.max(axis=1)


def marker_centre(screen: np.ndarray) -> tuple[float, float]:
    """``(row, column)`` of the bright marker on a screen image, as fractions of its height and width."""
    grey = screen if screen.ndim == 2 else screen.mean(-1)
    rows, columns = np.nonzero(grey > 0.5 * grey.max())
    return rows.mean() / grey.shape[0], columns.mean() / grey.shape[1]


def assert_top_left(screen: np.ndarray) -> None:
    row, column = marker_centre(screen)
    assert row < 0.5 and column < 0.5, f"marker drawn at ({row:.2f}, {column:.2f}) of the picture, not top-left"


@pytest.mark.parametrize("acquisition", ACQUISITIONS)
@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_view_lays_out_every_plane_radiologically_at_true_proportions(acquisition: str, slice_axis: int) -> None:
    image, _, affine = marker_volume(acquisition)
    view = slice_view(affine, slice_axis)
    plane, down, across = EXPECTED[slice_axis]
    assert view.plane == plane and plane in view.caption(3) and "up" in view.caption(3)
    spacing = ras_spacing(affine)
    assert view.aspect == pytest.approx(spacing[down] / spacing[across])
    screen = view.take(image, int(marker_voxel(affine)[view.voxel_axis]))
    assert_top_left(screen)
    # the picture's height and width in mm are the volume's extents along the two RAS axes
    extent = np.abs(affine[:3, :3]) @ np.asarray(image.shape)
    assert screen.shape[0] * view.spacing[0] == pytest.approx(extent[down])
    assert screen.shape[1] * view.spacing[1] == pytest.approx(extent[across])
    letters = orientation_letters(view)
    assert (letters["top"], letters["left"]) == ("RAS"[down], "RAS"[across])
    # marker positions drawn over a picture (bin centres) follow the same layout
    slice_shape = tuple(n for a, n in enumerate(image.shape) if a != view.voxel_axis)
    voxel = [int(v) for a, v in enumerate(marker_voxel(affine)) if a != view.voxel_axis]
    x, y = view.screen_point(voxel[0], voxel[1], slice_shape)
    assert y / screen.shape[0] < 0.5 and x / screen.shape[1] < 0.5


@pytest.mark.parametrize("acquisition", ACQUISITIONS)
def test_square_pixels_stretch_the_coarser_axis_to_the_physical_proportions(acquisition: str) -> None:
    image, _, affine = marker_volume(acquisition)
    view = slice_view(affine, 0)
    screen = view.take(image, int(marker_voxel(affine)[view.voxel_axis]))
    square = view.square_pixels(screen)
    height, width = screen.shape[0] * view.spacing[0], screen.shape[1] * view.spacing[1]
    assert square.shape[0] / square.shape[1] == pytest.approx(height / width, rel=0.05)
    assert_top_left(square)


@pytest.mark.parametrize(
    ("acquisition", "plane"), [("axial", "axial"), ("sagittal", "sagittal"), ("coronal", "coronal")]
)
def test_without_a_plan_the_view_slices_across_the_lowest_resolution_axis(acquisition: str, plane: str) -> None:
    _, _, affine = marker_volume(acquisition)  # the 6 mm axis is the acquisition's through-plane axis
    assert slice_view(affine, None).plane == plane


def test_bad_slicing_axis_and_affine_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="slice_axis must be a RAS axis, 0, 1 or 2"):
        slice_view(np.eye(4), 3)
    with pytest.raises(ValueError, match=r"must be \(4, 4\) or \(3, 3\)"):
        slice_view(np.eye(2), 2)
    _, _, affine = marker_volume("axial")
    with pytest.raises(ValueError, match="axial slice 99 is outside the volume's 14 slices"):
        slice_view(affine, 2).take(np.zeros((30, 24, 14)), 99)
