"""Fixtures for the bundle's tests: a private copy of ``bundle/`` per session, trained once with the smoke override."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SMOKE = REPO / "configs" / "smoke.json"


def config_files(bundle: Path, *names: str, smoke: bool = True) -> list[str]:
    """Config paths in merge order: the bundle's ``names`` then (optionally) the smoke override."""
    files = [str(bundle / "configs" / f"{name}.json") for name in names]
    return files + ([str(SMOKE)] if smoke else [])


def bundle_workflow(files: list[str], workflow_type: str | None, **override) -> ConfigWorkflow:
    """A ``ConfigWorkflow`` of the bundle whose ``configs/`` holds ``files[0]``, with its ``bundle_root`` passed as
    Python code that builds a workflow must (docs/bundle.md, "bundle_root")."""
    override.setdefault("bundle_root", str(Path(files[0]).resolve().parent.parent))
    return ConfigWorkflow(config_file=files, workflow_type=workflow_type, **override)


def run_workflow(files: list[str], workflow_type: str | None, **override) -> ConfigWorkflow:
    """Drive a bundle config as the model zoo's tests do: initialize, check_properties, run, finalize."""
    workflow = bundle_workflow(files, workflow_type, **override)
    workflow.initialize()
    assert not workflow.check_properties(), workflow.check_properties()
    workflow.run()
    workflow.finalize()
    return workflow


def run_cli(
    args: list[str], cwd: Path, timeout: int = 600, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m ...`` in a subprocess with the repository importable, capturing its output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def copy_bundle(destination: Path) -> Path:
    """A copy of the repository's bundle (configs, docs, LICENSE) without models, data or outputs."""
    shutil.copytree(REPO / "bundle", destination, ignore=shutil.ignore_patterns("*.pt", "*.ts", "data", "eval", "runs"))
    (destination / "models").mkdir(exist_ok=True)
    return destination


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """A bundle copy trained for one smoke epoch on the (small) phantom; evaluation and inference read it."""
    bundle = copy_bundle(tmp_path_factory.mktemp("trained") / "l2gnet_segmentation")
    run_workflow(config_files(bundle, "train"), "train")
    return bundle


@pytest.fixture
def fresh_bundle(tmp_path) -> Path:
    """An untrained bundle copy of this test's own."""
    return copy_bundle(tmp_path / "l2gnet_segmentation")
