# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Helpers that the bundle's configs call: where the bundle is, and what the workflows need before they run."""

from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path

__all__ = ["default_bundle_root", "require_checkpoint"]

logger = logging.getLogger(__name__)


def _root_of(config_dir: Path) -> str:
    config_dir = config_dir.resolve()
    return str(config_dir.parent if config_dir.name == "configs" else config_dir)


def _config_file_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value:
            first = value.strip("[]() ").split(",")[0].strip(" '\"")
            return first or None
    return None


def default_bundle_root() -> str:
    """The folder of the bundle whose config is being run: the parent of its ``configs/`` folder.

    A bundle config says ``"bundle_root": "$l2gnet_monai.planning.default_bundle_root()"`` so that
    ``python -m monai.bundle run --config_file /path/to/bundle/configs/train.json`` works from any
    directory (the model zoo's ``"bundle_root": "."`` works only from the bundle's own folder). The
    location comes from the running ``ConfigWorkflow`` (its ``config_root_path``, i.e. the first config
    file's folder), else from ``--config_file`` on the command line, else the current directory.
    An explicit ``--bundle_root`` override (as MONAI Label passes) takes precedence over all of this.

    Returns:
        Absolute path of the bundle root.
    """
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ConfigWorkflow) and getattr(candidate, "config_root_path", None) is not None:
            return _root_of(Path(candidate.config_root_path))
        frame = frame.f_back
    config_file = _config_file_from_argv(sys.argv)
    if config_file:
        return _root_of(Path(config_file).parent)
    logger.warning("bundle_root: no bundle config in sight; using the current directory %s.", os.getcwd())
    return os.getcwd()


def require_checkpoint(path: str | os.PathLike) -> str:
    """``path`` if it is a file, else a ``FileNotFoundError`` that says how to get one.

    Evaluation and inference call this before they write anything.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint: {path!r} does not exist. Train first (python -m monai.bundle run training "
            "--config_file <bundle>/configs/train.json), or point --ckpt_path at a trained model.pt."
        )
    return path
