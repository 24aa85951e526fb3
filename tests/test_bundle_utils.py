"""bundle_root from the running workflow or the command line; the checkpoint check."""

from __future__ import annotations

import json
import sys

import pytest
from monai.bundle import ConfigWorkflow

from l2gnet_monai.planning.bundle_root import _config_file_from_argv, default_bundle_root, require_checkpoint


def test_bundle_root_is_the_parent_of_the_running_configs_folder(tmp_path, monkeypatch) -> None:
    configs = tmp_path / "my_bundle" / "configs"
    configs.mkdir(parents=True)
    (configs / "train.json").write_text(
        json.dumps(
            {
                "imports": ["$import l2gnet_monai", "$import l2gnet_monai.planning"],
                "bundle_root": "$l2gnet_monai.planning.default_bundle_root()",
                "run": ["$@bundle_root"],
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    workflow = ConfigWorkflow(config_file=str(configs / "train.json"), workflow_type=None, logging_file=False)
    workflow.initialize()
    assert workflow.run() == [str(tmp_path / "my_bundle")]


def test_command_line_config_file_is_the_fallback(tmp_path, monkeypatch) -> None:
    assert (
        _config_file_from_argv(["run", "--config_file", "['b/configs/train.json','x.json']"]) == "b/configs/train.json"
    )
    assert _config_file_from_argv(["--config_file=b/configs/inference.json"]) == "b/configs/inference.json"
    assert _config_file_from_argv(["run"]) is None
    monkeypatch.setattr(
        sys, "argv", ["monai.bundle", "run", "--config_file", str(tmp_path / "b" / "configs" / "t.json")]
    )
    assert default_bundle_root() == str((tmp_path / "b").resolve())


def test_missing_checkpoint_says_how_to_get_one(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist. Train first"):
        require_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.pt").write_bytes(b"x")
    assert require_checkpoint(tmp_path / "model.pt") == str(tmp_path / "model.pt")
