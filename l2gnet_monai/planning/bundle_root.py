# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Where the bundle is (``bundle_root``), and the checkpoint a workflow needs before it writes anything.

``bundle_root`` is the folder that holds ``configs/`` and receives ``models/``, ``eval/`` and ``data/``. It comes,
in this order, from:

1. ``--bundle_root`` (or ``bundle_root=`` of ``ConfigWorkflow``/``monai.bundle.run``): an override replaces the
   config's own value, so nothing here runs. MONAI Label passes it, and so should Python code that builds a
   workflow.
2. The first ``--config_file`` on the command line of ``python -m monai.bundle run``: the parent of its
   ``configs/`` folder (the folder itself when it is not called ``configs``), so that
   ``python -m monai.bundle run --config_file /path/to/bundle/configs/train.json`` works from any directory
   (the model zoo's ``"bundle_root": "."`` works only from the bundle's own folder). MONAI does not hand a config
   the path it was read from, so the command line is the one place that names it.
3. The current directory, with a warning.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["default_bundle_root", "require_checkpoint"]

logger = logging.getLogger(__name__)


def _config_file_from_argv(argv: Sequence[str]) -> str | None:
    """The first file of ``--config_file`` in ``argv`` (one path, or a list such as ``"['a.json','b.json']"``)."""
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


def default_bundle_root(argv: Sequence[str] | None = None) -> str:
    """The bundle folder when no ``bundle_root`` override is given (see the module docstring for the order).

    A bundle config says ``"bundle_root": "$l2gnet_monai.planning.default_bundle_root()"``.

    Args:
        argv: the command line to read ``--config_file`` from (default: ``sys.argv``).

    Returns:
        Absolute path of the bundle root.
    """
    config_file = _config_file_from_argv(sys.argv if argv is None else argv)
    if config_file:
        config_dir = Path(config_file).parent.resolve()
        return str(config_dir.parent if config_dir.name == "configs" else config_dir)
    logger.warning(
        "bundle_root: no --bundle_root and no --config_file on the command line; using the current directory %s.",
        os.getcwd(),
    )
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
