"""Checkpointed random generators and the meaning of ``resume_from``."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from l2gnet_monai.training.resume import RandomStates, check_epoch_length, resolve_resume_path


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), [random.random() for _ in range(3)]


def test_random_states_survive_a_weights_only_checkpoint() -> None:
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    random.gauss(0, 1)  # and in Python's
    buffer = io.BytesIO()
    torch.save({"rng": RandomStates().state_dict()}, buffer)
    expected = _draws()
    _draws()  # the generators move on
    buffer.seek(0)
    RandomStates().load_state_dict(torch.load(buffer, weights_only=True)["rng"])
    assert _draws() == expected


def test_resume_from_is_resolved_or_refused_with_the_path(tmp_path) -> None:
    latest = tmp_path / "checkpoint_latest.pt"
    assert resolve_resume_path(None, latest) is None
    with pytest.raises(FileNotFoundError, match=f"'latest' means '{latest}', which does not exist"):
        resolve_resume_path("latest", latest)
    latest.write_bytes(b"x")
    assert resolve_resume_path("latest", latest) == str(latest)
    other = tmp_path / "checkpoint_final.pt"
    with pytest.raises(FileNotFoundError, match=f"checkpoint '{other}' does not exist"):
        resolve_resume_path(other, latest)
    other.write_bytes(b"x")
    assert resolve_resume_path(str(other), latest) == str(other)


def test_a_resume_with_other_epochs_is_refused_naming_both_lengths() -> None:
    trainer = Engine(lambda engine, batch: None)
    trainer.load_state_dict({"iteration": 8, "epoch_length": 4, "max_epochs": 3})  # as the resume loader does
    assert check_epoch_length(trainer, 4) is trainer
    with pytest.raises(ValueError, match="epochs are 4 iterations, this run's iterations_per_epoch is 3"):
        check_epoch_length(trainer, 3)
