"""Training handlers: atomic checkpoints (best, latest, killed while writing) and codebook statistics in the metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from ignite.engine import Engine, Events

from l2gnet_monai.training.checkpoint import AtomicCheckpointSaver
from l2gnet_monai.training.codebook import CodebookStatsHandler


def _engine_with_metric(values: list[float]) -> Engine:
    engine = Engine(lambda e, batch: batch)
    engine.state.metrics = {}

    @engine.on(Events.EPOCH_COMPLETED)
    def set_metric(e: Engine) -> None:
        e.state.metrics["val_mean_dice"] = values[e.state.epoch - 1]

    return engine


def test_best_model_is_replaced_atomically_and_survives_a_failed_save(tmp_path, monkeypatch) -> None:
    model = torch.nn.Linear(3, 2)
    engine = _engine_with_metric([0.1, 0.5, 0.9])
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path),
        save_dict={"model": model},
        save_key_metric=True,
        key_metric_name="val_mean_dice",
        key_metric_filename="model.pt",
    )
    saver.attach(engine)

    @engine.on(Events.EPOCH_STARTED(once=2))
    def change_weights(e: Engine) -> None:
        with torch.no_grad():
            model.weight.fill_(2.0)

    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if engine.state.epoch == 3:
            f.write(b"partial")  # a crash in the middle of writing the third checkpoint
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        engine.run([0], max_epochs=3)
    # model.pt is the complete epoch-2 checkpoint; no temporary file is left behind
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(state["weight"], torch.full((2, 3), 2.0))
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert oct(os.stat(tmp_path / "model.pt").st_mode & 0o044) == oct(0o044), "readable by group and others"


def test_codebook_statistics_become_epoch_metrics() -> None:
    network = torch.nn.Module()
    stats = iter(
        [
            {"perplexity": torch.tensor(p), "usage": torch.tensor(u), "restarted_codes": r}
            for p, u, r in [(10.0, 0.2, 3), (20.0, 0.4, 1)]
        ]
    )
    engine = Engine(lambda e, batch: setattr(network, "codebook_stats", next(stats)))
    CodebookStatsHandler(network).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.metrics["codebook_perplexity"] == pytest.approx(15.0)
    assert engine.state.metrics["codebook_usage"] == pytest.approx(0.3)
    assert engine.state.metrics["codebook_restarts"] == 4


_DIE_WHILE_SAVING = """
import io, os, signal, sys
import torch
from ignite.engine import Engine, Events
from l2gnet_monai.training.checkpoint import AtomicCheckpointSaver

model = torch.nn.Linear(3, 2)
engine = Engine(lambda e, batch: None)
saver = AtomicCheckpointSaver(
    save_dir=sys.argv[1], save_dict={"model": model}, save_interval=1, n_saved=1,
    interval_filename="checkpoint_latest.pt",
)
saver.attach(engine)
engine.add_event_handler(Events.EPOCH_STARTED, lambda e: model.weight.data.fill_(float(e.state.epoch)))
real_save = torch.save

def save_then_die_halfway(obj, f, *args, **kwargs):
    if engine.state.epoch < int(sys.argv[2]):
        return real_save(obj, f, *args, **kwargs)
    data = io.BytesIO()
    real_save(obj, data)
    f.write(data.getvalue()[: len(data.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = save_then_die_halfway
engine.run([0], max_epochs=5)
"""


def test_the_latest_checkpoint_survives_a_process_killed_while_writing_it(tmp_path) -> None:
    """A fixed-name periodic checkpoint: a process SIGKILLed halfway through writing epoch 3's leaves epoch 2's."""
    result = subprocess.run(
        [sys.executable, "-c", _DIE_WHILE_SAVING, str(tmp_path), "3"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    state = torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)
    assert torch.equal(state["weight"], torch.full((2, 3), 2.0))  # one object: saved as its state dict
    # the half-written file was a temporary one beside it (unreadable); nothing else was written
    leftovers = [p for p in tmp_path.iterdir() if p.name != "checkpoint_latest.pt"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith("tmp")
    with pytest.raises(RuntimeError, match="failed finding central directory"):
        torch.load(leftovers[0], weights_only=True)


def test_an_iteration_level_latest_checkpoint_resumes_in_the_middle_of_an_epoch(tmp_path) -> None:
    """``checkpoint_epoch_level: false``: the latest checkpoint every 3 iterations; a run stopped after iteration 7
    of 4-iteration epochs resumes from iteration 6 and ends at the same total as an uninterrupted run."""
    from monai.handlers import CheckpointLoader

    def make(stop_at: int | None):
        model = torch.nn.Linear(3, 2)
        engine = Engine(lambda e, batch: None)
        saver = AtomicCheckpointSaver(
            save_dir=str(tmp_path),
            save_dict={"model": model, "trainer": engine},
            epoch_level=False,
            save_interval=3,
            n_saved=1,
            interval_filename="checkpoint_latest.pt",
        )
        saver.attach(engine)
        if stop_at is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
        return engine, model

    engine, _ = make(stop_at=7)
    engine.run(range(4), max_epochs=3)
    saved = torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 6 and saved["trainer"]["epoch_length"] == 4

    resumed, model = make(stop_at=None)
    seen = []
    resumed.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    resumed.state.max_epochs = 3  # as MONAI's trainers set it when they are built
    CheckpointLoader(str(tmp_path / "checkpoint_latest.pt"), {"model": model, "trainer": resumed})(resumed)
    resumed.run(range(4))
    assert seen == list(range(7, 13)) and resumed.state.epoch == 3
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["trainer"]["iteration"] == 12
