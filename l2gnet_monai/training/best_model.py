# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The best validation score so far as checkpoint state, so that a resumed run keeps the best model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from monai.engines import Evaluator
from monai.handlers import CheckpointSaver

__all__ = ["BestMetricState"]


class BestMetricState:
    """The evaluator's best key metric and the best-model saver's ranking, as a checkpointable object.

    MONAI's best-model saver (``CheckpointSaver(save_key_metric=True)``, ignite's ``Checkpoint`` underneath) ranks
    validations in memory only, and the evaluator starts a new run with ``best_metric = -1``. Without this state a
    run resumed from ``checkpoint_latest.pt`` would treat its first validation as the best so far and overwrite
    ``models/model.pt`` even with a worse model, and its log would forget the best score. Put it in the periodic
    checkpoints' ``save_dict`` and the resume loader's ``load_dict`` (the bundle does, under ``"best_metric"``).

    Args:
        evaluator: the validation engine; its ``state.best_metric`` and ``state.best_metric_epoch`` are saved.
        handlers: the evaluator's handlers (``validate#handlers``); those that save the best model by the key metric
            have their ranking saved. Disabled handlers (``None``, as on the non-main processes of ``torchrun``)
            are skipped.

    On loading, a ranking whose file is not in the saver's folder (a checkpoint resumed into another bundle) is
    dropped, so that the next validation writes a best model there; the best score in the log is kept.
    """

    def __init__(self, evaluator: Evaluator, handlers: Sequence[Any] = ()) -> None:
        self.evaluator = evaluator
        self.savers = [
            h for h in handlers if isinstance(h, CheckpointSaver) and getattr(h, "_key_metric_checkpoint", None)
        ]

    def state_dict(self) -> dict[str, Any]:
        """``{"best_metric", "best_metric_epoch", "savers"}``; ``savers`` holds each saver's list of
        ``(score, file name)`` pairs, as ignite's ``Checkpoint.state_dict`` gives it."""
        state = self.evaluator.state
        return {
            "best_metric": float(getattr(state, "best_metric", -1)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
            "savers": [[list(item) for item in saver._key_metric_checkpoint._saved] for saver in self.savers],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the evaluator's best score and each saver's ranking from ``state_dict`` (see
        :meth:`state_dict`).

        Raises:
            ValueError: when the checkpoint ranks another number of best-model savers than this run has (none is
                fine: a process without a best-model saver only restores the score).
        """
        self.evaluator.state.best_metric = float(state_dict["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state_dict["best_metric_epoch"])
        rankings = state_dict["savers"]
        if not self.savers:  # a process that saves no best model (the other ranks of torchrun): nothing to rank
            return
        if len(rankings) != len(self.savers):
            raise ValueError(
                f"best_metric: the checkpoint ranks {len(rankings)} best-model saver(s), this run's validate#handlers "
                f"hold {len(self.savers)}; resume with the configuration the checkpoint was trained with."
            )
        for saver, ranking in zip(self.savers, rankings):
            checkpoint = saver._key_metric_checkpoint
            fixed_name = getattr(checkpoint.save_handler, "filename", None)
            kept = [
                (float(score), str(name))
                for score, name in ranking
                if os.path.isfile(os.path.join(saver.save_dir, fixed_name or name))
            ]
            checkpoint.load_state_dict({"_saved": kept})
