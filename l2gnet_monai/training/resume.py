# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What a resumable checkpoint holds besides model and optimizer, and which file ``--resume_from`` means."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

__all__ = ["LATEST", "RandomStates", "check_epoch_length", "resolve_resume_path"]

LATEST = "latest"
"""The ``resume_from`` value that means the newest periodic checkpoint of this bundle."""


class RandomStates:
    """The process's random number generators as a checkpointable object (``state_dict``/``load_state_dict``).

    Put it in a checkpoint's ``save_dict`` and the resume loader's ``load_dict`` (the bundle does, under
    ``"rng"``) and a resumed run draws the same shuffling and augmentation as an uninterrupted one would: the
    global generators of torch (CPU and the current CUDA device), NumPy and Python's ``random``. The state is
    stored as tensors and plain numbers, so ``torch.load(..., weights_only=True)`` reads it.

    Not covered: generators that a dataset or transform owns (MONAI's ``Randomizable.R``, seeded once when the
    ``DataLoader`` is built with ``num_workers=0``); worker processes are re-seeded from torch's generator at
    every epoch, so with ``num_workers > 0`` augmentation resumes exactly. Under ``torchrun`` every rank restores
    the state that rank 0 saved, as every rank started from the same seed.
    """

    def state_dict(self) -> dict[str, Any]:
        """The current states: ``{"torch", "numpy", "python"}`` and ``"cuda"`` when CUDA is initialised."""
        _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        version, python_state, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "python": {"version": int(version), "state": torch.tensor(python_state), "gauss_next": gauss_next},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()  # the current device only: others belong to other ranks
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set the generators to ``state_dict`` (as returned by :meth:`state_dict`, possibly moved to a device)."""
        torch.set_rng_state(state_dict["torch"].cpu())
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy_state["keys"].cpu().numpy().astype(np.uint32),
                int(numpy_state["pos"]),
                int(numpy_state["has_gauss"]),
                float(numpy_state["cached_gaussian"]),
            )
        )
        python_state = state_dict["python"]
        random.setstate(
            (int(python_state["version"]), tuple(python_state["state"].tolist()), python_state["gauss_next"])
        )
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"].cpu())


def resolve_resume_path(resume_from: str | os.PathLike | None, latest_checkpoint: str | os.PathLike) -> str | None:
    """The checkpoint file that ``resume_from`` names: ``"latest"`` means ``latest_checkpoint``.

    Args:
        resume_from: ``None`` (do not resume), ``"latest"``, or the path of a checkpoint written by training
            (``checkpoint_latest.pt``, ``checkpoint_final.pt``, ``checkpoint_epoch=K.pt``).
        latest_checkpoint: path of the bundle's periodic checkpoint (``models/checkpoint_latest.pt``).

    Returns:
        The checkpoint's path, or ``None`` when ``resume_from`` is ``None``.

    Raises:
        FileNotFoundError: when the file does not exist, naming it and saying what to do.
    """
    if resume_from is None:
        return None
    if os.fspath(resume_from) == LATEST:
        path = os.fspath(latest_checkpoint)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"resume_from: 'latest' means {path!r}, which does not exist: no run of this bundle has saved a "
                "periodic checkpoint there yet. Start without --resume_from, or give a checkpoint file."
            )
        return path
    path = os.fspath(resume_from)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"resume_from: checkpoint {path!r} does not exist. Give a checkpoint that training wrote "
            "(models/checkpoint_latest.pt, checkpoint_final.pt or checkpoint_epoch=K.pt), or 'latest'."
        )
    return path


def check_epoch_length(trainer: Engine, iterations_per_epoch: int) -> Engine:
    """``trainer``, or a ``ValueError`` when a resumed checkpoint's epochs are not ``iterations_per_epoch`` long.

    ignite restores the checkpoint's epoch length with the trainer's state, while the poly schedule's length comes
    from this run's ``iterations_per_epoch``; with another value the epochs, validations and the schedule would
    silently disagree.

    Args:
        trainer: the trainer, after the resume loader ran (or without a resume: nothing to check then).
        iterations_per_epoch: this run's ``iterations_per_epoch``.
    """
    if trainer.state.epoch_length is not None and trainer.state.epoch_length != int(iterations_per_epoch):
        raise ValueError(
            f"iterations_per_epoch: the resumed checkpoint's epochs are {trainer.state.epoch_length} iterations, this "
            f"run's iterations_per_epoch is {iterations_per_epoch}; resume with --iterations_per_epoch "
            f"{trainer.state.epoch_length} (change max_epochs to change the budget)."
        )
    return trainer
