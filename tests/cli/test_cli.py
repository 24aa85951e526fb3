# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The command line: ``python -m l2gnet_monai`` (subprocess) and :func:`l2gnet_monai.cli.main` (in-process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from l2gnet_monai.cli import L2GNetCLI, main
from tests.data.fake_datasets import make_acdc, make_synapse_raw, make_synapse_transunet

LAYOUTS = ("synapse-raw", "synapse-transunet", "acdc")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "l2gnet_monai", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _assert_one_line_error(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("l2gnet-monai: error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_help(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    top = _run("--help", cwd=tmp_path)  # python-fire prints help on stderr
    assert top.returncode == 0
    text = top.stdout + top.stderr
    for word in (*LAYOUTS, "prepare", "detect", "monai.bundle run training", "RawData", "train_npz", "Info.cfg"):
        assert word in text, word
    for command, words in (
        (
            "prepare",
            (*LAYOUTS, "--overwrite", "--allow_missing", "--layout", "dataset.json", "imagesTs", "--dataset_dir"),
        ),
        ("detect", (*LAYOUTS, "msd", "prepare SRC DST")),
    ):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        captured = capsys.readouterr()
        for word in words:
            assert word in captured.out + captured.err, (command, word)


def test_prepare_and_detect_subprocess(tmp_path: Path) -> None:
    src = make_synapse_raw(tmp_path / "Abdomen", cases=["0005", "0006", "0001", "0002"], testing_cases=())
    detected = _run("detect", str(src), cwd=tmp_path)
    assert detected.returncode == 0 and detected.stdout.strip() == "synapse-raw"

    done = _run("prepare", str(src), str(tmp_path / "msd"), "--allow_missing", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / "msd" / "dataset.json").read_text())
    assert len(info["training"]) == 2 and len(info["test"]) == 2 and info["source"]["layout"] == "synapse-raw"
    assert "monai.bundle run training" in done.stdout and str(tmp_path / "msd") in done.stdout


def test_overwrite_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = make_synapse_raw(tmp_path / "Abdomen", cases=["0005", "0001"], testing_cases=())
    assert main(["prepare", str(src), str(tmp_path / "msd"), "--allow_missing"]) == 0
    capsys.readouterr()
    assert main(["prepare", str(src), str(tmp_path / "msd"), "--allow_missing"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "not empty", "overwrite")
    assert main(["prepare", str(src), str(tmp_path / "msd"), "--allow_missing", "--overwrite"]) == 0


def test_bad_input_subprocess(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hello")
    result = _run("prepare", str(tmp_path / "junk"), str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, "none of the known layouts", "synapse-raw", "acdc", "readme.txt")
    assert not (tmp_path / "out").exists()

    src = make_acdc(tmp_path / "acdc", patients=[1, 2, 3], testing=(), with_4d=False)
    next((src / "training" / "patient002").glob("*_gt.nii.gz")).unlink()
    result = _run("prepare", str(src), str(tmp_path / "out"), "--allow_missing", cwd=tmp_path)
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, "has no label file", "patient002_frame")
    assert not (tmp_path / "out").exists()


def test_main_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    h5 = pytest.importorskip("h5py")
    assert h5 is not None
    src = make_synapse_transunet(tmp_path / "Synapse", train_cases=["0005"], test_cases=["0001"], with_lists=False)
    assert main(["detect", str(src)]) == 0
    assert capsys.readouterr().out.strip() == "synapse-transunet"
    code = main(["prepare", str(src), str(tmp_path / "out"), "--layout", "synapse-transunet", "--allow_missing"])
    assert code == 0 and (tmp_path / "out" / "dataset.json").is_file()
    capsys.readouterr()
    assert main(["prepare", str(src), str(tmp_path / "out2"), "--layout", "acdc"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "no ACDC patient folders")
    assert main(["detect", str(tmp_path / "missing")]) == 1
    _assert_one_line_error(capsys.readouterr().err, "does not exist")


def test_cli_is_a_class_of_commands() -> None:
    commands = [name for name in dir(L2GNetCLI) if not name.startswith("_")]
    assert {"prepare", "detect"} <= set(commands)
    assert all(getattr(L2GNetCLI, name).__doc__ for name in commands)
