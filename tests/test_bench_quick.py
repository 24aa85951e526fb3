"""The benchmark scripts' smoke modes, so that they cannot rot: ``bench/gpu_check.sh --device cpu --quick``
(which runs the CUDA-only tests, the training/distributed/TorchScript checks and ``bench/inference.py --quick``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    )


def test_gpu_check_quick_on_cpu_writes_every_result(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), str(out), "--device", "cpu", "--quick"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    checks = results["checks"]
    assert set(checks) == {"pytest_cuda", "amp_training", "distributed", "torchscript", "inference"}
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["pytest_cuda"]["tests"] >= 5 and checks["pytest_cuda"]["skipped"] == checks["pytest_cuda"]["tests"]
    assert checks["amp_training"]["last_loss"] < checks["amp_training"]["first_loss"]
    assert checks["distributed"]["backend"] == "gloo"
    inference = json.loads((out / "inference.json").read_text())
    for network in ("l2gnet", "flexunet"):
        settings = inference["network_table"]["networks"][network]["settings"]
        assert set(settings) == {"monai-defaults", "bundle-before", "batch+cl-fp32", "batch+cl-bf16", "engine-auto"}
        assert settings["monai-defaults"]["speedup"] == 1.0 and all(s["slices_per_s"] > 0 for s in settings.values())
    assert {"fp32", "bf16"} <= set(inference["network_table"]["matmul"])
    stages = inference["end_to_end"]["seconds"]
    assert list(stages) == [
        "load",
        "reorient",
        "window",
        "resize",
        "slice inference",
        "softmax + invert + argmax",
        "save",
    ]
    inversion = inference["end_to_end"]["invert_comparison"]["variants"]
    assert len(inversion) == 3 and all(v["agreement"] >= 0.999 and v["invert_s"] > 0 for v in inversion.values())
    markdown = (out / "results.md").read_text()
    assert "| amp_training" in markdown and "## End to end" in markdown


def test_gpu_check_explains_a_missing_output_folder_and_a_bad_device() -> None:
    for args, message in [([], "give the output folder"), (["out", "--device", "tpu"], "--device must be cuda or cpu")]:
        run = subprocess.run(
            ["bash", str(REPO / "bench" / "gpu_check.sh"), *args], env=_env(), capture_output=True, text=True
        )
        assert run.returncode == 2 and message in run.stderr
