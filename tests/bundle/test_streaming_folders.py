# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Folders streamed by inference and evaluation: headers checked up front, voxels as each case is loaded.

A bad header stops the run before any output; a file whose voxels turn out bad is named, skipped (no output for
it), listed at the end and makes the run fail; every volume is decoded once, and the first segmentation is
written before the last volume is read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.arrayproxy import ArrayProxy

from tests.bundle.conftest import bundle_workflow, config_files, run_cli
from tests.bundle.test_datasets_and_bad_input import _error_text


def _folder(bundle: Path, destination: Path, nan_case: int | None = None) -> list[Path]:
    """The smoke phantom's images copied to ``destination``; ``nan_case`` gets one NaN voxel."""
    destination.mkdir()
    sources = sorted((bundle / "data" / "phantom_smoke" / "imagesTr").glob("*.nii.gz"))[:4]
    copies = [Path(shutil.copy(source, destination / source.name)) for source in sources]
    if nan_case is not None:
        image = nib.load(str(copies[nan_case]))
        data = np.asanyarray(image.dataobj).astype(np.float32)
        data[3, 4, 5] = np.nan
        nib.save(nib.Nifti1Image(data, image.affine), str(copies[nan_case]))
    return copies


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*_seg.nii.gz")) if folder.exists() else []


def test_a_file_with_bad_voxels_is_skipped_named_and_the_run_fails(trained_bundle: Path, tmp_path: Path) -> None:
    inputs = _folder(trained_bundle, tmp_path / "in", nan_case=1)
    out = tmp_path / "out"
    files = ",".join(f"'{f}'" for f in config_files(trained_bundle, "inference"))
    args = ["-m", "monai.bundle", "run", "--config_file", f"[{files}]", "--bundle_root", str(trained_bundle)]
    result = run_cli(args + ["--input_dir", str(tmp_path / "in"), "--output_dir", str(out)], cwd=tmp_path)
    assert result.returncode != 0
    assert "datalist: 1 of 4 cases were skipped (no output written for them)" in result.stderr, result.stderr[-3000:]
    assert f"'{inputs[1]}' holds 1 NaN or infinite voxel(s)" in result.stderr
    expected = [p.name.replace(".nii.gz", "_seg.nii.gz") for p in inputs]
    assert _outputs(out) == sorted(expected[:1] + expected[2:])  # the others segmented, nothing for the bad one
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written file either


def test_on_bad_case_stop_ends_the_run_at_the_bad_file(trained_bundle: Path, tmp_path: Path) -> None:
    inputs = _folder(trained_bundle, tmp_path / "in", nan_case=1)
    out = tmp_path / "out"
    override = {"input_dir": str(tmp_path / "in"), "output_dir": str(out), "num_workers": 0, "on_bad_case": "stop"}
    workflow = bundle_workflow(config_files(trained_bundle, "inference"), "infer", **override)
    workflow.initialize()
    with pytest.raises(Exception) as info:
        workflow.run()
    assert f"'{inputs[1]}' holds 1 NaN or infinite voxel(s)" in _error_text(info.value)
    assert _outputs(out) == [inputs[0].name.replace(".nii.gz", "_seg.nii.gz")]


def test_a_bad_header_stops_the_run_before_any_output(trained_bundle: Path, tmp_path: Path) -> None:
    inputs = _folder(trained_bundle, tmp_path / "in")
    flat = tmp_path / "in" / "zz_last.nii.gz"  # sorted last: checked before the first case is segmented
    nib.save(nib.Nifti1Image(np.zeros((40, 36), np.float32), np.eye(4)), str(flat))
    out = tmp_path / "out"
    workflow = bundle_workflow(
        config_files(trained_bundle, "inference"), "infer", input_dir=str(inputs[0].parent), output_dir=str(out)
    )
    with pytest.raises(Exception) as info:
        workflow.initialize()
        workflow.run()
    assert f"'{flat}' has shape (40, 36); expected a 3-D volume" in _error_text(info.value)
    assert _outputs(out) == []


def test_each_volume_is_decoded_once_and_the_first_output_precedes_the_last_read(
    trained_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    inputs = _folder(trained_bundle, tmp_path / "in")
    out = tmp_path / "out"
    decoded: list[tuple[str, list[str]]] = []
    original = ArrayProxy.__array__

    def recording(self, *args, **kwargs):
        decoded.append((Path(str(self.file_like)).name, _outputs(out)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ArrayProxy, "__array__", recording)
    override = {"input_dir": str(tmp_path / "in"), "output_dir": str(out), "num_workers": 0}
    workflow = bundle_workflow(config_files(trained_bundle, "inference"), "infer", **override)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    reads = [name for name, _ in decoded if name in {p.name for p in inputs}]
    assert sorted(reads) == sorted(p.name for p in inputs), "each volume is decoded exactly once"
    written_at_last_read = next(before for name, before in decoded if name == reads[-1])
    assert inputs[0].name.replace(".nii.gz", "_seg.nii.gz") in written_at_last_read
    assert len(_outputs(out)) == len(inputs)


def test_evaluation_lists_a_skipped_case_in_its_summary_and_fails(trained_bundle: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "phantom"
    shutil.copytree(trained_bundle / "data" / "phantom_smoke", dataset)
    content = json.loads((dataset / "dataset.json").read_text())
    victim = (dataset / content["validation"][0]["image"]).resolve()
    image = nib.load(str(victim))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(data, image.affine), str(victim))
    output_dir = tmp_path / "eval"
    workflow = bundle_workflow(
        config_files(trained_bundle, "train", "evaluate"), "train", dataset_dir=str(dataset), output_dir=str(output_dir)
    )
    workflow.initialize()
    with pytest.raises(Exception) as info:
        workflow.run()
    assert "validate#dataset#data: 1 of 2 cases were skipped" in _error_text(info.value).replace("::", "#")
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["num_cases"] == 1
    assert len(summary["skipped_cases"]) == 1 and str(victim) in summary["skipped_cases"][0]
