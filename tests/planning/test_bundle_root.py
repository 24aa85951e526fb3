"""bundle_root: an override, else the command line's --config_file, else the current directory; the checkpoint check."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from l2gnet_monai.planning.bundle_root import _config_file_from_argv, default_bundle_root, require_checkpoint


def _bundle(root: Path) -> Path:
    configs = root / "configs"
    configs.mkdir(parents=True)
    config = {
        "imports": ["$import l2gnet_monai", "$import l2gnet_monai.planning"],
        "bundle_root": "$l2gnet_monai.planning.default_bundle_root()",
        "run": ["$@bundle_root"],
    }
    (configs / "train.json").write_text(json.dumps(config))
    return configs / "train.json"


def test_the_command_line_config_file_gives_the_bundle_root(tmp_path: Path, monkeypatch) -> None:
    config = _bundle(tmp_path / "my_bundle")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", ["monai.bundle", "run", "--config_file", f"['{config}','{tmp_path / 'x.json'}']"])
    workflow = ConfigWorkflow(config_file=str(config), workflow_type=None, logging_file=False)
    workflow.initialize()
    assert workflow.run() == [str((tmp_path / "my_bundle").resolve())]


def test_an_explicit_bundle_root_wins(tmp_path: Path, monkeypatch) -> None:
    config = _bundle(tmp_path / "my_bundle")
    monkeypatch.setattr(sys, "argv", ["monai.bundle", "run", "--config_file", str(config)])
    workflow = ConfigWorkflow(config_file=str(config), workflow_type=None, logging_file=False, bundle_root="/srv/b")
    workflow.initialize()
    assert workflow.run() == ["/srv/b"]


def test_without_either_the_current_directory_is_used_and_named(tmp_path: Path, monkeypatch, caplog) -> None:
    config = _bundle(tmp_path / "my_bundle")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["python"])
    workflow = ConfigWorkflow(config_file=str(config), workflow_type=None, logging_file=False)
    workflow.initialize()
    with caplog.at_level(logging.WARNING, logger="l2gnet_monai.planning.bundle_root"):
        assert workflow.run() == [str(tmp_path)]
    assert "no --bundle_root and no --config_file" in caplog.text


def test_config_file_arguments_are_read_in_every_form(tmp_path: Path) -> None:
    assert (
        _config_file_from_argv(["run", "--config_file", "['b/configs/train.json','x.json']"]) == "b/configs/train.json"
    )
    assert _config_file_from_argv(["--config_file=b/configs/inference.json"]) == "b/configs/inference.json"
    assert _config_file_from_argv(["run"]) is None
    assert default_bundle_root(["run", "--config_file", str(tmp_path / "b" / "configs" / "t.json")]) == str(
        (tmp_path / "b").resolve()
    )
    assert default_bundle_root(["run", "--config_file", str(tmp_path / "flat" / "t.json")]) == str(
        (tmp_path / "flat").resolve()
    )


def test_missing_checkpoint_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist. Train first"):
        require_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.pt").write_bytes(b"x")
    assert require_checkpoint(tmp_path / "model.pt") == str(tmp_path / "model.pt")
