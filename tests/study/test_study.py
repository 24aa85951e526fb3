"""A smoke study end to end: 2 variants x 2 folds through `l2gnet-monai study`, its report and CSV read back, the
same command resumed (nothing retrained), and the runs written as a SLURM job array."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.study import Study, find_variants

REPO = Path(__file__).resolve().parents[2]
VARIANTS = REPO / "configs" / "variants"

pytestmark = pytest.mark.slow


def study_command(output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "l2gnet_monai", "study", "phantom", "--output", str(output),
        "--variants", "l2gnet,no_mapper", "--folds", "0,1", "--num_folds", "2",
        "--overrides", str(REPO / "configs" / "smoke.json"), "--bundle_dir", str(REPO / "bundle"),
        "--variants_dir", str(VARIANTS), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("study") / "smoke"
    result = subprocess.run(study_command(output), capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("report.html")
    return output


def test_every_run_is_trained_on_the_stored_split_and_evaluated_on_its_held_out_cases(smoke_study):
    splits = json.loads((smoke_study / "splits.json").read_text())
    for variant in ("l2gnet", "no_mapper"):
        for fold in (0, 1):
            run = smoke_study / "runs" / variant / f"fold_{fold}"
            record = json.loads((run / "run.json").read_text())
            assert record["status"] == "done" and record["train"]["exit_status"] == 0
            assert record["train"]["seconds"] > 0 and record["train"]["peak_rss_mib"] > 100
            scored = {
                r["case"].split(".nii")[0]
                for r in csv.DictReader((run / "eval" / "metrics_per_case.csv").read_text().splitlines())
            }
            assert scored == set(splits[fold]["val"])
    plan = json.loads((smoke_study / "runs" / "no_mapper" / "fold_0" / "plan.json").read_text())
    assert plan["network"]["num_references"] == 0 and plan["fold"]["fold"] == 0


def test_the_report_holds_both_variants_both_folds_and_their_intervals(smoke_study):
    rows = list(csv.DictReader((smoke_study / "study.csv").read_text().splitlines()))
    assert sorted((r["variant"], r["fold"]) for r in rows) == [
        ("l2gnet", "0"), ("l2gnet", "1"), ("no_mapper", "0"), ("no_mapper", "1")
    ]  # fmt: skip
    assert all(r["status"] == "done" and 0 <= float(r["mean_dsc"]) <= 1 and int(r["parameters"]) > 0 for r in rows)
    results = json.loads((smoke_study / "results.json").read_text())
    assert results["reference"] == "l2gnet"
    per_fold = [float(r["mean_dsc"]) for r in rows if r["variant"] == "no_mapper"]
    summary = results["variants"]["no_mapper"]
    assert summary["folds_done"] == 2 and summary["mean_dsc"]["mean"] == pytest.approx(sum(per_fold) / 2)
    assert results["variants"]["l2gnet"]["complexity"]["parameters"] > summary["complexity"]["parameters"]
    paired = results["paired"]["no_mapper"]["dice"]
    assert paired["num_cases"] == 3  # the 3 training cases of the smoke phantom, each held out by one fold
    assert paired["ci_low"] <= paired["mean_difference"] <= paired["ci_high"]
    page = (smoke_study / "report.html").read_text()
    for text in ("Scores (mean ± SD over folds)", "Against l2gnet, case by case", "95% CI", "Wilcoxon p", "no_mapper"):
        assert text in page
    assert (smoke_study / "report_files" / "dice_per_case.png").stat().st_size > 1000


def test_running_the_study_again_retrains_nothing_and_slurm_writes_one_line_per_run(smoke_study):
    model = smoke_study / "runs" / "l2gnet" / "fold_1" / "model.pt"
    before = model.stat().st_mtime_ns
    again = subprocess.run(study_command(smoke_study, "--noreport"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert model.stat().st_mtime_ns == before and ": train" not in again.stderr
    slurm = subprocess.run(study_command(smoke_study, "--slurm"), capture_output=True, text=True, timeout=600)
    assert slurm.returncode == 0, slurm.stderr[-2000:]
    lines = (smoke_study / "slurm" / "runs.txt").read_text().splitlines()
    assert len(lines) == 4 and all(" study phantom " in line and "--folds" in line for line in lines)
    assert "#SBATCH --array=0-3" in (smoke_study / "slurm" / "study.sbatch").read_text()


def test_bad_variants_and_folds_are_named(tmp_path):
    with pytest.raises(DatasetError, match="no variant 'no_such'.*no_mapper"):
        find_variants("l2gnet,no_such", VARIANTS)
    with pytest.raises(DatasetError, match=r"\[5\] are not folds of 5"):
        Study("phantom", tmp_path, "l2gnet", folds="0,5", bundle_dir=REPO / "bundle", variants_dir=VARIANTS)
