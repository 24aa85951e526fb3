"""The study's report from run folders written by hand: spread over folds, pairing of cases, unfinished runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from l2gnet_monai.study import Study, paired_bootstrap_ci, wilcoxon_p, write_study_report

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["liver", "spleen"]


def write_run(study: Path, variant: str, fold: int, scores: dict[str, tuple[float, float]], seconds: float) -> None:
    """A finished run: run.json, and the evaluation's per-case CSV and summary.json (per case: liver, spleen Dice)."""
    run = study / "runs" / variant / f"fold_{fold}"
    (run / "eval").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "done", "train": {"seconds": seconds, "peak_rss_mib": 900.0}}))
    with open(run / "eval" / "metrics_per_case.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "class", "dice", "hd95"])
        for case, dice in scores.items():
            for name, value in zip(CLASSES, dice):
                writer.writerow([case, name, value, 10 * (1 - value)])
    per_class = {
        n: {"dsc": float(np.mean([d[i] for d in scores.values()])), "hd95": 0.0} for i, n in enumerate(CLASSES)
    }
    codebook = {"codes_used": 10 + fold, "perplexity": 5.0, "shared_dominant_codes": {"3": CLASSES}}
    summary = {"mean_dsc": float(np.mean([v["dsc"] for v in per_class.values()])), "mean_hd95": 0.0,
               "per_class": per_class, "num_cases": len(scores), "codebook": codebook}  # fmt: skip
    (run / "eval" / "summary.json").write_text(json.dumps(summary))


def test_report_of_two_variants_over_two_folds(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    settings = {"dataset": "phantom", "datalist": "x/dataset.json", "bundle_dir": "bundle", "overrides": [],
                "variants": {"l2gnet": {"file": "l2gnet.json", "description": "reference"},
                             "no_mapper": {"file": "no_mapper.json", "description": "no mapper"},
                             "transunet": {"file": "transunet.json", "description": "not run yet"}},
                "folds": [0, 1], "num_folds": 2}  # fmt: skip
    (study / "study.json").write_text(json.dumps(settings))
    reference = {0: {"a": (0.8, 0.6), "b": (0.9, 0.7)}, 1: {"c": (0.5, 0.5), "d": (0.7, 0.9)}}
    variant = {0: {"a": (0.7, 0.6), "b": (0.8, 0.5)}, 1: {"c": (0.6, 0.4), "d": (0.5, 0.7)}}
    for fold in (0, 1):
        write_run(study, "l2gnet", fold, reference[fold], 60.0)
        write_run(study, "no_mapper", fold, variant[fold], 30.0)
    paths = write_study_report(study)
    results = json.loads(Path(paths["json"]).read_text())

    fold_means = [np.mean([np.mean(d) for d in variant[f].values()]) for f in (0, 1)]
    summary = results["variants"]["no_mapper"]
    assert summary["mean_dsc"]["mean"] == pytest.approx(np.mean(fold_means))
    assert summary["mean_dsc"]["sd"] == pytest.approx(np.std(fold_means, ddof=1))
    assert summary["train_seconds"] == 60.0 / 2 and summary["codebook"]["codes_used"]["mean"] == pytest.approx(10.5)
    assert summary["codebook"]["classes_sharing_a_dominant_code"]["mean"] == 2
    assert results["variants"]["transunet"]["folds_done"] == 0  # listed, not counted

    # pairs: the same case of the same fold, per-case Dice averaged over the classes
    differences = [np.mean(variant[f][c]) - np.mean(reference[f][c]) for f in (0, 1) for c in sorted(variant[f])]
    paired = results["paired"]["no_mapper"]["dice"]
    assert paired["num_cases"] == 4 and paired["mean_difference"] == pytest.approx(np.mean(differences))
    assert (paired["ci_low"], paired["ci_high"]) == pytest.approx(paired_bootstrap_ci(differences))
    assert paired["wilcoxon_p"] == pytest.approx(wilcoxon_p(differences))
    assert "transunet" not in results["paired"] or not results["paired"]["transunet"]

    rows = list(csv.DictReader(Path(paths["csv"]).read_text().splitlines()))
    assert [(r["variant"], r["fold"], r["status"]) for r in rows] == [
        ("l2gnet", "0", "done"), ("l2gnet", "1", "done"), ("no_mapper", "0", "done"), ("no_mapper", "1", "done"),
        ("transunet", "0", "not run"), ("transunet", "1", "not run"),
    ]  # fmt: skip
    page = Path(paths["html"]).read_text()
    assert "Against l2gnet, case by case" in page and "not run" in page


def test_study_commands_are_the_bundles_own(tmp_path):
    variants = REPO / "configs" / "variants"
    study = Study("phantom", tmp_path, "l2gnet,no_mapper", folds="1", num_folds=3, bundle_dir=REPO / "bundle",
                  overrides=str(REPO / "configs" / "smoke.json"), variants_dir=variants)  # fmt: skip
    run = study.runs[1]
    assert (run.variant, run.fold) == ("no_mapper", 1)
    train = study.train_command(run)
    assert train[1:5] == ["-m", "monai.bundle", "run", "training"]
    assert train[train.index("--fold") + 1] == "1" and train[train.index("--models_dir") + 1].endswith("runs/no_mapper")
    assert str(variants / "no_mapper.json") in train[train.index("--config_file") + 1]
    assert "--resume_from" in study.train_command(run, resume=True)
    assert "evaluate.json" in study.evaluate_command(run)[study.evaluate_command(run).index("--config_file") + 1]
    paper = Study("phantom", tmp_path, "l2gnet", folds="none", bundle_dir=REPO / "bundle", variants_dir=variants)
    command = paper.train_command(paper.runs[0])
    assert "--fold" not in command and command[command.index("--models_dir") + 1].endswith("runs/l2gnet/full")
