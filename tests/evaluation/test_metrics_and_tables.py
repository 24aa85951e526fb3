# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Tests of the paper-form evaluation: Dice/HD95 per case and class, aggregation, files, tables, folders."""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from l2gnet_monai.evaluation import (
    ACDC_CLASSES,
    PAPER_RESULTS,
    SYNAPSE_CLASSES,
    TABLE_COLUMNS,
    EvaluationResults,
    aggregate,
    case_name_from_path,
    compute_case_metrics,
    dice_score,
    evaluate_folders,
    format_comparison,
    format_table_row,
    hd95,
    metric_percase,
    write_results,
)

# --------------------------------------------------------------------------------------------------
# independent references, written without binary_erosion / distance transforms
# --------------------------------------------------------------------------------------------------


def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Physical coordinates of foreground voxels with a face neighbour in the background (or outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            interior &= np.roll(padded, shift, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    surface = mask & ~interior
    return np.argwhere(surface) * np.asarray(spacing, dtype=float)


def _ref_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    return cdist(_surface_points(a, spacing), _surface_points(b, spacing)).min(axis=1)


def ref_hd95_protocol(pred, gt, spacing):
    """medpy / TransUNet: 95th percentile of the union of both directed surface distance sets."""
    return float(
        np.percentile(np.concatenate([_ref_directed(pred, gt, spacing), _ref_directed(gt, pred, spacing)]), 95)
    )


def ref_hd95_monai(pred, gt, spacing):
    """MONAI: maximum of the two directed 95th percentiles."""
    return float(
        max(np.percentile(_ref_directed(pred, gt, spacing), 95), np.percentile(_ref_directed(gt, pred, spacing), 95))
    )


def ref_dice(pred, gt):
    return 2.0 * np.logical_and(pred, gt).sum() / (pred.sum() + gt.sum())


def _blobs(shape, seed):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    masks = []
    for _ in range(2):
        mask = np.zeros(shape, bool)
        for _ in range(2):
            centre = rng.uniform(0, np.asarray(shape) - 1)
            radii = rng.uniform(1.5, 4.0, size=len(shape))
            mask |= (((grid - centre) / radii) ** 2).sum(-1) <= 1.0
        masks.append(mask)
    return masks


# a stray pixel: MONAI and the protocol disagree (module docstring example)
def _stray_pixel_case():
    gt = np.zeros((8, 20), bool)
    gt[2:6, 2:6] = True
    pred = gt.copy()
    pred[3, 15] = True
    return pred, gt


# --------------------------------------------------------------------------------------------------
# Dice and HD95
# --------------------------------------------------------------------------------------------------


def test_dice_by_hand():
    gt = np.zeros((4, 4, 3), bool)
    gt[0, :3, 0] = gt[1, :3, 0] = True  # 6 voxels
    pred = np.zeros_like(gt)
    pred[0, :3, 0] = pred[3, 3, 2] = True  # 4 voxels, 3 shared
    assert dice_score(pred, gt) == pytest.approx(0.6)
    assert dice_score(torch.as_tensor(pred), torch.as_tensor(gt)) == pytest.approx(0.6)


def test_hd95_single_voxels_anisotropic():
    pred = np.zeros((3, 4, 6), bool)
    gt = np.zeros_like(pred)
    pred[0, 0, 0] = True
    gt[2, 1, 3] = True
    spacing = (0.5, 2.0, 1.5)
    expected = np.sqrt(1.0**2 + 2.0**2 + 4.5**2)
    for method in ("medpy", "monai"):
        assert hd95(pred, gt, spacing, method=method) == pytest.approx(expected, rel=1e-6)
    assert hd95(pred, gt) == pytest.approx(np.sqrt(4 + 1 + 9))  # voxels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.9, 2.5), (3.0, 0.5, 1.0)])
def test_hd95_and_dice_against_independent_reference(seed, spacing):
    pred, gt = _blobs((10, 12, 9), seed)
    assert hd95(pred, gt, spacing) == pytest.approx(ref_hd95_protocol(pred, gt, spacing), rel=1e-9, abs=1e-9)
    assert hd95(pred, gt, spacing, method="monai") == pytest.approx(ref_hd95_monai(pred, gt, spacing), rel=1e-5)
    assert dice_score(pred, gt) == pytest.approx(ref_dice(pred, gt), rel=1e-6)


def test_hd95_2d_and_isotropic_scalar_spacing():
    pred, gt = _blobs((15, 13), 3)
    assert hd95(pred, gt, 2.0) == pytest.approx(ref_hd95_protocol(pred, gt, (2.0, 2.0)))


def test_monai_and_protocol_differ_on_stray_pixel():
    pred, gt = _stray_pixel_case()
    # prediction->truth distances: twelve 0s and one 10; truth->prediction: twelve 0s
    assert hd95(pred, gt) == pytest.approx(0.0)  # percentile([0]*24 + [10], 95)
    assert hd95(pred, gt, method="monai") == pytest.approx(4.0, rel=1e-5)  # percentile([0]*12 + [10], 95)
    assert ref_hd95_protocol(pred, gt, (1, 1)) == pytest.approx(0.0)
    assert ref_hd95_monai(pred, gt, (1, 1)) == pytest.approx(4.0)


def test_against_medpy_if_installed():
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    pred, gt = _stray_pixel_case()
    assert hd95(pred, gt) == pytest.approx(medpy_binary.hd95(pred, gt), abs=1e-9)
    assert hd95(pred, gt, method="monai") != pytest.approx(medpy_binary.hd95(pred, gt), abs=1e-3)
    for seed in range(4):
        pred, gt = _blobs((10, 12, 9), seed)
        spacing = (0.7, 0.9, 2.5)
        assert hd95(pred, gt, spacing) == pytest.approx(medpy_binary.hd95(pred, gt, voxelspacing=spacing), rel=1e-9)
        assert dice_score(pred, gt) == pytest.approx(medpy_binary.dc(pred, gt), rel=1e-6)


def test_objects_touching_the_image_border():
    pred = np.zeros((6, 7, 5), bool)
    gt = np.zeros_like(pred)
    pred[:4, :, :2] = True
    gt[:, 2:, 1:3] = True
    spacing = (1.2, 0.8, 3.0)
    assert hd95(pred, gt, spacing) == pytest.approx(ref_hd95_protocol(pred, gt, spacing))


def test_hd95_errors():
    pred, gt = _stray_pixel_case()
    with pytest.raises(ValueError, match="non-empty"):
        hd95(np.zeros_like(pred), gt)
    with pytest.raises(ValueError, match="same shape"):
        hd95(pred, gt[:, :10])
    with pytest.raises(ValueError, match="one value per spatial dimension"):
        hd95(pred, gt, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(pred, gt, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="method"):
        hd95(pred, gt, method="scipy")


# --------------------------------------------------------------------------------------------------
# TransUNet's convention for empty masks
# --------------------------------------------------------------------------------------------------


def test_convention_all_edge_cases():
    some = np.zeros((5, 5, 5), bool)
    some[1:3, 1:3, 1:3] = True
    other = np.zeros_like(some)
    other[2:4, 1:3, 1:3] = True
    empty = np.zeros_like(some)
    dice, hd = metric_percase(some, other)
    assert dice == pytest.approx(0.5) and hd == pytest.approx(ref_hd95_protocol(some, other, (1, 1, 1)))
    assert metric_percase(some, empty) == (1.0, 0.0)  # prediction present, ground truth empty
    assert metric_percase(empty, other) == (0.0, 0.0)  # prediction empty
    assert metric_percase(empty, empty) == (0.0, 0.0)  # both empty


def test_compute_case_metrics_label_maps():
    label = np.zeros((6, 6, 4), np.int16)
    label[0:2, 0:2, :] = 1
    label[3:5, 3:5, :2] = 2  # class 3 absent from the ground truth
    pred = np.zeros_like(label)
    pred[0:2, 0:3, :] = 1
    pred[5, 5, 3] = 3  # class 2 missed, class 3 predicted where absent
    out = compute_case_metrics(pred, label, {1: "a", 2: "b", 3: "c"}, spacing=(1.0, 1.0, 2.0))
    assert list(out) == ["a", "b", "c"]
    assert out["a"]["dice"] == pytest.approx(2 * 16 / (16 + 24))
    assert out["a"]["hd95"] == pytest.approx(ref_hd95_protocol(pred == 1, label == 1, (1.0, 1.0, 2.0)))
    assert out["b"] == {"dice": 0.0, "hd95": 0.0}
    assert out["c"] == {"dice": 1.0, "hd95": 0.0}
    out_t = compute_case_metrics(torch.as_tensor(pred), torch.as_tensor(label), {1: "a", 2: "b", 3: "c"}, (1, 1, 2))
    assert out_t == out


def test_compute_case_metrics_bad_values():
    label = np.zeros((4, 4, 2), np.int16)
    pred = label.copy()
    pred[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"prediction contains label values \[9\] outside the class range \[0, 3\]"):
        compute_case_metrics(pred, label, ACDC_CLASSES)
    with pytest.raises(ValueError, match="non-integer"):
        compute_case_metrics(label.astype(np.float32) + 0.5, label, ACDC_CLASSES)
    with pytest.raises(ValueError, match="unique"):
        compute_case_metrics(label, label, {1: "x", 2: "x"})
    with pytest.raises(ValueError, match="foreground"):
        compute_case_metrics(label, label, {0: "background"})


def test_background_entry_is_not_scored():
    label = np.zeros((4, 4, 2), np.int16)
    label[1:3, 1:3, :] = 1
    out = compute_case_metrics(label, label, {0: "background", 1: "x"})
    assert out == {"x": {"dice": 1.0, "hd95": 0.0}}


# --------------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------------


def test_aggregation_cases_then_classes_by_hand():
    per_case = {
        "c1": {"spleen": {"dice": 0.9, "hd95": 2.0}, "liver": {"dice": 0.5, "hd95": 10.0}},
        "c2": {"spleen": {"dice": 0.7, "hd95": 4.0}, "liver": {"dice": 0.0, "hd95": 0.0}},
        "c3": {"spleen": {"dice": 0.8, "hd95": 3.0}, "liver": {"dice": 1.0, "hd95": 0.0}},
    }
    summary = aggregate(per_case, {1: "spleen", 5: "liver"})
    assert summary["per_class"]["spleen"] == pytest.approx({"dsc": 0.8, "hd95": 3.0})
    assert summary["per_class"]["liver"] == pytest.approx({"dsc": 0.5, "hd95": 10.0 / 3})
    assert summary["mean_dsc"] == pytest.approx((0.8 + 0.5) / 2)
    assert summary["mean_hd95"] == pytest.approx((3.0 + 10.0 / 3) / 2)
    assert summary["num_cases"] == 3
    with pytest.raises(ValueError, match="no score"):
        aggregate({"c1": {"spleen": {"dice": 1.0, "hd95": 0.0}}}, {1: "spleen", 5: "liver"})
    with pytest.raises(ValueError, match="no cases"):
        aggregate({}, {1: "spleen"})


def test_aggregation_is_per_case_not_pooled():
    # case 1: a large, perfect organ; case 2: a small, missed one -> mean of case Dice, not a pooled Dice
    big = np.zeros((10, 10, 10), np.uint8)
    big[:8, :8, :8] = 1
    small = np.zeros_like(big)
    small[0, 0, 0] = 1
    res = EvaluationResults(
        {1: "x"},
        {
            "a": compute_case_metrics(big, big, {1: "x"}),
            "b": compute_case_metrics(np.zeros_like(small), small, {1: "x"}),
        },
    )
    assert res.summary()["mean_dsc"] == pytest.approx(0.5)
    pooled = ref_dice(np.concatenate([big, 0 * small]) == 1, np.concatenate([big, small]) == 1)
    assert pooled > 0.99


# --------------------------------------------------------------------------------------------------
# files and tables
# --------------------------------------------------------------------------------------------------


def _synapse_results() -> EvaluationResults:
    # distinct numbers per class so that the column mapping is visible: class index i -> dice 0.i0, hd95 i
    per_case = {
        case: {name: {"dice": i / 10 + 0.01 * k, "hd95": float(i) + k} for i, name in SYNAPSE_CLASSES.items()}
        for k, case in enumerate(["0001", "0002"])
    }
    return EvaluationResults(SYNAPSE_CLASSES, per_case, hd95_unit="mm")


def test_write_results_csv_and_json(tmp_path):
    res = _synapse_results()
    out = tmp_path / "eval"
    paths = write_results(res, str(out))
    assert sorted(os.listdir(out)) == ["metrics_per_case.csv", "summary.json"]  # no temp files left
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 8 and set(rows[0]) == {"case", "class", "dice", "hd95"}
    row = next(r for r in rows if r["case"] == "0002" and r["class"] == "liver")
    assert float(row["dice"]) == pytest.approx(0.51) and float(row["hd95"]) == pytest.approx(6.0)
    with open(paths["json"]) as f:
        summary = json.load(f)
    assert summary["num_cases"] == 2 and summary["hd95_unit"] == "mm" and summary["hd95_method"] == "medpy"
    assert summary["per_class"]["liver"]["dsc"] == pytest.approx(0.505)
    assert summary["mean_dsc"] == pytest.approx(np.mean([i / 10 + 0.005 for i in range(1, 9)]))
    assert summary["mean_hd95"] == pytest.approx(5.0)
    # an invalid result overwrites nothing
    bad = EvaluationResults(SYNAPSE_CLASSES, {"x": {"spleen": {"dice": 1.0, "hd95": 0.0}}})
    with pytest.raises(ValueError):
        write_results(bad, str(out))
    with open(paths["json"]) as f:
        assert json.load(f) == summary
    assert sorted(os.listdir(out)) == ["metrics_per_case.csv", "summary.json"]


def test_table_row_maps_columns_by_name():
    row = format_table_row(_synapse_results(), "synapse", "ours")
    # columns: Method DSC HD Aorta(7) GB(4) KL(3) KR(2) Liver(5) PC(8) SP(1) SM(6)
    assert row == ["ours", "45.50", "5.00", "70.50", "40.50", "30.50", "20.50", "50.50", "80.50", "10.50", "60.50"]


def test_acdc_row_and_name_aliases():
    per_case = {"p1": {"right_ventricle": {"dice": 0.9, "hd95": 1.5}, "MYO": {"dice": 0.8, "hd95": 1.25}}}
    per_case["p1"]["Left-Ventricle"] = {"dice": 0.95, "hd95": 1.0}
    res = EvaluationResults({1: "right_ventricle", 2: "MYO", 3: "Left-Ventricle"}, per_case)
    assert format_table_row(res, "ACDC", "x") == [
        "x",
        "88.33",
        "1.25",
        "90.00",
        "80.00",
        "95.00",
        "1.50",
        "1.25",
        "1.00",
    ]
    with pytest.raises(ValueError, match="'Aorta'.*right_ventricle"):
        format_table_row(res, "synapse")
    with pytest.raises(ValueError, match="dataset"):
        format_table_row(res, "brats")


def test_format_comparison_contains_paper_rows():
    text = format_comparison(_synapse_results(), dataset="synapse")
    assert "L2GNet(4-ref)" in text and "82.23" in text and "14.17" in text and "\nours " in text
    for method, values in PAPER_RESULTS["synapse"].items():
        line = next(ln for ln in text.splitlines() if ln.startswith(method + " "))
        assert line.split()[1:] == [f"{v:.2f}" for v in values]
    assert text.splitlines()[-3].startswith("ours ")  # our row after the paper's (no name given: "ours")
    assert "HD95 in mm" in text
    acdc = format_comparison(None, dataset="acdc")
    assert "91.44" in acdc and "1.24" in acdc and "89.97" in acdc and "ours" not in acdc


def test_paper_results_shape_and_values():
    for dataset, rows in PAPER_RESULTS.items():
        assert len(rows) == 9
        assert all(len(v) == len(TABLE_COLUMNS[dataset]) for v in rows.values())
    assert PAPER_RESULTS["synapse"]["L2GNet(4-ref)"][:2] == (82.23, 14.17)
    assert PAPER_RESULTS["synapse"]["TransUNet"][0] == 77.48
    assert PAPER_RESULTS["acdc"]["L2GNet(4-ref)"][0] == 91.44


# --------------------------------------------------------------------------------------------------
# folders of NIfTI files
# --------------------------------------------------------------------------------------------------


def test_case_names():
    assert case_name_from_path("/d/label0001.nii.gz") == "0001"
    assert case_name_from_path("/p/img0001/img0001_seg.nii.gz") == "0001"
    assert case_name_from_path("case0001_pred.nii.gz") == "0001"
    assert case_name_from_path("patient001_frame01_gt.nii.gz") == "patient001_frame01"
    assert case_name_from_path("patient001_frame01_seg.nii") == "patient001_frame01"


SPACING = (0.8, 0.7, 2.5)


def _save(path, data, spacing=SPACING):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))


def _make_folders(tmp_path):
    rng = np.random.default_rng(0)
    gts, preds = {}, {}
    for case in ("0001", "0002"):
        gt = np.zeros((12, 10, 6), np.uint8)
        gt[2:7, 2:6, 1:4] = 1
        gt[7:10, 5:9, 2:5] = 3
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.05] = 2
        _save(tmp_path / "labels" / f"label{case}.nii.gz", gt)
        _save(tmp_path / "preds" / f"img{case}" / f"img{case}_seg.nii.gz", pred.astype(np.float32))
        gts[case], preds[case] = gt, pred
    return gts, preds


CLASSES3 = {1: "RV", 2: "Myo", 3: "LV"}


def test_evaluate_folders(tmp_path):
    gts, preds = _make_folders(tmp_path)
    out = tmp_path / "out"
    res = evaluate_folders(str(tmp_path / "preds"), str(tmp_path / "labels"), CLASSES3, output_dir=str(out))
    assert list(res.per_case) == ["0001", "0002"] and res.hd95_unit == "mm"
    for case in gts:
        expected = compute_case_metrics(preds[case], gts[case], CLASSES3, spacing=SPACING)
        for name in CLASSES3.values():  # the header stores the spacing as float32
            assert res.per_case[case][name] == pytest.approx(expected[name], rel=1e-6)
    assert res.per_case["0001"]["Myo"] == {"dice": 1.0, "hd95": 0.0}  # predicted, absent from the ground truth
    assert 0.0 < res.per_case["0001"]["RV"]["dice"] < 1.0
    with open(out / "summary.json") as f:
        assert json.load(f)["num_cases"] == 2
    # voxel units and a JSON datalist with relative paths
    datalist = {"test": [{"image": "x.nii.gz", "label": "labels/label0002.nii.gz"}]}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    res_vox = evaluate_folders(str(tmp_path / "preds"), str(tmp_path / "datalist.json"), CLASSES3, use_spacing=False)
    assert list(res_vox.per_case) == ["0002"] and res_vox.hd95_unit == "voxel"
    assert res_vox.per_case["0002"] == compute_case_metrics(preds["0002"], gts["0002"], CLASSES3)


def test_evaluate_folders_missing_prediction(tmp_path):
    _make_folders(tmp_path)
    os.remove(tmp_path / "preds" / "img0002" / "img0002_seg.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"'0002'.*label0002\.nii\.gz"):
        evaluate_folders(str(tmp_path / "preds"), str(tmp_path / "labels"), CLASSES3, output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_evaluate_folders_shape_mismatch(tmp_path):
    _make_folders(tmp_path)
    _save(tmp_path / "preds" / "img0002" / "img0002_seg.nii.gz", np.zeros((12, 10, 5), np.uint8))
    with pytest.raises(ValueError, match=r"img0002_seg\.nii\.gz.*\(12, 10, 5\).*label0002\.nii\.gz.*\(12, 10, 6\)"):
        evaluate_folders(str(tmp_path / "preds"), str(tmp_path / "labels"), CLASSES3, output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_evaluate_folders_values_out_of_range(tmp_path):
    _make_folders(tmp_path)
    bad = np.zeros((12, 10, 6), np.uint8)
    bad[0, 0, 0] = 13  # e.g. a raw 13-organ Synapse label against the 8-class map
    _save(tmp_path / "labels" / "label0002.nii.gz", bad)
    with pytest.raises(ValueError, match=r"ground truth .*label0002\.nii\.gz contains label values \[13\]"):
        evaluate_folders(str(tmp_path / "preds"), str(tmp_path / "labels"), CLASSES3, output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_evaluate_folders_missing_label_file(tmp_path):
    _make_folders(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz"):
        evaluate_folders(str(tmp_path / "preds"), [str(tmp_path / "nope.nii.gz")], CLASSES3)
