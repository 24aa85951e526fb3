# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Checkpoints that are never half-written: MONAI's ``CheckpointSaver`` with atomic file replacement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class _AtomicDiskSaver(DiskSaver):
    """ignite's atomic ``DiskSaver`` (temporary file + ``os.replace``), optionally with a fixed file name.

    With a fixed name, ``remove`` is a no-op: the next save replaces the file atomically, whereas removing it
    first (what ``Checkpoint`` does before saving a better model) would leave a window with no file at all.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` whose files are never half-written.

    MONAI writes checkpoints in place (``atomic=False``), so an interrupted save corrupts ``model.pt``.
    Here every file is written to a temporary file in the same folder and renamed over the old one, and the
    best model's fixed-name file is replaced rather than deleted first. A process killed while saving leaves
    the previous file whole (and, at worst, a ``tmp*`` file beside it).

    Args:
        args: ``CheckpointSaver``'s arguments.
        interval_filename: a fixed file name for the checkpoint written every ``save_interval`` epochs (or
            iterations with ``epoch_level=False``), replaced at every save: a stable name to resume from,
            e.g. ``"checkpoint_latest.pt"``. ``None`` keeps MONAI's ``checkpoint_epoch=K.pt`` names.
        kwargs: ``CheckpointSaver``'s keyword arguments.
    """

    def __init__(self, *args: Any, interval_filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                if checkpoint is self._interval_checkpoint and interval_filename is not None:
                    fixed_name = interval_filename
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, filename=fixed_name)
