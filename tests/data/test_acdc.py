# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""ACDC converter: ED/ES selection from Info.cfg, the 70/10/20 patient split, grids kept, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

import l2gnet_monai.data.acdc as acdc_module
from l2gnet_monai.data.acdc import (
    ACDC_LABELS,
    ACDC_TEST_PATIENTS,
    ACDC_TRAIN_PATIENTS,
    ACDC_VAL_PATIENTS,
    find_acdc_patients,
    prepare_acdc,
    read_info_cfg,
)
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.prepare import detect_layout
from tests.data.fake_datasets import (
    acdc_frame,
    acdc_phases,
    acdc_spacing,
    make_acdc,
    no_leftovers,
    oblique_affine,
    read_datalist,
    save_nifti,
)


def _names(entries: list[dict]) -> list[str]:
    return sorted(Path(e["image"]).name.replace(".nii.gz", "") for e in entries)


def test_split_lists() -> None:
    assert len(ACDC_TRAIN_PATIENTS) == 70 and len(ACDC_VAL_PATIENTS) == 10 and len(ACDC_TEST_PATIENTS) == 20
    everyone = set(ACDC_TRAIN_PATIENTS) | set(ACDC_VAL_PATIENTS) | set(ACDC_TEST_PATIENTS)
    assert everyone == {f"patient{i:03d}" for i in range(1, 101)}
    # spot checks against SSL4MIS data/ACDC/{val,test}.list
    assert {"patient002", "patient028", "patient087"} <= set(ACDC_VAL_PATIENTS)
    assert {"patient001", "patient011", "patient093"} <= set(ACDC_TEST_PATIENTS)


def test_output_layout_and_split(acdc_msd: Path, acdc_root: Path) -> None:
    info = read_datalist(acdc_msd)
    assert info["name"] == "ACDC" and info["modality"] == {"0": "MRI"} and info["tensorImageSize"] == "3D"
    assert info["labels"] == {str(k): v for k, v in ACDC_LABELS.items()}
    assert info["numTraining"] == 160 and info["numTest"] == 40
    cases = info["cases"]
    for key, patients, n in (
        ("training", ACDC_TRAIN_PATIENTS, 140),
        ("validation", ACDC_VAL_PATIENTS, 20),
        ("test", ACDC_TEST_PATIENTS, 40),
    ):
        names = _names(info[key])
        assert len(names) == n
        assert {cases[name]["patient"] for name in names} == set(patients)
        for patient in patients:  # both frames of a patient in the same split, one ED and one ES
            assert sorted(cases[x]["phase"] for x in names if x.startswith(patient)) == ["ED", "ES"]
        items = load_decathlon_datalist(acdc_msd / "dataset.json", is_segmentation=True, data_list_key=key)
        assert len(items) == n and all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
    assert all(e["image"].startswith("./imagesTs/") for e in info["test"])
    assert all(e["label"].startswith("./labelsTr/") for e in info["validation"])
    source = info["source"]
    assert source["layout"] == "acdc" and source["path"] == str(acdc_root.resolve())
    assert source["skipped"] == ["patient101", "patient102"] and source["missing"] == []
    assert "SSL4MIS" in source["split"]


def test_ed_es_frames_from_info_cfg(acdc_msd: Path, acdc_root: Path) -> None:
    info = read_datalist(acdc_msd)
    assert any(acdc_phases(n)[0] != 1 for n in range(1, 101))  # the fake has patients whose ED is not frame 1
    for number in range(1, 101):
        pid = f"patient{number:03d}"
        ed, es, _ = acdc_phases(number)
        cfg = read_info_cfg(acdc_root / "training" / pid / "Info.cfg")
        assert int(cfg["ED"]) == ed and int(cfg["ES"]) == es and "Group" in cfg and "NbFrame" in cfg
        for phase, frame in (("ED", ed), ("ES", es)):
            name = f"{pid}_frame{frame:02d}"
            assert info["cases"][name]["phase"] == phase and info["cases"][name]["frame"] == frame
            assert info["cases"][name]["group"] == cfg["Group"]
    # the converted image is that frame (the fake encodes the frame number in the intensities)
    for number in (9, 18, 50):
        ed, es, _ = acdc_phases(number)
        for frame in (ed, es):
            name = f"patient{number:03d}_frame{frame:02d}"
            folder = "Ts" if f"patient{number:03d}" in ACDC_TEST_PATIENTS else "Tr"
            image = np.asanyarray(nib.load(str(acdc_msd / f"images{folder}" / f"{name}.nii.gz")).dataobj)
            np.testing.assert_array_equal(image, acdc_frame(number, frame)[0])
            assert int(image.min()) // 1000 == frame


def test_grid_dtype_and_labels_kept(acdc_msd: Path, acdc_root: Path) -> None:
    for number in (1, 2, 3, 13):
        pid = f"patient{number:03d}"
        ed = acdc_phases(number)[0]
        src = nib.load(str(acdc_root / "training" / pid / f"{pid}_frame{ed:02d}.nii.gz"))
        folder = {"training": "Tr", "validation": "Tr", "test": "Ts"}[acdc_module._SPLIT_OF[pid]]
        out_img = nib.load(str(acdc_msd / f"images{folder}" / f"{pid}_frame{ed:02d}.nii.gz"))
        out_lab = nib.load(str(acdc_msd / f"labels{folder}" / f"{pid}_frame{ed:02d}.nii.gz"))
        assert out_img.get_data_dtype() == np.int16 and out_lab.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(out_lab.dataobj), acdc_frame(number, ed)[1])
        for out in (out_img, out_lab):
            np.testing.assert_allclose(out.affine, src.affine, atol=1e-6)
            np.testing.assert_allclose(out.header.get_zooms(), acdc_spacing(number), rtol=1e-5)
            assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src.affine)


def test_info_cfg_decides_not_the_file_names(tmp_path: Path) -> None:
    """Extra frame files are ignored; changing Info.cfg's ES changes which frame is converted."""
    src = make_acdc(tmp_path / "src", patients=[3, 2, 1], testing=())
    folder = src / "training" / "patient003"
    affine = oblique_affine(acdc_spacing(3), angle_deg=-23.0, origin=(-120.0, 95.5, 40.2))
    for frame in (5, 13):  # decoys, with labels
        image, label = acdc_frame(3, frame)
        save_nifti(folder / f"patient003_frame{frame:02d}.nii.gz", image, affine)
        save_nifti(folder / f"patient003_frame{frame:02d}_gt.nii.gz", label, affine)
    info = read_datalist(prepare_acdc(src, tmp_path / "a", allow_missing=True))
    ed, es, _ = acdc_phases(3)
    assert sorted(n for n in info["cases"] if n.startswith("patient003")) == [
        f"patient003_frame{ed:02d}",
        f"patient003_frame{es:02d}",
    ]
    cfg = (folder / "Info.cfg").read_text().replace(f"ES: {es}\n", "ES: 13\n")
    (folder / "Info.cfg").write_text(cfg)
    info = read_datalist(prepare_acdc(src, tmp_path / "b", allow_missing=True))
    assert info["cases"]["patient003_frame13"]["phase"] == "ES"
    assert f"patient003_frame{es:02d}" not in info["cases"]


def test_flat_and_nested_folders(acdc_root: Path, tmp_path: Path) -> None:
    assert detect_layout(acdc_root) == "acdc"
    assert detect_layout(acdc_root / "training") == "acdc"  # a flat folder of patient folders
    assert len(find_acdc_patients(acdc_root)) == 102
    assert len(find_acdc_patients(acdc_root / "training")) == 100
    nested = tmp_path / "ACDC"
    make_acdc(nested / "database", patients=[1, 2, 3], testing=[101], with_4d=False)
    assert detect_layout(nested) == "acdc"
    assert sorted(find_acdc_patients(nested)) == ["patient001", "patient002", "patient003", "patient101"]
    info = read_datalist(prepare_acdc(nested / "database" / "training", tmp_path / "out", allow_missing=True))
    assert sorted({c["patient"] for c in info["cases"].values()}) == ["patient001", "patient002", "patient003"]


def test_missing_patients(tmp_path: Path) -> None:
    src = make_acdc(tmp_path / "src", patients=[1, 2, 3], testing=[101], with_4d=False)
    with pytest.raises(DatasetError, match=r"97 patient\(s\).*patient004.*allow_missing") as err:
        prepare_acdc(src, tmp_path / "out")
    assert "patient001" not in str(err.value).split("missing", 1)[1]
    assert no_leftovers(tmp_path / "out")
    info = read_datalist(prepare_acdc(src, tmp_path / "out", allow_missing=True))
    assert _names(info["test"]) == [f"patient001_frame{f:02d}" for f in acdc_phases(1)[:2]]
    assert {info["cases"][n]["patient"] for n in _names(info["validation"])} == {"patient002"}
    assert {info["cases"][n]["patient"] for n in _names(info["training"])} == {"patient003"}
    assert len(info["source"]["missing"]) == 97 and info["source"]["skipped"] == ["patient101"]


def _small(tmp_path: Path) -> Path:
    return make_acdc(tmp_path / "src", patients=[1, 2, 3], testing=(), with_4d=False)


def test_missing_info_cfg(tmp_path: Path) -> None:
    src = _small(tmp_path)
    (src / "training/patient002/Info.cfg").unlink()
    with pytest.raises(DatasetError, match=r"missing file .*patient002/Info\.cfg"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_info_cfg_without_es(tmp_path: Path) -> None:
    src = _small(tmp_path)
    cfg = src / "training/patient002/Info.cfg"
    cfg.write_text("\n".join(line for line in cfg.read_text().splitlines() if not line.startswith("ES")))
    with pytest.raises(DatasetError, match=r"patient002/Info\.cfg has no 'ES:' line"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    cfg.write_text("ED: 1\nES: twelve\n")
    with pytest.raises(DatasetError, match=r"patient002/Info\.cfg: 'ES: twelve' is not a frame number"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)


def test_missing_frame_and_label_files(tmp_path: Path) -> None:
    src = _small(tmp_path)
    ed, es, _ = acdc_phases(3)
    gt = src / f"training/patient003/patient003_frame{es:02d}_gt.nii.gz"
    gt.unlink()
    with pytest.raises(DatasetError, match=rf"patient003_frame{es:02d}\.nii\.gz has no label file .*{gt.name}"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    (src / f"training/patient003/patient003_frame{ed:02d}.nii.gz").unlink()
    with pytest.raises(DatasetError, match=rf"names ED frame {ed} but .*patient003_frame{ed:02d}\.nii\.gz is missing"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_label_values_out_of_range(tmp_path: Path) -> None:
    src = _small(tmp_path)
    ed = acdc_phases(2)[0]
    label = acdc_frame(2, ed)[1]
    label[3, 3, 1] = 4
    label[4, 4, 1] = 255
    path = src / f"training/patient002/patient002_frame{ed:02d}_gt.nii.gz"
    save_nifti(path, label, nib.load(str(path)).affine)
    with pytest.raises(DatasetError, match=rf"{path.name} has values \[4, 255\] outside the expected range 0\.\.3"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_grid_mismatch(tmp_path: Path) -> None:
    src = _small(tmp_path)
    es = acdc_phases(1)[1]
    path = src / f"training/patient001/patient001_frame{es:02d}_gt.nii.gz"
    wrong = oblique_affine((1.25, 1.25, 10.0), angle_deg=-23.0, origin=(-120.0, 95.5, 40.2))
    save_nifti(path, acdc_frame(1, es)[1], wrong)
    with pytest.raises(DatasetError) as err:
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    message = str(err.value)
    assert f"patient001_frame{es:02d}.nii.gz" in message and path.name in message
    assert "[1.25, 1.25, 10.0]" in message and f"[{acdc_spacing(1)[0]:.4g}, {acdc_spacing(1)[0]:.4g}, 10.0]" in message
    save_nifti(path, acdc_frame(1, es, shape=(32, 28, 3))[1], nib.load(str(path)).affine)
    with pytest.raises(DatasetError, match=r"shape mismatch.*\(32, 28, 4\).*\(32, 28, 3\)"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)


def test_truncated_nifti(tmp_path: Path) -> None:
    src = _small(tmp_path)
    path = src / "training/patient003/patient003_frame01.nii.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"cannot read .*patient003_frame01\.nii\.gz"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _small(tmp_path)
    calls = []
    original = acdc_module.label_array

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # even an interrupt leaves no partial output
        return original(*args, **kwargs)

    monkeypatch.setattr(acdc_module, "label_array", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert len(calls) == 4
    assert no_leftovers(tmp_path / "out")


def test_duplicate_patient_folders(tmp_path: Path) -> None:
    src = _small(tmp_path)
    shutil.copytree(src / "training" / "patient001", src / "testing" / "patient001")
    with pytest.raises(DatasetError, match=r"patient001 appears twice"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)


def test_empty_training_split_refused(tmp_path: Path) -> None:
    src = make_acdc(tmp_path / "src", patients=[1, 2], testing=(), with_4d=False)  # a test and a validation patient
    with pytest.raises(DatasetError, match="no training cases"):
        prepare_acdc(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")
