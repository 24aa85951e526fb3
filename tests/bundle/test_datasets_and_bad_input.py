"""The bundle on a user's own MSD dataset, under torchrun, and on bad input (clear message, nothing written)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.bundle.conftest import bundle_workflow, config_files, run_cli, run_workflow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_text(error: BaseException) -> str:
    """Messages of an exception and its causes (MONAI wraps config errors in its own)."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def _save(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 5.0)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))
    return str(path)


def make_msd_dataset(
    root: Path,
    num_cases: int = 4,
    labels: dict | None = None,
    modality: str = "MRI",
    shape=(40, 36, 6),
    validation: bool = False,
) -> Path:
    """A small MRI dataset with ``len(labels)`` classes: concentric blobs, intensities in arbitrary units."""
    labels = labels or {"0": "background", "1": "RV", "2": "Myo", "3": "LV"}
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    items = []
    for case in range(num_cases):
        cy, cx = shape[0] // 2 + rng.integers(-4, 5), shape[1] // 2 + rng.integers(-4, 5)
        radius = np.hypot(yy - cy, xx - cx)
        label2d = np.zeros(shape[:2], np.uint8)
        for k in range(len(labels) - 1, 0, -1):
            label2d[radius < 3 + 3 * k] = len(labels) - k
        label = np.repeat(label2d[..., None], shape[2], axis=2)
        image = (200 + 150 * label + rng.normal(0, 20, shape)).astype(np.float32)
        items.append(
            {
                "image": "./" + str(Path(_save(root / "imagesTr" / f"c{case}.nii.gz", image)).relative_to(root)),
                "label": "./" + str(Path(_save(root / "labelsTr" / f"c{case}.nii.gz", label)).relative_to(root)),
            }
        )
    content = {"name": "toy", "modality": {"0": modality}, "labels": labels, "training": items}
    if validation:
        content["training"], content["validation"] = items[:-1], items[-1:]
    (root / "dataset.json").write_text(json.dumps(content))
    return root


def test_own_mri_dataset_with_four_classes_trains_and_evaluates(fresh_bundle: Path, tmp_path, capsys) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_toy")
    workflow = run_workflow(config_files(fresh_bundle, "train"), "train", dataset_dir=str(dataset))
    assert workflow.parser.get_parsed_content("num_classes") == 4
    assert workflow.parser.get_parsed_content("modality") == "MRI"
    # no validation list: every fifth training case is held out (here the 4th of 4 cases is not, the last one is)
    assert len(workflow.parser.get_parsed_content("validate#dataset#data")) == 1
    assert len(workflow.parser.get_parsed_content("train#dataset#data")) == 3
    assert (fresh_bundle / "models" / "model.pt").is_file()
    run_workflow(config_files(fresh_bundle, "train", "evaluate"), "train", dataset_dir=str(dataset), paper_table="acdc")
    out = capsys.readouterr().out
    assert "Table 2 (ACDC" in out and "\nL2GNet (resnet18) " in out


def test_multi_gpu_config_trains_with_two_gloo_processes_under_torchrun(fresh_bundle: Path) -> None:
    files = ",".join(f"'{f}'" for f in config_files(fresh_bundle, "train", "multi_gpu_train"))
    result = run_cli(
        ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
        + ["-m", "monai.bundle", "run", "--config_file", f"[{files}]"],
        cwd=fresh_bundle.parent,
        extra_env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (fresh_bundle / "models" / "model.pt").is_file()
    assert (fresh_bundle / "models" / "checkpoint_final.pt").is_file()


def _expect_failure(bundle: Path, names: tuple[str, ...], match: str, **override) -> None:
    workflow = bundle_workflow(config_files(bundle, *names), "train", **override)
    with pytest.raises(Exception) as info:
        workflow.initialize()
        workflow.run()
    assert match in _error_text(info.value), _error_text(info.value)
    written = [p.name for p in (bundle / "models").iterdir() if p.name != ".gitkeep"]
    assert written == [], f"nothing may be written after bad input, found {written}"
    assert not (bundle / "eval").exists() or not any((bundle / "eval").iterdir())


def test_missing_dataset_dir_is_named(fresh_bundle: Path, tmp_path) -> None:
    _expect_failure(
        fresh_bundle,
        ("train",),
        f"dataset_dir: folder '{tmp_path / 'nowhere'}' does not exist",
        dataset_dir=str(tmp_path / "nowhere"),
    )
    (tmp_path / "empty").mkdir()
    _expect_failure(fresh_bundle, ("train",), "has no dataset.json", dataset_dir=str(tmp_path / "empty"))


def test_empty_datalist_is_refused(fresh_bundle: Path, tmp_path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_empty", validation=True)
    content = json.loads((dataset / "dataset.json").read_text())
    content["training"] = []
    (dataset / "dataset.json").write_text(json.dumps(content))
    _expect_failure(fresh_bundle, ("train",), "has no 'training' cases", dataset_dir=str(dataset))


def test_image_label_shape_mismatch_names_both_files(fresh_bundle: Path, tmp_path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_shape", validation=True)
    bad_label = dataset / "labelsTr" / "c1.nii.gz"
    _save(bad_label, np.zeros((40, 36, 5), np.uint8))
    _expect_failure(fresh_bundle, ("train",), f"{bad_label}' (40, 36, 5)", dataset_dir=str(dataset))


def test_a_2d_image_where_a_volume_is_expected_is_refused(fresh_bundle: Path, tmp_path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_2d", validation=True)
    flat = dataset / "imagesTr" / "c0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 36), np.float32), np.eye(4)), str(flat))
    expected = f"'{flat}' has shape (40, 36); expected a 3-D volume"
    _expect_failure(fresh_bundle, ("train",), expected, dataset_dir=str(dataset))


def test_truncated_nifti_is_named(fresh_bundle: Path, tmp_path) -> None:
    dataset = make_msd_dataset(tmp_path / "Task_truncated", validation=True)
    victim = dataset / "imagesTr" / "c2.nii.gz"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    _expect_failure(fresh_bundle, ("train",), f"'{victim}' is truncated or corrupt", dataset_dir=str(dataset))


def test_missing_checkpoint_stops_evaluation_and_inference(fresh_bundle: Path) -> None:
    missing = fresh_bundle / "models" / "model.pt"
    _expect_failure(fresh_bundle, ("train", "evaluate"), f"checkpoint: '{missing}' does not exist")
    workflow = bundle_workflow(config_files(fresh_bundle, "inference"), "infer")
    with pytest.raises(Exception) as info:
        workflow.initialize()
    assert f"checkpoint: '{missing}' does not exist" in _error_text(info.value)
    assert not (fresh_bundle / "eval" / "inference").exists()


def test_the_command_line_shows_the_reason(fresh_bundle: Path, tmp_path) -> None:
    files = ",".join(f"'{f}'" for f in config_files(fresh_bundle, "train"))
    args = ["-m", "monai.bundle", "run", "--config_file", f"[{files}]", "--dataset_dir", str(tmp_path / "nowhere")]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode != 0
    assert f"dataset_dir: folder '{tmp_path / 'nowhere'}' does not exist" in result.stderr
