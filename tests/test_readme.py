"""The README's Quick start: exactly two one-line commands, and .ci/run runs the second one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _block_after(marker: str, text: str) -> list[str]:
    match = re.search(re.escape(marker) + r"\s*```bash\n(.*?)```", text, re.S)
    assert match, f"no fenced block after {marker}"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_that_install_the_cpu_wheel_first() -> None:
    text = (REPO / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert quick_start.count("```bash") == 2
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        lines = _block_after(marker, quick_start)
        assert len(lines) == 1, lines
        assert lines[0].startswith("python -m pip install torch==2.13.0 && ")
    assert "monai.bundle run training" in _block_after("<!-- main-command -->", quick_start)[0]
    assert "pytest" in _block_after("<!-- test-command -->", quick_start)[0]


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"command=\$\(awk '(.*?)' README.md\)", script).group(1)
    extracted = subprocess.run(["awk", awk, str(REPO / "README.md")], capture_output=True, text=True, check=True)
    expected = _block_after("<!-- test-command -->", (REPO / "README.md").read_text())
    assert extracted.stdout.strip().splitlines() == expected
