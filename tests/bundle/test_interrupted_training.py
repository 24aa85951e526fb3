"""A training process killed with SIGKILL in the middle of an epoch, resumed with ``--resume_from latest``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.bundle.conftest import REPO, config_files, copy_bundle

MAX_EPOCHS = 3
#: iterations per epoch: fewer than the 18 batches of 2 in a pass over the 36 slices, so epochs end mid-pass
ITERATIONS_PER_EPOCH = 12
#: where the first run stops to be killed: iteration 9 of the second epoch
PAUSE_AT = ITERATIONS_PER_EPOCH + 9


def _pause_override(tmp_path: Path, marker: Path) -> Path:
    """A test-only override: after iteration ``PAUSE_AT`` the run touches ``marker`` and sleeps, to be killed there.

    Killing after a fixed delay instead was flaky: on a quiet machine the smoke run finished its epochs first.
    """
    hook = (
        f"$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED(once={PAUSE_AT}), "
        f"lambda engine: (open({str(marker)!r}, 'w').close(), time.sleep(600)))"
    )
    override = tmp_path / "pause_mid_epoch.json"
    override.write_text(json.dumps({"run": ["$import time", hook, "$@train#trainer.run()"]}))
    return override


def _start(
    bundle: Path, phantom_dir: Path, log: Path, *extra: str, overrides: tuple[Path, ...] = ()
) -> subprocess.Popen:
    files = ",".join(f"'{f}'" for f in [*config_files(bundle, "train"), *map(str, overrides)])
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", f"[{files}]"]
    # batch 2; no validation, so checkpoint_latest.pt is the only checkpoint until the end
    args += ["--max_epochs", str(MAX_EPOCHS), "--batch_size", "2", "--val_interval", "100"]
    args += ["--iterations_per_epoch", str(ITERATIONS_PER_EPOCH)]
    args += ["--phantom_dir", str(phantom_dir), *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=bundle.parent, env=env, stdout=out, stderr=subprocess.STDOUT)


def _latest_state(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["trainer"]
    except FileNotFoundError:
        return None


def test_a_run_killed_mid_epoch_resumes_from_latest_and_loses_at_most_one_epoch(trained_bundle: Path, tmp_path) -> None:
    bundle = copy_bundle(tmp_path / "l2gnet_segmentation")
    phantom = trained_bundle / "data" / "phantom_smoke"
    latest = bundle / "models" / "checkpoint_latest.pt"
    first_log = tmp_path / "first.log"
    marker = tmp_path / "paused"
    process = _start(bundle, phantom, first_log, overrides=(_pause_override(tmp_path, marker),))
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), (
            "the run never reached the middle of its second epoch:\n" + first_log.read_text()[-3000:]
        )
        assert process.poll() is None, "training ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    saved = _latest_state(latest)
    assert saved is not None, "no checkpoint_latest.pt after the first epoch:\n" + first_log.read_text()[-3000:]
    steps = saved["epoch_length"]
    assert steps == ITERATIONS_PER_EPOCH
    assert saved["iteration"] == steps  # the end of the first epoch: the last checkpoint before the kill
    # the work done before the kill, from the progress bar: "Epoch [e/3]: [i/12]" after each iteration
    progress = re.findall(r"Epoch \[(\d+)/\d+\]: \[(\d+)/\d+\]", first_log.read_text())
    epoch, iteration = map(int, progress[-1])
    done = (epoch - 1) * steps + iteration
    assert 0 <= done - saved["iteration"] <= steps, (done, saved)
    assert not (bundle / "models" / "checkpoint_final.pt").exists()

    second_log = tmp_path / "second.log"
    resumed = _start(bundle, phantom, second_log, "--resume_from", "latest")
    assert resumed.wait(timeout=600) == 0, second_log.read_text()[-4000:]
    log = second_log.read_text()
    assert f"Restored all variables from {latest}" in log
    assert f"Engine run resuming from iteration {saved['iteration']}" in log
    final = torch.load(bundle / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == MAX_EPOCHS * steps  # trainer epoch == max_epochs
    assert _latest_state(latest)["iteration"] == MAX_EPOCHS * steps
