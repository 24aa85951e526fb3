"""The OpenMP wait policy default of the package's entry points (set before torch loads OpenMP, never overriding)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _policy_after(code: str, policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    code += "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return run.stdout.strip().splitlines()[-1]


def test_passive_by_default_before_torch_loads_and_an_explicit_policy_is_kept() -> None:
    assert _policy_after("import l2gnet_monai.cli", None) == "PASSIVE"
    assert _policy_after("import l2gnet_monai", "ACTIVE") == "ACTIVE"
    # once torch (and its OpenMP runtime) is loaded the variable would no longer take effect: left alone
    assert _policy_after("import torch, l2gnet_monai", None) == "None"
