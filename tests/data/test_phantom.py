"""The synthetic abdominal CT phantom: determinism, anatomy and HU, NIfTI/MSD layout, generate-once safety."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from scipy import ndimage

from l2gnet_monai.data.phantom import (
    PHANTOM_GENERATOR_VERSION,
    PHANTOM_HU,
    PHANTOM_LABELS,
    cache,
    ensure_phantom_dataset,
    generate_phantom_case,
    generate_phantom_dataset,
)

# a tiny grid over the same 400 x 400 x 240 mm field of view as the defaults
SMALL = {"shape": (64, 64, 16), "spacing": (6.25, 6.25, 15.0)}
SMALL_DS = {"num_training": 2, "num_validation": 1, **SMALL}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """dataset.json of a 2 + 1 case phantom on the small grid."""
    return generate_phantom_dataset(str(tmp_path_factory.mktemp("phantom") / "ds"), seed=3, **SMALL_DS)


@pytest.fixture(scope="module")
def default_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One case at the default grid (about 0.2 s)."""
    return generate_phantom_case(1)


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _load(dataset_json: str, entry: dict) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    root = os.path.dirname(dataset_json)
    return nib.load(os.path.join(root, entry["image"])), nib.load(os.path.join(root, entry["label"]))


def test_deterministic_and_seeded():
    a = generate_phantom_case(0, seed=5, **SMALL)
    b = generate_phantom_case(0, seed=5, **SMALL)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0].dtype == np.int16 and a[1].dtype == np.uint8
    c = generate_phantom_case(0, seed=6, **SMALL)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    # the seed is not simply an offset of the case index
    d = generate_phantom_case(1, seed=5, **SMALL)
    assert not np.array_equal(c[1], d[1])


def test_cases_independent_of_dataset_size(small_dataset, tmp_path):
    data = _read_json(small_dataset)
    image, label = _load(small_dataset, data["validation"][0])  # case 2 of a 3-case dataset
    ref_image, ref_label, ref_affine = generate_phantom_case(2, seed=3, **SMALL)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), ref_image)
    np.testing.assert_array_equal(np.asanyarray(label.dataobj), ref_label)
    np.testing.assert_allclose(image.affine, ref_affine)
    other = generate_phantom_dataset(tmp_path / "one", num_training=1, num_validation=0, seed=3, **SMALL)
    first = _load(other, _read_json(other)["training"][0])[1]
    np.testing.assert_array_equal(np.asanyarray(first.dataobj), generate_phantom_case(0, seed=3, **SMALL)[1])


def test_same_anatomy_on_another_grid():
    """Anatomy is sampled in millimetres: a finer grid of the same field of view gives the same organs."""
    coarse = generate_phantom_case(4, **SMALL)[1]
    fine = generate_phantom_case(4, shape=(128, 128, 16), spacing=(3.125, 3.125, 15.0))[1]
    down = fine[1::2, 1::2, :]
    agree = np.mean((down > 0) == (coarse > 0))
    assert agree > 0.95


def test_all_organs_present_and_cases_differ(small_dataset):
    data = _read_json(small_dataset)
    labels = [np.asanyarray(_load(small_dataset, e)[1].dataobj) for e in data["training"] + data["validation"]]
    for lab in labels:
        assert set(np.unique(lab)) <= set(PHANTOM_LABELS)
    present = set().union(*(set(np.unique(lab).tolist()) for lab in labels))
    assert present == set(range(9))
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert np.mean(labels[i] != labels[j]) > 0.01
            for organ in (1, 5, 6):
                assert (labels[i] == organ).sum() != (labels[j] == organ).sum()


def test_nifti_geometry(small_dataset):
    data = _read_json(small_dataset)
    for entry in data["training"] + data["validation"]:
        image, label = _load(small_dataset, entry)
        assert image.shape == label.shape == SMALL["shape"]
        np.testing.assert_allclose(image.affine, label.affine)
        np.testing.assert_allclose(image.header.get_zooms(), SMALL["spacing"])
        np.testing.assert_allclose(np.diag(image.affine)[:3], [-6.25, -6.25, 15.0])
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        for img in (image, label):
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            np.testing.assert_allclose(img.get_qform(), img.affine, atol=1e-5)
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8


def test_anatomical_layout(default_case):
    """Liver on the patient's right (low i), spleen left, kidneys posterior beside the spine, aorta left of it."""
    _, label, _ = default_case
    centroids = {k: np.array(ndimage.center_of_mass(label == k)) for k in range(1, 9)}
    mid_i, mid_j = (np.array(label.shape[:2]) - 1) / 2
    assert centroids[5][0] < mid_i < centroids[1][0]  # liver right, spleen left
    assert centroids[2][0] < mid_i < centroids[3][0]  # right kidney, left kidney
    assert centroids[2][1] > mid_j and centroids[3][1] > mid_j  # kidneys posterior
    assert centroids[7][0] > mid_i  # aorta left of the midline
    assert centroids[4][0] < mid_i and centroids[4][1] < centroids[5][1]  # gallbladder right, anterior part of liver
    assert centroids[6][0] > mid_i and centroids[6][1] < mid_j  # stomach left-anterior
    assert centroids[8][1] < centroids[7][1]  # pancreas anterior to the aorta
    # organs cover only part of the z range (gallbladder, kidneys), the aorta nearly all of it
    z_extent = {k: int((label == k).any(axis=(0, 1)).sum()) for k in range(1, 9)}
    assert z_extent[4] < 0.5 * label.shape[2] and z_extent[2] < 0.8 * label.shape[2]
    assert z_extent[7] > 0.8 * label.shape[2]


def test_hounsfield_units(default_case):
    image, label, _ = default_case
    assert image.min() >= -1024 and image.max() <= 3071
    assert np.median(image[0:4, 0:4, :]) < -900  # air outside the body
    core = {k: ndimage.binary_erosion(label == k, iterations=1) & (label == k) for k in range(1, 9)}
    tolerances = {"spleen": 25, "liver": 25, "pancreas": 25, "gallbladder": 25, "kidney": 70, "aorta": 80}
    for k, name in PHANTOM_LABELS.items():
        if k == 0 or name == "stomach":
            continue
        key = "kidney" if "kidney" in name else name
        values = image[core[k]] if core[k].sum() > 20 else image[label == k]
        assert abs(np.median(values) - PHANTOM_HU[key]) <= tolerances[key], (name, np.median(values))
    stomach = image[label == 6]  # wall near its nominal value, lumen fluid, food or air
    assert np.mean((stomach > 0) & (stomach < 90)) > 0.3
    # several organs overlap in intensity: thresholds alone cannot separate them
    ranges = {k: np.percentile(image[core[k]], [10, 90]) for k in (1, 5, 8)}
    for a, b in ((1, 5), (1, 8), (5, 8)):
        assert ranges[a][0] < ranges[b][1] and ranges[b][0] < ranges[a][1]
    bone = image[(image > 300) & (label == 0)]
    assert bone.size > 500  # vertebra and ribs are unlabelled context


def test_dataset_json(small_dataset):
    data = _read_json(small_dataset)
    for key in ("name", "description", "tensorImageSize", "modality", "labels", "numTraining", "training", "test"):
        assert key in data
    assert data["tensorImageSize"] == "3D" and data["modality"] == {"0": "CT"} and data["test"] == []
    assert data["labels"] == {str(k): v for k, v in PHANTOM_LABELS.items()}
    assert data["numTraining"] == 2 and len(data["training"]) == 2 and len(data["validation"]) == 1
    assert data["generator"] == {
        "name": "l2gnet_monai.data.phantom",
        "version": PHANTOM_GENERATOR_VERSION,
        "num_training": 2,
        "num_validation": 1,
        "shape": [64, 64, 16],
        "spacing": [6.25, 6.25, 15.0],
        "seed": 3,
    }
    for key, n in (("training", 2), ("validation", 1)):
        items = load_decathlon_datalist(small_dataset, is_segmentation=True, data_list_key=key)
        assert len(items) == n
        for item in items:
            assert os.path.isfile(item["image"]) and os.path.isfile(item["label"])
    train = {i["image"] for i in load_decathlon_datalist(small_dataset, True, "training")}
    val = {i["image"] for i in load_decathlon_datalist(small_dataset, True, "validation")}
    assert not train & val


def test_ensure_is_idempotent(tmp_path):
    target = tmp_path / "phantom"
    path = ensure_phantom_dataset(target, **SMALL_DS)
    assert path == os.path.join(str(target), "dataset.json")
    stamps = {p: os.stat(os.path.join(target, p)).st_mtime_ns for p in ("dataset.json", "imagesTr/phantom_0000.nii.gz")}
    time.sleep(0.05)
    assert ensure_phantom_dataset(str(target), **SMALL_DS) == path
    assert stamps == {p: os.stat(os.path.join(target, p)).st_mtime_ns for p in stamps}
    assert sorted(os.listdir(tmp_path)) == ["phantom"]  # no temporary folders left behind


def test_ensure_accepts_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    path = ensure_phantom_dataset(tmp_path / "empty", **SMALL_DS)
    assert len(load_decathlon_datalist(path, True, "training")) == 2


def test_ensure_refuses_other_arguments(tmp_path):
    target = tmp_path / "phantom"
    ensure_phantom_dataset(target, **SMALL_DS)
    with pytest.raises(ValueError, match="different arguments") as err:
        ensure_phantom_dataset(target, **{**SMALL_DS, "seed": 1})
    assert str(target) in str(err.value) and "Delete the folder" in str(err.value)
    with pytest.raises(ValueError, match="different arguments"):
        ensure_phantom_dataset(target, **{**SMALL_DS, "num_training": 3})


def test_ensure_refuses_foreign_folder(tmp_path):
    target = tmp_path / "mydata"
    target.mkdir()
    (target / "notes.txt").write_text("not a phantom")
    with pytest.raises(FileExistsError, match="not a phantom") as err:
        ensure_phantom_dataset(target, **SMALL_DS)
    assert str(target) in str(err.value)
    assert os.listdir(target) == ["notes.txt"]
    (target / "dataset.json").write_text(json.dumps({"name": "Task09_Spleen", "training": []}))
    with pytest.raises(FileExistsError, match="not a phantom"):
        ensure_phantom_dataset(target, **SMALL_DS)
    assert sorted(os.listdir(target)) == ["dataset.json", "notes.txt"]


def test_ensure_reports_incomplete_phantom(tmp_path):
    target = tmp_path / "phantom"
    ensure_phantom_dataset(target, **SMALL_DS)
    os.remove(target / "labelsTr" / "phantom_0001.nii.gz")
    with pytest.raises(ValueError, match="incomplete"):
        ensure_phantom_dataset(target, **SMALL_DS)


def test_ensure_cleans_stale_temporary_folders(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = cache._host()
    stale = tmp_path / f".phantom.phantom-tmp-{host}-{dead.pid}-abc123"
    live = tmp_path / f".phantom.phantom-tmp-{host}-{os.getppid()}-def456"
    for folder in (stale, live):
        (folder / "imagesTr").mkdir(parents=True)
        old = time.time() - 120
        for p in (folder, folder / "imagesTr"):
            os.utime(p, (old, old))
    ensure_phantom_dataset(tmp_path / "phantom", **SMALL_DS)
    assert not stale.exists()  # a crashed generation's leftovers are removed
    assert live.exists()  # a running process' folder is not


def test_ensure_loser_of_race_uses_winner(tmp_path, monkeypatch):
    """Another process renames its dataset into place while this one generates: this one discards its copy."""
    target = tmp_path / "phantom"
    original = cache.generate_phantom_dataset

    def generate_while_another_wins(dataset_dir, **kwargs):
        out = original(dataset_dir, **kwargs)
        winner = tmp_path / "winner-tmp"
        original(winner, **kwargs)
        (winner / "winner.txt").write_text("first")
        os.rename(winner, target)
        return out

    monkeypatch.setattr(cache, "generate_phantom_dataset", generate_while_another_wins)
    path = ensure_phantom_dataset(target, **SMALL_DS)
    assert path == os.path.join(str(target), "dataset.json")
    assert (target / "winner.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["phantom"]


def _ensure_worker(barrier, queue, target: str, kwargs: dict) -> None:
    barrier.wait(timeout=60)
    try:
        queue.put(("ok", ensure_phantom_dataset(target, **kwargs)))
    except Exception as err:  # reported to the parent
        queue.put(("error", repr(err)))


@pytest.mark.slow
def test_ensure_concurrent_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    target = str(tmp_path / "phantom")
    procs = [ctx.Process(target=_ensure_worker, args=(barrier, queue, target, SMALL_DS)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [("ok", os.path.join(target, "dataset.json"))] * 2
    assert sorted(os.listdir(tmp_path)) == ["phantom"]
    path = os.path.join(target, "dataset.json")
    for key in ("training", "validation"):
        for item in load_decathlon_datalist(path, True, key):
            assert nib.load(item["image"]).shape == SMALL["shape"]
            assert nib.load(item["label"]).shape == SMALL["shape"]
    ref = generate_phantom_case(0, **SMALL)[1]
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(os.path.join(target, "labelsTr/phantom_0000.nii.gz")).dataobj), ref
    )
