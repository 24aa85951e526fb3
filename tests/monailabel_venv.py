"""The MONAI Label 0.8.5 venv the MONAI Label tests run in: pinned versions, built once per user, reused.

``monailabel_venv()`` returns it (building it first if needed, under a lock), for any test that drives a real
MONAI Label server: ``from tests.monailabel_venv import monailabel_venv, venv_python, clean_env``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

__all__ = [
    "MONAILABEL_VERSION",
    "TORCH_VERSION",
    "clean_env",
    "default_venv",
    "ensure_monailabel_venv",
    "monailabel_venv",
    "pip_install",
    "venv_python",
]

MONAILABEL_VERSION = "0.8.5"
#: PyPI's Linux x86_64 torch is a CUDA build (8.2 GB with MONAI Label); nothing lighter works there: the CPU torch
#: 2.13.0 of this machine with PyPI's torchvision 0.28.0 lacks ``torchvision::nms``, and torch 2.14.1 installed
#: without its NVIDIA libraries (1.3 GB) fails to import (``libcudnn.so.9``). See README, Development.
TORCH_VERSION = "2.14.1"
TORCH_REQUIREMENTS = [f"torch=={TORCH_VERSION}", "torchvision==0.29.1"]
MONAILABEL_REQUIREMENTS = [
    f"monailabel=={MONAILABEL_VERSION}",
    "pydicom>=2.4.4,<3",
    "pynetdicom<3",
    "dicomweb-client[gcp]>=0.59.1,<0.60",
]
PIP_TIMEOUT_S = 1800

_CHECK_VENV = (
    "import importlib.metadata as m, monailabel, monai, torch, torchvision; "
    f"assert m.version('monailabel') == {MONAILABEL_VERSION!r}, m.version('monailabel')"
)


def venv_python(venv: Path) -> Path:
    """The venv's interpreter (always call it directly: console scripts depend on ``PATH``)."""
    return venv / "bin" / "python"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _venv_ready(venv: Path) -> bool:
    python = venv_python(venv)
    if not python.exists():
        return False
    result = subprocess.run(
        [str(python), "-c", _CHECK_VENV], env=clean_env(), capture_output=True, text=True, timeout=300, check=False
    )
    return result.returncode == 0


def pip_install(venv: Path, args: list[str], log: Path, what: str) -> None:
    """``<venv>/bin/python -m pip install ARGS``, output appended to ``log``; a clear failure if pip fails."""
    with open(log, "a") as out:
        out.write(f"\n$ pip install {' '.join(args)}\n")
        out.flush()
        try:
            result = subprocess.run(
                [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"installing {what} into {venv} took more than {PIP_TIMEOUT_S} s; log {log}:\n{_tail(log)}")
    if result.returncode != 0:
        pytest.fail(
            f"could not install {what} into the MONAI Label venv {venv} (pip exited {result.returncode}; "
            f"is a package registry reachable?). Log {log}:\n{_tail(log)}"
        )


def ensure_monailabel_venv(venv: Path) -> Path:
    """A venv with torch 2.14.1 and monailabel 0.8.5, built on first use (2-19 min, 8.2 GB) and reused after.

    The venv is reused as soon as ``monailabel`` 0.8.5, torch, torchvision and monai import in it. Otherwise a
    folder that is a venv (or empty) is rebuilt from scratch; any other existing folder is refused rather than
    deleted. Concurrent callers wait for each other (a lock file beside the venv).

    Returns:
        ``venv``.
    """
    venv = venv.expanduser().absolute()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _venv_ready(venv):
            return venv
        if venv.exists():
            if not ((venv / "pyvenv.cfg").is_file() or not any(venv.iterdir())):
                pytest.fail(f"{venv} exists and is not a venv; set L2GNET_MONAILABEL_VENV to another folder")
            shutil.rmtree(venv)
        log = venv.parent / f"{venv.name}.build.log"
        log.write_text(f"building {venv} with {sys.executable} at {time.ctime()}\n")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip_install(venv, TORCH_REQUIREMENTS, log, "torch")
        pip_install(venv, MONAILABEL_REQUIREMENTS, log, f"monailabel {MONAILABEL_VERSION}")
        if not _venv_ready(venv):
            pytest.fail(f"monailabel {MONAILABEL_VERSION} does not import in {venv} after installing it; log {log}")
        with open(log, "a") as out:
            out.write(f"venv ready in {time.monotonic() - started:.0f} s\n")
    return venv


def default_venv() -> Path:
    """Where the venv lives unless ``L2GNET_MONAILABEL_VENV`` says otherwise: a per-user cache outside the clone,
    keyed by the pinned versions and this interpreter's ``X.Y``, so every clone (and CI run) reuses one build:
    ``${XDG_CACHE_HOME:-~/.cache}/l2gnet-monai/monailabel-<monailabel>-torch-<torch>-py<X.Y>``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return cache / "l2gnet-monai" / f"monailabel-{MONAILABEL_VERSION}-torch-{TORCH_VERSION}-py{python}"


def monailabel_venv() -> Path:
    """The cached MONAI Label venv (``L2GNET_MONAILABEL_VENV``, default :func:`default_venv`), built if needed.

    Call it from the test itself (not a fixture), so that a failed build is a test failure, never a skip or a
    setup error.
    """
    override = os.environ.get("L2GNET_MONAILABEL_VENV")
    return ensure_monailabel_venv(Path(override) if override else default_venv())


def clean_env() -> dict[str, str]:
    """The environment for MONAI Label processes: no ``PYTHONPATH`` (the repository must not leak in), no
    ``MONAI_LABEL_*`` settings or zoo source of the caller, unbuffered output for the log."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "BUNDLE_DOWNLOAD_SRC", "PYTHONHOME") and not k.startswith("MONAI_LABEL_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env
