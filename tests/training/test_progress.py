"""The bundle's loss loggers (train.json's progress bar, TensorBoard and console handlers) read the loss on the
host every ``log_every`` iterations, not at every step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser

from l2gnet_monai.training import ProgressBar

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"
LOSS_LOGGERS = ("StatsHandler", "TensorBoardStatsHandler", "l2gnet_monai.training.ProgressBar")
ITERATIONS = 25


def _loss_loggers(bundle_root: Path, log_every: int | None) -> tuple[list, int]:
    """train.json's handlers that log the loss, as the bundle builds them, and its ``log_every``."""
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["bundle_root"] = str(bundle_root)
    if log_every is not None:
        parser["log_every"] = log_every
    indices = [i for i, h in enumerate(parser["train"]["handlers"]) if h["_target_"] in LOSS_LOGGERS]
    return [parser.get_parsed_content(f"train#handlers#{i}") for i in indices], parser.get_parsed_content("log_every")


@pytest.mark.parametrize("log_every, expected_reads", [(None, 2 * ITERATIONS), (10, 2 + 3)])
def test_the_bundles_loss_loggers_read_the_loss_every_log_every_iterations(
    tmp_path: Path, monkeypatch, log_every: int | None, expected_reads: int
) -> None:
    handlers, resolved = _loss_loggers(tmp_path, log_every)
    assert sorted(type(h).__name__ for h in handlers) == ["ProgressBar", "StatsHandler", "TensorBoardStatsHandler"]
    if log_every is None:
        assert resolved == 1, "on a CPU a host read costs no device sync: the default logs every iteration"
    reads: list[str] = []
    item, to_float = torch.Tensor.item, torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or item(self))
    monkeypatch.setattr(torch.Tensor, "__float__", lambda self: reads.append("float") or to_float(self))

    # the decollated output of SupervisedTrainer: one dict per sample, the loss a 0-d tensor on the device
    engine = Engine(lambda engine, batch: [{"loss": torch.tensor(float(batch))}])
    for handler in handlers:
        handler.attach(engine)
    engine.run(range(ITERATIONS), max_epochs=1)
    # log_every 10: TensorBoard at iterations 10 and 20, the progress bar at 1, 10 and 20
    assert len(reads) == expected_reads, reads


def test_the_progress_bar_reads_at_the_first_iteration_of_each_epoch_and_every_log_every() -> None:
    read_at: list[int] = []
    bar = ProgressBar(
        output_transform=lambda output: read_at.append(output) or float(output), log_every=4, persist=False
    )
    engine = Engine(lambda engine, batch: engine.state.iteration)
    bar.attach(engine)
    engine.run(range(9), max_epochs=2)
    assert read_at == [1, 4, 8, 10, 12, 16]
    with pytest.raises(ValueError, match="log_every must be an int >= 1, got 0"):
        ProgressBar(log_every=0)
