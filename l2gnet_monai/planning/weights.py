# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Weights loaded into a network once per file: a server's requests do not read the same checkpoint again."""

from __future__ import annotations

import logging
import os

from ignite.engine import Engine
from monai.handlers import CheckpointLoader
from torch import nn

from l2gnet_monai._weights import weights_version

__all__ = ["ReusingCheckpointLoader"]

logger = logging.getLogger(__name__)

#: The attribute of a network that records which file's weights it holds, and their version after loading.
_LOADED_FROM = "_l2gnet_loaded_from"


def _file_stamp(path: str | os.PathLike) -> tuple[str, int, int, int]:
    """The file's path, inode, size and modification time (ns): a replaced or rewritten checkpoint has another."""
    status = os.stat(path)
    return os.path.abspath(os.fspath(path)), status.st_ino, status.st_size, status.st_mtime_ns


class ReusingCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` that does not load a checkpoint again into networks that already hold it.

    A server (MONAI Label's ``/infer``) runs ``inference.json`` once per request with the network it keeps: MONAI's
    loader would read the whole checkpoint (62 MB for the paper's network) and copy it into the network every time,
    and the engine would then rebuild its ``channels_last`` copy of weights that did not change. This loader
    skips the load when every object of ``load_dict`` is a network that it loaded from the same file (same path,
    inode, size and modification time) and whose weights have not changed since
    (:func:`~l2gnet_monai._weights.weights_version`: an optimizer step or another ``load_state_dict`` changes it).
    Anything else (a new network, a rewritten file, an optimizer in ``load_dict``) loads as MONAI's does.

    Args:
        args, kwargs: ``CheckpointLoader``'s arguments (``load_path``, ``load_dict``, ``map_location``, ...).
    """

    def _held(self, stamp: tuple[str, int, int, int]) -> bool:
        objects = list(self.load_dict.values())
        return all(
            isinstance(obj, nn.Module) and getattr(obj, _LOADED_FROM, None) == (stamp, weights_version(obj))
            for obj in objects
        )

    def __call__(self, engine: Engine) -> None:
        stamp = _file_stamp(self.load_path)
        if self._held(stamp):
            logger.debug("%s: already loaded into the network, not read again.", self.load_path)
            return
        super().__call__(engine)
        for obj in self.load_dict.values():
            if isinstance(obj, nn.Module):
                setattr(obj, _LOADED_FROM, (stamp, weights_version(obj)))
