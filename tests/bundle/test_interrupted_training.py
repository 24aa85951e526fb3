"""A training process killed with SIGKILL in the middle of an epoch, resumed with ``--resume_from latest``."""

from __future__ import annotations

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


def _start(bundle: Path, phantom_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    files = ",".join(f"'{f}'" for f in config_files(bundle, "train"))
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", f"[{files}]"]
    # batch 2: 18 iterations per epoch; no validation, so checkpoint_latest.pt is the only checkpoint until the end
    args += ["--max_epochs", str(MAX_EPOCHS), "--batch_size", "2", "--val_interval", "100"]
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
    process = _start(bundle, phantom, first_log)
    try:
        deadline = time.monotonic() + 300
        state = None
        while state is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            state = _latest_state(latest)  # the file is replaced atomically, so any version read is whole
        assert state is not None, "no checkpoint_latest.pt after the first epoch:\n" + first_log.read_text()[-3000:]
        time.sleep(2.0)  # into the second epoch (about 18 x 0.3 s)
        assert process.poll() is None, "training ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    saved = _latest_state(latest)
    steps = saved["epoch_length"]
    assert saved["iteration"] % steps == 0 and 1 <= saved["iteration"] // steps < MAX_EPOCHS  # an epoch's end
    # the work done before the kill, from the progress bar: "Epoch [e/3]: [i/18]" after each iteration
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
