"""Overlays, error maps, class colours and slice choice of l2gnet_monai.visualize."""

from __future__ import annotations

import numpy as np
import pytest

from l2gnet_monai.data.labels import ACDC_LABELS, SYNAPSE_LABELS
from l2gnet_monai.visualize.colors import (
    ERROR_ALPHA,
    ERROR_COLORS,
    ERROR_UNDERLAY,
    FALLBACK_PALETTE,
    OVERLAY_ALPHA,
    class_palette,
)
from l2gnet_monai.visualize.figures import mosaic_figure, save_figure, slice_figure
from l2gnet_monai.visualize.overlays import display_image, error_labels, error_overlay, label_overlay, select_slices
from l2gnet_monai.visualize.views import slice_view


def _label_volume() -> np.ndarray:
    label = np.zeros((40, 32, 6), dtype=np.int64)
    label[5:15, 4:20, 1:4] = 1
    label[20:30, 10:25, 2:6] = 2
    label[8:12, 22:30, 3] = 3
    return label


def test_overlay_gives_each_class_its_legend_colour_at_the_documented_opacity() -> None:
    rng = np.random.default_rng(0)
    grey = rng.random((40, 32)).astype(np.float32)
    label = _label_volume()[..., 3]
    palette = class_palette(ACDC_LABELS)
    rgb = label_overlay(grey, label, palette)
    assert rgb.shape == (40, 32, 3)
    for k, colour in palette.items():
        mask = label == k
        assert mask.any()
        expected = (1 - OVERLAY_ALPHA) * grey[mask][:, None] + OVERLAY_ALPHA * np.asarray(colour)[None]
        np.testing.assert_allclose(rgb[mask], expected, atol=1e-6)
    background = label == 0
    np.testing.assert_allclose(rgb[background], np.repeat(grey[background][:, None], 3, axis=1), atol=1e-6)


def test_error_map_marks_exactly_the_voxels_where_prediction_and_label_differ() -> None:
    rng = np.random.default_rng(1)
    label = _label_volume()
    pred = label.copy()
    flips = rng.random(label.shape) < 0.1
    pred[flips] = rng.integers(0, 4, size=int(flips.sum()))
    errors = error_labels(pred, label)
    np.testing.assert_array_equal(errors != 0, pred != label)
    np.testing.assert_array_equal(errors == 1, (pred != 0) & (label == 0))
    np.testing.assert_array_equal(errors == 2, (pred == 0) & (label != 0))
    np.testing.assert_array_equal(errors == 3, (pred != 0) & (label != 0) & (pred != label))
    grey = np.full((40, 32), 0.3, dtype=np.float32)
    rgb = error_overlay(grey, pred[..., 3], label[..., 3])
    differ = pred[..., 3] != label[..., 3]
    underlay = ERROR_UNDERLAY * 0.3
    coloured = np.abs(rgb - underlay).max(-1) > 1e-6
    np.testing.assert_array_equal(coloured, differ)
    for value, colour in ERROR_COLORS.items():
        mask = errors[..., 3] == value
        if mask.any():
            np.testing.assert_allclose(
                rgb[mask],
                np.broadcast_to((1 - ERROR_ALPHA) * underlay + ERROR_ALPHA * np.asarray(colour), rgb[mask].shape),
                atol=1e-6,
            )


def test_every_error_colour_stands_out_on_the_brightest_tissue() -> None:
    label = np.ones((3, 3), np.int64)
    label[0, 0] = 0
    pred = label.copy()
    pred[0, 0], pred[1, 1], pred[2, 2] = 1, 0, 2  # a false positive, a false negative, a wrong class
    rgb = error_overlay(np.ones((3, 3), np.float32), pred, label)  # white tissue
    background = rgb[0, 1]
    for pixel in (rgb[0, 0], rgb[1, 1], rgb[2, 2]):
        assert np.abs(pixel - background).max() > 0.35, f"error colour {pixel} too close to the tissue {background}"


def test_palette_follows_the_paper_for_its_classes_and_a_fixed_palette_otherwise() -> None:
    synapse = class_palette(SYNAPSE_LABELS)
    assert synapse[5] == (1.0, 1.0, 0.0)  # liver yellow
    assert synapse[2] == (0.0, 0.0, 1.0) and synapse[3] == (0.0, 1.0, 0.0)  # right kidney blue, left green
    assert len(set(synapse.values())) == 8
    acdc = class_palette({"0": "background", "1": "RV", "2": "myocardium", "3": "LV"})
    assert acdc[1] == (0.0, 0.0, 1.0) and acdc[2] == (1.0, 1.0, 0.0)
    other = class_palette({0: "background", 1: "tumour", 2: "vessel", 3: "liver"})
    assert other == {1: FALLBACK_PALETTE[0], 2: FALLBACK_PALETTE[1], 3: (1.0, 1.0, 0.0)}
    assert class_palette({1: "tumour", 2: "vessel"}) == {1: FALLBACK_PALETTE[0], 2: FALLBACK_PALETTE[1]}


def test_display_windowing_follows_the_modality() -> None:
    hu = np.array([-1000.0, -125.0, 75.0, 275.0, 1000.0])
    np.testing.assert_allclose(display_image(hu, "CT"), [0, 0, 0.5, 1, 1])
    mr = np.linspace(0, 1000, 101)
    shown = display_image(mr, "MRI")
    assert shown.min() == 0 and shown.max() == 1 and shown[50] == pytest.approx(0.5)


def test_slice_choice_shows_the_largest_error_area_never_a_tiny_edge_slice() -> None:
    label = np.zeros((40, 40, 6), dtype=np.int64)
    label[5:35, 5:35, 1:5] = 1
    label[20, 20, 0] = 2  # an edge slice with one voxel of a class: 2-D Dice 0 once missed
    label[35:39, 5:35, 3] = 1  # slice 3 has the most foreground
    label[10:30, 10:30, 3] = 2
    pred = label.copy()
    pred[20, 20, 0] = 0
    pred[5:35, 5:15, 2] = 0  # 300 pixels missed in slice 2
    pred[10:20, 10:20, 4] = 2  # 100 pixels of the wrong class in slice 4
    chosen = select_slices(pred, label, axis=2, pixel_area_mm2=1.0)
    assert chosen == {"most foreground": 3, "largest error": 2}
    # an error area in mm^2: at 0.1 mm^2 per pixel no slice covers 100 mm^2 of foreground, so none is chosen
    assert select_slices(pred, label, axis=2, pixel_area_mm2=0.1) == {"most foreground": 3}
    assert "largest error" not in select_slices(label, label, axis=2)
    assert select_slices(np.moveaxis(pred, 2, 0), np.moveaxis(label, 2, 0), axis=0)["largest error"] == 2


def test_figures_are_written_as_png(tmp_path) -> None:
    label = _label_volume()
    grey = np.random.default_rng(0).random(label.shape).astype(np.float32)
    names = dict(ACDC_LABELS)
    palette = class_palette(names)
    view = slice_view(np.diag([-1.0, -2.0, 4.0, 1.0]), 2)
    rows = [
        {"grey": view.take(grey, z), "label": view.take(label, z), "pred": view.take(label, 5 - z), "view": view}
        for z in (2, 3)
    ]
    path = save_figure(slice_figure(rows, palette, names, "case"), str(tmp_path / "slices.png"))
    mosaic = save_figure(mosaic_figure(grey, label, palette, names, 4, "case", view), str(tmp_path / "mosaic.png"))
    for p in (path, mosaic):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["mosaic.png", "slices.png"]  # no temporary files left


def test_the_pictures_of_the_docs_exist_and_stay_small() -> None:
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    doc = repo / "docs" / "interpretability.md"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", doc.read_text(encoding="utf-8"))
    assert len(links) >= 6
    files = {(doc.parent / link).resolve() for link in links}
    readme = re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+\.png)\)", (repo / "README.md").read_text(encoding="utf-8"))
    files |= {(repo / link).resolve() for link in readme}
    assert readme and all(f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    assert sum(f.stat().st_size for f in files) < 1_000_000
