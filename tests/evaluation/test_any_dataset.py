# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Evaluation of any dataset: the paper's table only for the paper's classes, a per-class table otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from l2gnet_monai.cli import main
from l2gnet_monai.data.labels import ACDC_LABELS, SYNAPSE_LABELS
from l2gnet_monai.evaluation import (
    EvaluationResults,
    detect_paper_table,
    format_comparison,
    format_report,
    format_scores,
    network_label,
    resolve_paper_table,
)
from l2gnet_monai.evaluation.handler import PaperMetricsHandler

MRI3 = {0: "background", 1: "liver", 2: "tumour", 3: "vessel"}


def _results(class_names: dict[int, str], unit: str = "mm", method: str | None = None) -> EvaluationResults:
    names = [n for k, n in class_names.items() if k != 0]
    per_case = {
        case: {n: {"dice": 0.1 * (i + 1) + 0.01 * k, "hd95": float(i + k)} for i, n in enumerate(names)}
        for k, case in enumerate(["a", "b"])
    }
    return EvaluationResults(class_names, per_case, hd95_unit=unit, method=method)


# --------------------------------------------------------------------------------------------------
# which table
# --------------------------------------------------------------------------------------------------


def test_the_paper_table_is_detected_by_class_names_only_for_the_papers_classes() -> None:
    assert detect_paper_table(SYNAPSE_LABELS) == "synapse"
    assert detect_paper_table(ACDC_LABELS) == "acdc"
    assert detect_paper_table({1: "Right-Ventricle", 2: "myocardium", 3: "left_ventricle"}) == "acdc"
    assert detect_paper_table(["background", "RV", "Myo", "LV"]) == "acdc"
    assert detect_paper_table(MRI3) is None
    assert detect_paper_table({1: "RV", 2: "Myo"}) is None  # a subset is not the paper's table
    assert detect_paper_table({**ACDC_LABELS, 4: "aorta"}) is None  # nor a superset


def test_resolve_paper_table_values_and_errors() -> None:
    assert resolve_paper_table("auto", MRI3) is None
    assert resolve_paper_table("AUTO", SYNAPSE_LABELS) == "synapse"
    assert resolve_paper_table("acdc", ACDC_LABELS) == "acdc"
    for off in (None, "none", "None", ""):  # "none" is what works on MONAI's command line
        assert resolve_paper_table(off, SYNAPSE_LABELS) is None
    with pytest.raises(ValueError) as info:
        resolve_paper_table("synapse", MRI3)
    message = str(info.value)
    assert "paper_table: 'synapse'" in message and "'Aorta'" in message and "'SM'" in message
    assert "['liver', 'tumour', 'vessel']" in message and "'auto'" in message and "'none'" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"lack \['Myo'\]"):
        resolve_paper_table("acdc", {1: "RV", 2: "LV"})
    with pytest.raises(ValueError, match="expected one of"):
        resolve_paper_table("brats", MRI3)


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------


def test_per_class_table_for_other_classes_with_the_hd95_unit_in_the_header() -> None:
    res = _results(MRI3, unit="voxel", method="L2GNet (resnet18)")
    text = format_report(res)
    lines = text.splitlines()
    assert lines[0].startswith("L2GNet (resnet18): ") and "2 cases" in lines[0] and "voxels" in lines[0]
    assert lines[1].split() == ["Class", "DSC", "(%)", "HD95", "(voxels)"]
    summary = res.summary()
    for name in ("liver", "tumour", "vessel"):
        row = next(line for line in lines if line.startswith(name + " "))
        expected = summary["per_class"][name]
        assert row.split()[1:] == [f"{100 * expected['dsc']:.2f}", f"{expected['hd95']:.2f}"]
    assert lines[-1].split() == ["mean", f"{100 * summary['mean_dsc']:.2f}", f"{summary['mean_hd95']:.2f}"]
    assert "Aorta" not in text and "Table" not in text
    assert "HD95 (mm)" in format_scores(_results(MRI3, unit="mm"), name="x")


def test_paper_table_title_names_both_hd95_units_and_the_scored_network() -> None:
    text = format_report(_results(SYNAPSE_LABELS, unit="mm", method="L2GNet (resnet34)"))
    title = text.splitlines()[0]
    assert title.startswith("Table 1 (Synapse") and "HD95 in voxels (paper's rows), in mm (L2GNet (resnet34))" in title
    assert text.splitlines()[-3].startswith("L2GNet (resnet34) ")
    only_paper = format_comparison(None, "acdc").splitlines()[0]
    assert only_paper.endswith("HD95 in voxels (paper's rows)")
    # an explicit table that the classes do not fit is refused
    with pytest.raises(ValueError, match="'Aorta'"):
        format_report(_results(MRI3), "synapse")
    # "none" prints the per-class table even for the paper's classes
    assert format_report(_results(ACDC_LABELS), "none").splitlines()[1].startswith("Class")


def test_network_label() -> None:
    assert network_label("l2gnet_monai.networks.L2GNet", "resnet50") == "L2GNet (resnet50)"
    assert network_label(torch.nn.Identity) == "Identity"
    assert network_label("monai.networks.nets.FlexibleUNet", "efficientnet-b0") == "FlexibleUNet (efficientnet-b0)"


# --------------------------------------------------------------------------------------------------
# the bundle's handler
# --------------------------------------------------------------------------------------------------


def _outputs() -> list[dict]:
    label = np.zeros((1, 8, 8, 4), np.int64)
    label[0, 2:6, 2:6, 1:3] = 1
    label[0, 6:8, 0:2, :] = 3
    affine = torch.diag(torch.tensor([1.5, 1.5, 3.0, 1.0], dtype=torch.float64))
    meta = {"filename_or_obj": "/data/c0.nii.gz"}
    return [{"pred": MetaTensor(torch.as_tensor(label), affine=affine), "label": MetaTensor(label, meta=meta)}]


def test_handler_prints_a_per_class_table_named_after_the_engines_network(tmp_path: Path, capsys) -> None:
    outputs = _outputs()
    engine = Engine(lambda e, batch: outputs)
    engine.network = torch.nn.DataParallel(torch.nn.Conv2d(1, 4, 1))  # the scored network, wrapped
    PaperMetricsHandler(MRI3, str(tmp_path)).attach(engine)  # dataset defaults to "auto"
    engine.run([0], max_epochs=1)
    out = capsys.readouterr().out
    assert out.startswith("Conv2d: ") and "HD95 (voxel" not in out and "HD95 (mm)" in out
    assert "Table" not in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "Conv2d" and list(summary["per_class"]) == ["liver", "tumour", "vessel"]


def test_handler_refuses_an_explicit_table_the_classes_do_not_fit_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"paper_table: 'acdc'.*lack \['RV', 'Myo', 'LV'\]"):
        PaperMetricsHandler(MRI3, str(tmp_path / "eval"), dataset="acdc", name="x")
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------------------------------
# l2gnet-monai evaluate on any dataset
# --------------------------------------------------------------------------------------------------


def _save(path: Path, data: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))


def _msd_with_predictions(root: Path, labels: dict[str, str]) -> tuple[Path, Path]:
    """An MSD dataset (test split in imagesTs/labelsTs) and predictions: class 1 perfect, class 2 half missed."""
    items = []
    for case in ("la_003", "la_007"):
        gt = np.zeros((16, 14, 5), np.uint8)
        gt[2:8, 2:8, 1:4] = 1
        gt[9:13, 8:12, 1:4] = 2
        pred = gt.copy()
        pred[9:11, 8:12, 1:4] = 0
        _save(root / "imagesTs" / f"{case}.nii.gz", gt.astype(np.float32))
        _save(root / "labelsTs" / f"{case}.nii.gz", gt)
        _save(root.parent / "preds" / case / f"{case}_seg.nii.gz", pred)
        items.append({"image": f"./imagesTs/{case}.nii.gz", "label": f"./labelsTs/{case}.nii.gz"})
    content = {"name": "toy", "modality": {"0": "MRI"}, "labels": labels, "training": [], "test": items}
    (root / "dataset.json").write_text(json.dumps(content))
    return root, root.parent / "preds"


def test_cli_evaluates_any_msd_dataset_with_its_own_classes(tmp_path: Path, capsys) -> None:
    dataset, preds = _msd_with_predictions(
        tmp_path / "Task09_Toy", {"0": "background", "1": "left atrium", "2": "scar"}
    )
    out = tmp_path / "scores"
    assert main(["evaluate", str(preds), str(dataset), "--output_dir", str(out), "--name", "nnU-Net 2d"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("nnU-Net 2d: ") and "(voxels, medpy definition)" in lines[0] and "Table" not in text
    assert lines[1].split()[-1] == "(voxels)"
    assert next(line for line in lines if line.startswith("left atrium ")).split()[2] == "100.00"
    scar = next(line for line in lines if line.startswith("scar "))
    assert scar.split()[1] == f"{100 * 2 * 24 / (48 + 24):.2f}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "nnU-Net 2d" and list(summary["per_class"]) == ["left atrium", "scar"]
    assert summary["num_cases"] == 2


def test_cli_evaluates_a_folder_of_labels_with_given_or_inferred_classes(tmp_path: Path, capsys) -> None:
    dataset, preds = _msd_with_predictions(tmp_path / "Task_x", {"0": "background", "1": "a", "2": "b"})
    labels = dataset / "labelsTs"
    assert main(["evaluate", str(preds), str(labels), "--output_dir", str(tmp_path / "inferred")]) == 0
    summary = json.loads((tmp_path / "inferred" / "summary.json").read_text())
    assert list(summary["per_class"]) == ["class 1", "class 2"] and "method" not in summary
    assert capsys.readouterr().out.startswith("ours: ")
    assert (
        main(
            [
                "evaluate",
                str(preds),
                str(labels),
                "--classes",
                "{1: kidney, 2: cyst}",
                "--output_dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert list(json.loads((tmp_path / "c" / "summary.json").read_text())["per_class"]) == ["kidney", "cyst"]
    assert (
        main(["evaluate", str(preds), str(labels), "--classes", "kidney,cyst", "--output_dir", str(tmp_path / "d")])
        == 0
    )
    assert list(json.loads((tmp_path / "d" / "summary.json").read_text())["per_class"]) == ["kidney", "cyst"]
    # a JSON datalist without "labels": classes inferred as for a folder
    plain = tmp_path / "list.json"
    plain.write_text(json.dumps({"test": [{"label": str(p)} for p in sorted(labels.iterdir())]}))
    assert main(["evaluate", str(preds), str(plain), "--output_dir", str(tmp_path / "j")]) == 0
    assert list(json.loads((tmp_path / "j" / "summary.json").read_text())["per_class"]) == ["class 1", "class 2"]
    capsys.readouterr()
    # too few classes for the labels: one line naming the file, nothing written
    assert main(["evaluate", str(preds), str(labels), "--classes", "kidney", "--output_dir", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "la_003.nii.gz" in err and "[2]" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_cli_paper_classes_get_the_paper_table_without_dataset_flag(tmp_path: Path, capsys) -> None:
    labels = {"0": "background", "1": "RV", "2": "Myo"}
    dataset, preds = _msd_with_predictions(tmp_path / "acdc_like", labels)
    content = json.loads((dataset / "dataset.json").read_text())
    content["labels"]["3"] = "LV"
    (dataset / "dataset.json").write_text(json.dumps(content))
    assert main(["evaluate", str(preds), str(dataset), "--output_dir", str(tmp_path / "s")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Table 2 (ACDC") and "\nours " in text
