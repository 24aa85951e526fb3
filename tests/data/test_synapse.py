# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Synapse converters (BTCV raw and TransUNet's preprocessed release), layout detection and atomic writing."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import ScaleIntensityRange

import l2gnet_monai.data.synapse.raw as synapse_module
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.prepare import detect_layout, prepare_dataset
from l2gnet_monai.data.synapse import (
    BTCV_TO_SYNAPSE,
    SYNAPSE_LABELS,
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAIN_CASES,
    btcv_to_synapse,
    locate_synapse_raw,
    prepare_synapse_raw,
    prepare_synapse_transunet,
)
from tests.data.fake_datasets import (
    make_synapse_raw,
    make_synapse_transunet,
    no_leftovers,
    oblique_affine,
    read_datalist,
    save_nifti,
    synapse_raw_case,
    transunet_case,
)


def _case_ids(entries: list[dict]) -> list[str]:
    return sorted(Path(e["image"]).name.replace(".nii.gz", "").replace("case", "") for e in entries)


# ---------------------------------------------------------------------------------------------------------------
# synapse-raw
# ---------------------------------------------------------------------------------------------------------------


def test_raw_output_layout_and_split(synapse_raw_msd: Path, synapse_raw_root: Path) -> None:
    info = read_datalist(synapse_raw_msd)
    assert info["name"] == "Synapse" and info["tensorImageSize"] == "3D"
    assert info["modality"] == {"0": "CT"}
    assert info["labels"] == {str(k): v for k, v in SYNAPSE_LABELS.items()}
    assert info["numTraining"] == 18 and info["numTest"] == 12
    assert _case_ids(info["training"]) == sorted(SYNAPSE_TRAIN_CASES)
    assert _case_ids(info["test"]) == sorted(SYNAPSE_TEST_CASES)
    assert info["validation"] == []
    assert all(e["image"].startswith("./imagesTr/") and e["label"].startswith("./labelsTr/") for e in info["training"])
    assert all(e["image"].startswith("./imagesTs/") and e["label"].startswith("./labelsTs/") for e in info["test"])
    source = info["source"]
    assert source["layout"] == "synapse-raw" and source["spacing_known"] is True
    assert source["path"] == str(synapse_raw_root.resolve())
    assert source["converter_version"] and source["converter"].endswith("prepare_synapse_raw")
    for key, n in (("training", 18), ("validation", 0), ("test", 12)):
        items = load_decathlon_datalist(synapse_raw_msd / "dataset.json", is_segmentation=True, data_list_key=key)
        assert len(items) == n
        assert all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
    assert sorted(p.name for p in (synapse_raw_msd / "imagesTr").iterdir()) == sorted(
        f"case{c}.nii.gz" for c in SYNAPSE_TRAIN_CASES
    )


def test_btcv_label_mapping() -> None:
    btcv = np.arange(14)
    mapped = btcv_to_synapse(btcv)
    expected = [0, 1, 2, 3, 4, 0, 5, 6, 7, 0, 0, 8, 0, 0]
    np.testing.assert_array_equal(mapped, expected)
    assert mapped.dtype == np.uint8
    assert BTCV_TO_SYNAPSE[6] == 5 and BTCV_TO_SYNAPSE[11] == 8
    assert all(k not in BTCV_TO_SYNAPSE for k in (5, 9, 10, 12, 13))


def test_raw_labels_mapped_and_grid_kept(synapse_raw_msd: Path, synapse_raw_root: Path) -> None:
    for case, folder in (("0005", "Tr"), ("0001", "Ts")):
        src_img = nib.load(str(synapse_raw_root / "RawData/Training/img" / f"img{case}.nii.gz"))
        src_lab = np.asanyarray(
            nib.load(str(synapse_raw_root / "RawData/Training/label" / f"label{case}.nii.gz")).dataobj
        )
        out_img = nib.load(str(synapse_raw_msd / f"images{folder}" / f"case{case}.nii.gz"))
        out_lab = nib.load(str(synapse_raw_msd / f"labels{folder}" / f"case{case}.nii.gz"))
        lab = np.asanyarray(out_lab.dataobj)
        assert lab.dtype == np.uint8 and out_lab.get_data_dtype() == np.uint8
        assert set(np.unique(src_lab)) == set(range(14))  # the fake holds every BTCV label
        assert np.all(lab[src_lab == 6] == 5) and np.all(lab[src_lab == 11] == 8)
        for dropped in (5, 9, 10, 12, 13):
            assert np.all(lab[src_lab == dropped] == 0)
        for kept in (1, 2, 3, 4):
            assert np.all(lab[src_lab == kept] == kept)
        assert np.all(lab[src_lab == 7] == 6) and np.all(lab[src_lab == 8] == 7)
        # intensities, dtype, affine, spacing and orientation are those of the source
        np.testing.assert_array_equal(np.asanyarray(out_img.dataobj), synapse_raw_case(case)[0])
        assert out_img.get_data_dtype() == np.int16
        for out in (out_img, out_lab):
            np.testing.assert_allclose(out.affine, src_img.affine, atol=1e-6)
            np.testing.assert_allclose(out.header.get_zooms(), (0.78, 0.78, 3.0), rtol=1e-5)
            assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(src_img.affine)
            assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 1
        assert not np.allclose(out_img.affine, np.diag([0.78, 0.78, 3.0, 1.0]))  # really non-trivial


@pytest.mark.parametrize("sub", ["", "RawData", "RawData/Training"])
def test_raw_accepts_root_rawdata_or_training(synapse_raw_root: Path, sub: str) -> None:
    path = synapse_raw_root / sub
    assert locate_synapse_raw(path) == synapse_raw_root / "RawData" / "Training"
    assert detect_layout(path) == "synapse-raw"


def test_raw_extra_cases_skipped_and_missing_reported(tmp_path: Path) -> None:
    src = make_synapse_raw(tmp_path / "src", cases=["0005", "0006", "0001", "0041"])
    with pytest.raises(DatasetError) as err:
        prepare_synapse_raw(src, tmp_path / "out")
    message = str(err.value)
    assert "0007" in message and "0002" in message and "allow_missing" in message
    assert "0005" not in message.split("missing", 1)[1]
    assert not (tmp_path / "out").exists()

    out = prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    info = read_datalist(out)
    assert _case_ids(info["training"]) == ["0005", "0006"] and _case_ids(info["test"]) == ["0001"]
    assert info["source"]["skipped"] == ["case0041"]
    assert "case0007" in info["source"]["missing"] and len(info["source"]["missing"]) == 27
    assert not (out / "imagesTr" / "case0041.nii.gz").exists()


def _small_raw(tmp_path: Path) -> Path:
    return make_synapse_raw(tmp_path / "src", cases=["0005", "0006", "0001"], testing_cases=())


def test_raw_missing_label_named(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    label = src / "RawData/Training/label/label0006.nii.gz"
    label.unlink()
    with pytest.raises(DatasetError, match="label0006.nii.gz") as err:
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    assert "img0006.nii.gz" in str(err.value)
    assert no_leftovers(tmp_path / "out")


def test_raw_label_values_out_of_range(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    image, label = synapse_raw_case("0006")
    label[0, 0, 0] = 17
    save_nifti(src / "RawData/Training/label/label0006.nii.gz", label, oblique_affine((0.78, 0.78, 3.0)))
    with pytest.raises(DatasetError, match=r"label0006\.nii\.gz.*\[17\]"):
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_raw_non_integer_labels(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    label = synapse_raw_case("0001")[1].astype(np.float32)
    label[1, 1, 1] = 2.5
    save_nifti(src / "RawData/Training/label/label0001.nii.gz", label, oblique_affine((0.78, 0.78, 3.0)))
    with pytest.raises(DatasetError, match=r"label0001\.nii\.gz has non-integer values \[2\.5\]"):
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)


def test_raw_shape_mismatch(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    label = synapse_raw_case("0006", shape=(32, 28, 4))[1]
    save_nifti(src / "RawData/Training/label/label0006.nii.gz", label, oblique_affine((0.78, 0.78, 3.0)))
    with pytest.raises(DatasetError) as err:
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    message = str(err.value)
    assert "img0006.nii.gz" in message and "label0006.nii.gz" in message
    assert "(32, 28, 5)" in message and "(32, 28, 4)" in message
    assert no_leftovers(tmp_path / "out")


def test_raw_spacing_mismatch(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    label = synapse_raw_case("0006")[1]
    save_nifti(src / "RawData/Training/label/label0006.nii.gz", label, oblique_affine((0.78, 0.78, 2.5)))
    with pytest.raises(DatasetError) as err:
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    message = str(err.value)
    assert "img0006.nii.gz" in message and "label0006.nii.gz" in message
    assert "3.0" in message and "2.5" in message and "spacing" in message


def test_raw_small_affine_difference_tolerated(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    affine = oblique_affine((0.78, 0.78, 3.0))
    affine[0, 3] += 1e-5
    save_nifti(src / "RawData/Training/label/label0006.nii.gz", synapse_raw_case("0006")[1], affine)
    prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)


def test_raw_truncated_nifti_named(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    path = src / "RawData/Training/img/img0001.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"img0001\.nii\.gz.*(truncated|corrupt)"):
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_raw_corrupt_gzip_named(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    path = src / "RawData/Training/label/label0005.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti file at all" * 3))
    with pytest.raises(DatasetError, match=r"label0005\.nii\.gz"):
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)


def test_raw_uncompressed_nii_accepted(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    for sub, stem in (("img", "img0006"), ("label", "label0006")):
        gz = src / "RawData/Training" / sub / f"{stem}.nii.gz"
        nib.save(nib.load(str(gz)), str(gz.with_name(f"{stem}.nii")))
        gz.unlink()
    info = read_datalist(prepare_synapse_raw(src, tmp_path / "out", allow_missing=True))
    assert "0006" in _case_ids(info["training"])


# ---------------------------------------------------------------------------------------------------------------
# atomic writing and overwrite protection (shared by all converters)
# ---------------------------------------------------------------------------------------------------------------


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _small_raw(tmp_path)
    calls = []
    original = synapse_module.btcv_to_synapse

    def failing(label: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash while writing the second case")
        return original(label)

    monkeypatch.setattr(synapse_module, "btcv_to_synapse", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    assert len(calls) == 2
    assert no_leftovers(tmp_path / "out")


def test_failure_midway_keeps_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _small_raw(tmp_path)
    out = prepare_synapse_raw(src, tmp_path / "out", allow_missing=True)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def failing(label: np.ndarray) -> np.ndarray:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(synapse_module, "btcv_to_synapse", failing)
    with pytest.raises(RuntimeError):
        prepare_synapse_raw(src, out, overwrite=True, allow_missing=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_overwrite_protection(tmp_path: Path) -> None:
    src = _small_raw(tmp_path)
    (tmp_path / "empty").mkdir()
    prepare_synapse_raw(src, tmp_path / "empty", allow_missing=True)  # an empty folder may be filled
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(DatasetError, match="not empty.*overwrite"):
        prepare_synapse_raw(src, out, allow_missing=True)
    assert (out / "keep.txt").read_text() == "user data"
    prepare_synapse_raw(src, out, overwrite=True, allow_missing=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.json").is_file()
    with pytest.raises(DatasetError, match="source folder"):
        prepare_synapse_raw(src, src, overwrite=True, allow_missing=True)
    with pytest.raises(DatasetError, match="source folder"):
        prepare_synapse_raw(src / "RawData", tmp_path, overwrite=True, allow_missing=True)
    assert (src / "RawData/Training/img/img0005.nii.gz").is_file()


# ---------------------------------------------------------------------------------------------------------------
# synapse-transunet
# ---------------------------------------------------------------------------------------------------------------


def test_transunet_output_and_split(synapse_transunet_msd: Path) -> None:
    info = read_datalist(synapse_transunet_msd)
    assert _case_ids(info["training"]) == sorted(SYNAPSE_TRAIN_CASES)
    assert _case_ids(info["test"]) == sorted(SYNAPSE_TEST_CASES)
    assert info["validation"] == [] and info["modality"] == {"0": "CT"}
    assert info["source"]["layout"] == "synapse-transunet"
    assert info["source"]["spacing_known"] is False
    for key in ("training", "validation", "test"):
        load_decathlon_datalist(synapse_transunet_msd / "dataset.json", is_segmentation=True, data_list_key=key)


def test_transunet_axis_order_and_intensity_round_trip(synapse_transunet_msd: Path) -> None:
    window = ScaleIntensityRange(a_min=-125, a_max=275, b_min=0.0, b_max=1.0, clip=True)
    for case, folder in (("0005", "Tr"), ("0040", "Tr"), ("0001", "Ts"), ("0038", "Ts")):
        image, label = transunet_case(case)  # (D, H, W), as written to the npz slices or the h5 volume
        out_img = nib.load(str(synapse_transunet_msd / f"images{folder}" / f"case{case}.nii.gz"))
        out_lab = nib.load(str(synapse_transunet_msd / f"labels{folder}" / f"case{case}.nii.gz"))
        hu = np.asanyarray(out_img.dataobj)
        assert out_img.get_data_dtype() == np.float32 and out_lab.get_data_dtype() == np.uint8
        assert hu.shape == (32, 24, 4)  # (row, col, slice) for npz and h5 alike
        np.testing.assert_array_equal(np.asanyarray(out_lab.dataobj), np.transpose(label, (1, 2, 0)))
        assert hu.min() >= -125 and hu.max() <= 275
        back = np.asarray(window(hu[None]))[0]
        np.testing.assert_allclose(back, np.transpose(image, (1, 2, 0)), rtol=0, atol=1e-6)
        np.testing.assert_allclose(out_img.affine, np.eye(4))
        assert out_img.header.get_zooms() == (1.0, 1.0, 1.0)


def test_transunet_h5_and_npz_give_the_same_volume(tmp_path: Path) -> None:
    """The same case written as npz slices and as an h5 volume converts to identical arrays."""
    h5py = pytest.importorskip("h5py")
    a = make_synapse_transunet(tmp_path / "a", train_cases=["0005"], test_cases=["0001"], with_lists=False)
    image, label = transunet_case("0005")
    with h5py.File(a / "test_vol_h5" / "case0001.npy.h5", "w") as f:  # case0005's content as a test volume
        f.create_dataset("image", data=image)
        f.create_dataset("label", data=label)
    out = prepare_synapse_transunet(a, tmp_path / "out", allow_missing=True)
    for name in ("images", "labels"):
        train = np.asanyarray(nib.load(str(out / f"{name}Tr" / "case0005.nii.gz")).dataobj)
        test = np.asanyarray(nib.load(str(out / f"{name}Ts" / "case0001.nii.gz")).dataobj)
        np.testing.assert_array_equal(train, test)


def test_transunet_slice_gap(tmp_path: Path) -> None:
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005", "0006"], test_cases=["0001"], with_lists=False)
    (src / "train_npz" / "case0006_slice002.npz").unlink()
    with pytest.raises(DatasetError, match=r"case0006.*missing slice index 2"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_transunet_missing_cases_and_lists(tmp_path: Path) -> None:
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005"], test_cases=["0001"])
    with pytest.raises(DatasetError, match=r"training case\(s\): 0006.*11 test case\(s\): 0002"):
        prepare_synapse_transunet(src, tmp_path / "out")
    (src / "train_npz" / "case0005_slice001.npz").unlink()
    (src / "train_npz" / "case0005_slice003.npz").unlink()
    with pytest.raises(
        DatasetError, match=r"listed in .*lists_Synapse are missing: case0005_slice001, case0005_slice003"
    ):
        prepare_synapse_transunet(src, tmp_path / "out")


def test_transunet_skips_cases_outside_protocol(tmp_path: Path) -> None:
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005", "0001"], test_cases=["0001", "0005"])
    info = read_datalist(prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True))
    assert _case_ids(info["training"]) == ["0005"] and _case_ids(info["test"]) == ["0001"]
    assert info["source"]["skipped"] == ["case0001 (train_npz)", "case0005 (test_vol_h5)"]


def test_transunet_bad_values(tmp_path: Path) -> None:
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005"], test_cases=["0001"], with_lists=False)
    image, label = transunet_case("0005")
    np.savez(src / "train_npz" / "case0005_slice001.npz", image=image[1], label=label[1] + 9)
    with pytest.raises(DatasetError, match=r"case0005_slice001\.npz has values \[9"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    np.savez(src / "train_npz" / "case0005_slice001.npz", image=image[1] * 400 - 125, label=label[1])
    with pytest.raises(DatasetError, match=r"case0005_slice001\.npz: image values span .*expected \[0, 1\]"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    np.savez(src / "train_npz" / "case0005_slice001.npz", image=image[1], label=label[1, :-1])
    with pytest.raises(DatasetError, match=r"case0005_slice001\.npz: expected 2-D 'image' and 'label' of the same"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    np.savez(src / "train_npz" / "case0005_slice001.npz", image=image[1, :-1], label=label[1, :-1])
    with pytest.raises(DatasetError, match=r"slice .*case0005_slice001\.npz has shape \(31, 24\) but .*slice000"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    np.savez(src / "train_npz" / "case0005_slice001.npz", img=image[1], label=label[1])
    with pytest.raises(DatasetError, match=r"case0005_slice001\.npz lacks the 'image'"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)


def test_transunet_corrupt_files(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005"], test_cases=["0001"], with_lists=False)
    h5 = src / "test_vol_h5" / "case0001.npy.h5"
    h5.write_bytes(h5.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"case0001\.npy\.h5.*corrupt HDF5"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    npz = src / "train_npz" / "case0005_slice002.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"case0005_slice002\.npz.*corrupt npz"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    assert no_leftovers(tmp_path / "out")


def test_transunet_without_h5py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_synapse_transunet(tmp_path / "src", train_cases=["0005"], test_cases=["0001"], with_lists=False)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'l2gnet-monai\[h5\]'"):
        prepare_synapse_transunet(src, tmp_path / "out", allow_missing=True)
    assert detect_layout(src) == "synapse-transunet"  # detection needs no h5py
    assert no_leftovers(tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------------
# detect_layout / prepare_dataset
# ---------------------------------------------------------------------------------------------------------------


def test_detect_layout(synapse_raw_root: Path, synapse_transunet_root: Path, synapse_raw_msd: Path) -> None:
    assert detect_layout(synapse_raw_root) == "synapse-raw"
    assert detect_layout(synapse_transunet_root) == "synapse-transunet"
    assert detect_layout(synapse_raw_msd) == "msd"


def test_detect_layout_unknown_and_ambiguous(tmp_path: Path, synapse_raw_root: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    for layout in ("synapse-raw", "synapse-transunet", "acdc", "msd"):
        assert layout in message
    assert "stuff/" in message and "notes.txt" in message and "\n" not in message
    with pytest.raises(DatasetError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    both = tmp_path / "both"
    shutil.copytree(synapse_raw_root / "RawData", both / "RawData")
    make_synapse_transunet(both, train_cases=["0005"], test_cases=[], n_slices=1, with_lists=False)
    with pytest.raises(DatasetError, match="several layouts.*synapse-raw.*synapse-transunet"):
        detect_layout(both)


def test_prepare_dataset_dispatch(synapse_raw_root: Path, synapse_raw_msd: Path, tmp_path: Path) -> None:
    out = prepare_dataset(synapse_raw_root, tmp_path / "out")
    assert read_datalist(out)["source"]["layout"] == "synapse-raw"
    with pytest.raises(DatasetError, match="already a converted dataset"):
        prepare_dataset(synapse_raw_msd, tmp_path / "out2")
    with pytest.raises(DatasetError, match="no TransUNet Synapse release"):
        prepare_dataset(synapse_raw_root, tmp_path / "out3", layout="synapse-transunet")
    with pytest.raises(DatasetError, match="unknown layout"):
        prepare_dataset(synapse_raw_root, tmp_path / "out4", layout="brats")
