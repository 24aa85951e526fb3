# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The study's report: the paper's table form with mean ± SD over folds, paired per-case comparisons against the
reference variant, cost and codebook health, written as ``study.csv``, ``results.json`` and ``report.html``.

Every number comes from the runs' own files (``eval/summary.json``, ``eval/metrics_per_case.csv``, ``run.json``
and the plan inside ``model.pt``): the report can be rebuilt at any time, and a run that is not finished is listed
as such rather than counted.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from l2gnet_monai.evaluation.report import REPORT_CSS, REPORT_FILES, REPORT_NAME, html_table
from l2gnet_monai.planning.checkpoint import checkpoint_plan
from l2gnet_monai.planning.network import planned_network
from l2gnet_monai.study.statistics import mean_sd, paired_comparison
from l2gnet_monai.visualize.figures import save_figure
from l2gnet_monai.visualize.overlays import require_matplotlib

__all__ = ["collect_study", "paired_comparisons", "write_study_report", "RESULTS_FILE", "TABLE_FILE"]

logger = logging.getLogger(__name__)

#: The study's numbers (JSON) and its table (CSV, a row per run), beside ``report.html``.
RESULTS_FILE = "results.json"
TABLE_FILE = "study.csv"


def _per_case(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    cases: dict[str, dict[str, dict[str, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cases.setdefault(row["case"], {})[row["class"]] = {"dice": float(row["dice"]), "hd95": float(row["hd95"])}
    return cases


def _complexity(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters and forward FLOPs of one slice (batch 1) of the plan's network."""
    from l2gnet_monai.networks.complexity import network_complexity

    network = planned_network(plan).eval()
    channels = int(plan["network"].get("in_channels", 1))
    return network_complexity(network, (1, channels, *[int(s) for s in plan["slice_size"]]))


def collect_study(study_dir: str | os.PathLike) -> dict[str, Any]:
    """Every run's scores, cost and codebook health, and per variant their mean ± SD over folds.

    Returns:
        ``{"settings", "class_names", "variants": {name: {"description", "runs": {fold: run}, "summary"}}}``; a run
        holds ``status``, ``summary`` (its ``summary.json``), ``per_case`` and its ``run.json`` numbers.

    Raises:
        FileNotFoundError: ``study_dir`` has no ``study.json`` (not a study).
    """
    folder = Path(study_dir)
    settings_file = folder / "study.json"
    if not settings_file.is_file():
        raise FileNotFoundError(f"study: {str(settings_file)!r} does not exist; run `l2gnet-monai study` first.")
    settings = json.loads(settings_file.read_text())
    variants: dict[str, Any] = {}
    class_names: list[str] = []
    for name, variant in settings["variants"].items():
        runs: dict[int, Any] = {}
        plan: dict[str, Any] = {}
        for fold in settings["folds"]:
            run_dir = folder / "runs" / name / ("full" if fold == "none" else f"fold_{fold}")
            record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
            summary_file, per_case_file = run_dir / "eval" / "summary.json", run_dir / "eval" / "metrics_per_case.csv"
            run: dict[str, Any] = {"status": record.get("status", "not run"), "record": record}
            if record.get("status") == "done" and summary_file.is_file() and per_case_file.is_file():
                run["summary"] = json.loads(summary_file.read_text())
                run["per_case"] = _per_case(per_case_file)
                class_names = class_names or list(run["summary"]["per_class"])
                plan = plan or checkpoint_plan(run_dir / "model.pt")
            runs[-1 if fold == "none" else int(fold)] = run
        variants[name] = {"description": variant["description"], "runs": runs, "plan_network": plan.get("network")}
        variants[name]["summary"] = _variant_summary(runs, class_names, plan)
    return {"settings": settings, "class_names": class_names, "variants": variants}


def _variant_summary(runs: Mapping[int, Any], class_names: list[str], plan: Mapping[str, Any]) -> dict[str, Any]:
    done = [run for run in runs.values() if "summary" in run]
    if not done:
        return {"folds_done": 0}

    def spread(values: list[float]) -> dict[str, Any]:
        mean, sd = mean_sd(values)
        return {"mean": mean, "sd": sd}

    summary: dict[str, Any] = {
        "folds_done": len(done),
        "mean_dsc": spread([r["summary"]["mean_dsc"] for r in done]),
        "mean_hd95": spread([r["summary"]["mean_hd95"] for r in done]),
        "per_class": {
            c: {m: spread([r["summary"]["per_class"][c][m] for r in done]) for m in ("dsc", "hd95")}
            for c in class_names
        },
    }
    trainings = [r["record"]["train"] for r in done if "train" in r["record"]]
    if trainings:  # runs trained elsewhere (a copied folder) have no record of it
        summary["train_seconds"] = float(np.mean([t["seconds"] for t in trainings]))
        summary["train_peak_rss_mib"] = float(np.max([t["peak_rss_mib"] for t in trainings]))
    codebooks = [r["summary"].get("codebook") for r in done if r["summary"].get("codebook")]
    if codebooks:
        summary["codebook"] = {
            key: spread([float(c[key]) for c in codebooks])
            for key in ("codes_used", "perplexity")
            if all(key in c for c in codebooks)
        }
        # classes whose most used code is also another class's: a codebook that does not tell them apart
        shared = [sum(len(g) for g in (c.get("shared_dominant_codes") or {}).values()) for c in codebooks]
        summary["codebook"]["classes_sharing_a_dominant_code"] = spread([float(n) for n in shared])
    if plan:
        try:
            summary["complexity"] = _complexity(plan)
        except Exception as e:  # a report without the cost column rather than none at all
            logger.warning(
                "study: parameters and FLOPs of %s could not be counted (%s).", plan["network"]["_target_"], e
            )
    return summary


def _case_scores(run: Mapping[str, Any], fold: int, metric: str) -> dict[tuple[int, str], float]:
    return {
        (fold, case): float(np.mean([s[metric] for s in scores.values()])) for case, scores in run["per_case"].items()
    }


def paired_comparisons(study: Mapping[str, Any], reference: str) -> dict[str, Any]:
    """Each variant against ``reference`` on the cases both scored (all folds pooled): DSC and HD95 per case,
    averaged over the classes, differences ``variant - reference`` with bootstrap CI and Wilcoxon p-value."""
    out: dict[str, Any] = {}
    ref_runs = study["variants"][reference]["runs"]
    for name, variant in study["variants"].items():
        if name == reference:
            continue
        out[name] = {}
        for metric in ("dice", "hd95"):
            ours: dict[tuple[int, str], float] = {}
            theirs: dict[tuple[int, str], float] = {}
            for fold, run in variant["runs"].items():
                if "per_case" in run and "per_case" in ref_runs.get(fold, {}):
                    ours.update(_case_scores(run, fold, metric))
                    theirs.update(_case_scores(ref_runs[fold], fold, metric))
            common = sorted(set(ours) & set(theirs))
            if common:
                out[name][metric] = paired_comparison([ours[k] for k in common], [theirs[k] for k in common])
    return out


def _fmt(spread: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not spread:
        return "-"
    text = f"{scale * spread['mean']:.{digits}f}"
    return text + (f" ± {scale * spread['sd']:.{digits}f}" if spread.get("sd") is not None else "")


def _rows_for_csv(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, variant in study["variants"].items():
        complexity = variant["summary"].get("complexity", {})
        for fold, run in variant["runs"].items():
            row: dict[str, Any] = {"variant": name, "fold": fold, "status": run["status"]}
            summary = run.get("summary")
            if summary:
                row.update({k: summary[k] for k in ("num_cases", "mean_dsc", "mean_hd95")})
                for c in study["class_names"]:
                    row[f"dsc {c}"], row[f"hd95 {c}"] = summary["per_class"][c]["dsc"], summary["per_class"][c]["hd95"]
                codebook = summary.get("codebook") or {}
                row.update({"codes_used": codebook.get("codes_used"), "perplexity": codebook.get("perplexity")})
            record = run["record"]
            row["train_seconds"] = record.get("train", {}).get("seconds")
            row["train_peak_rss_mib"] = record.get("train", {}).get("peak_rss_mib")
            row["evaluate_seconds"] = record.get("evaluate", {}).get("seconds")
            row.update({"parameters": complexity.get("parameters"), "flops": complexity.get("flops")})
            rows.append(row)
    return rows


def _plots(study: Mapping[str, Any], files: Path) -> list[str]:
    plt = require_matplotlib()
    names = [n for n, v in study["variants"].items() if v["summary"].get("folds_done")]
    if not names:
        return []
    per_case = [
        [
            s
            for run in study["variants"][n]["runs"].values()
            if "per_case" in run
            for s in _case_scores(run, 0, "dice").values()
        ]
        for n in names
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 3.6))
    ax.boxplot(per_case, widths=0.6, showfliers=False)  # every case is drawn as a dot
    for position, values in enumerate(per_case, start=1):
        ax.plot(
            np.full(len(values), position) + np.linspace(-0.12, 0.12, len(values)),
            values,
            "o",
            color="black",
            markersize=3,
            alpha=0.7,
        )
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Dice per case (mean over classes)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, str(files / "dice_per_case.png"))
    pictures = ["dice_per_case.png"]
    costed = [n for n in names if "complexity" in study["variants"][n]["summary"]]
    if costed:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for n in costed:
            s = study["variants"][n]["summary"]
            x, y = s["complexity"]["parameters"] / 1e6, s["mean_dsc"]["mean"]
            ax.errorbar(x, y, yerr=s["mean_dsc"]["sd"] or 0, fmt="o", capsize=3)
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("parameters (millions)")
        ax.set_ylabel("mean Dice (± SD over folds)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, str(files / "dice_vs_parameters.png"))
        pictures.append("dice_vs_parameters.png")
    return pictures


def _html(study: Mapping[str, Any], comparisons: Mapping[str, Any], reference: str, pictures: list[str]) -> str:
    settings, classes = study["settings"], study["class_names"]
    variants = study["variants"]
    header = ["Variant", "folds", "DSC (%)", "HD95", *classes]
    rows = [
        [
            n,
            str(v["summary"].get("folds_done", 0)),
            _fmt(v["summary"].get("mean_dsc"), 100),
            _fmt(v["summary"].get("mean_hd95")),
            *(_fmt(v["summary"].get("per_class", {}).get(c, {}).get("dsc"), 100) for c in classes),
        ]
        for n, v in variants.items()
    ]
    sections = [
        "<h2>Scores (mean ± SD over folds)</h2>",
        html_table(header, rows),
        "<p class='note'>"
        + (
            "Each variant trained on every training case and scored on the test list (fold -1)"
            if settings["folds"] == ["none"]
            else "Each fold is scored on the cases it held out"
        )
        + "; the mean over its cases per class, then over classes, as the paper's tables. HD95 in the evaluation's "
        "unit (mm with the images' spacing).</p>",
    ]
    header = ["Variant", "cases", "ΔDSC (points)", "95% CI", "Wilcoxon p", "ΔHD95", "95% CI", "Wilcoxon p"]
    rows = []
    for name, comparison in comparisons.items():
        row = [name]
        for metric, scale in (("dice", 100), ("hd95", 1)):
            c = comparison.get(metric)
            if c is None:
                row += ["-"] * (4 if metric == "dice" else 3)
                continue
            if metric == "dice":
                row.append(str(c["num_cases"]))
            p = "-" if c["wilcoxon_p"] is None else f"{c['wilcoxon_p']:.3g}"
            row += [
                f"{scale * c['mean_difference']:+.2f}",
                f"[{scale * c['ci_low']:+.2f}, {scale * c['ci_high']:+.2f}]",
                p,
            ]
        rows.append(row)
    sections += [
        f"<h2>Against {html.escape(reference)}, case by case</h2>",
        html_table(header, rows),
        "<p class='note'>Paired over the cases both scored (every fold's held-out cases pooled): the variant's score "
        "minus the reference's, per case averaged over the classes; 95% percentile bootstrap interval of the mean "
        "difference (10,000 resamples of the cases) and the two-sided Wilcoxon signed-rank test. An interval that "
        "contains 0 does not show a difference.</p>",
    ]
    header = [
        "Variant",
        "what it changes",
        "parameters (M)",
        "GFLOPs / slice",
        "training (min)",
        "peak memory (MiB)",
        "codes used",
        "perplexity",
        "classes sharing a dominant code",
    ]
    rows = []
    for name, v in variants.items():
        s = v["summary"]
        c = s.get("complexity") or {}
        rows.append(
            [
                name,
                v["description"],
                f"{c['parameters'] / 1e6:.2f}" if c else "-",
                f"{c['flops'] / 1e9:.2f}" if c else "-",
                f"{s['train_seconds'] / 60:.1f}" if "train_seconds" in s else "-",
                f"{s['train_peak_rss_mib']:.0f}" if "train_peak_rss_mib" in s else "-",
                _fmt((s.get("codebook") or {}).get("codes_used"), 1, 1),
                _fmt((s.get("codebook") or {}).get("perplexity"), 1, 1),
                _fmt((s.get("codebook") or {}).get("classes_sharing_a_dominant_code"), 1, 1),
            ]
        )
    sections += [
        "<h2>Cost and codebook</h2>",
        html_table(header, rows),
        "<p class='note'>Parameters and forward FLOPs of one slice at the trained slice size (batch 1). Training time "
        "is the mean wall time of a fold's training; peak memory the largest resident set of a training process "
        "(host memory). Codes used and perplexity of the codebook on the held-out cases, and how many classes "
        "share their most used code with another class (mean ± SD over folds).</p>",
    ]
    for picture in pictures:
        sections.append(f"<img src='{REPORT_FILES}/{picture}' alt='{html.escape(picture)}'>")
    runs = [[n, str(f), r["status"]] for n, v in variants.items() for f, r in v["runs"].items()]
    sections += ["<h2>Runs</h2>", html_table(["Variant", "fold", "status"], runs)]
    title = (
        f"Study: {len(variants)} variants, folds {settings['folds']} of {settings['num_folds']}, {settings['dataset']}"
    )
    setting_rows = [
        ["dataset", settings["datalist"]],
        ["overrides", ", ".join(settings["overrides"]) or "none"],
        ["bundle", settings["bundle_dir"]],
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{REPORT_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        + html_table(["Setting", "Value"], setting_rows)
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def write_study_report(study_dir: str | os.PathLike, reference: str | None = None) -> dict[str, str]:
    """Write ``results.json``, ``study.csv`` and ``report.html`` (with ``report_files/``) into ``study_dir``.

    Args:
        study_dir: the study's folder.
        reference: the variant the others are compared with (default: ``l2gnet`` if the study has it, else the
            first variant).

    Returns:
        ``{"json", "csv", "html"}`` paths.
    """
    folder = Path(study_dir)
    study = collect_study(folder)
    names = list(study["variants"])
    reference = reference or ("l2gnet" if "l2gnet" in names else names[0])
    if reference not in names:
        raise ValueError(f"reference: {reference!r} is not a variant of the study ({names}).")
    comparisons = paired_comparisons(study, reference)
    results = {
        "settings": study["settings"],
        "reference": reference,
        "class_names": study["class_names"],
        "variants": {
            n: {"description": v["description"], "network": v["plan_network"], **v["summary"]}
            for n, v in study["variants"].items()
        },
        "paired": comparisons,
        "runs": _rows_for_csv(study),
    }
    staging = Path(tempfile.mkdtemp(prefix=".study-report.", dir=folder))
    try:
        (staging / REPORT_FILES).mkdir()
        pictures = _plots(study, staging / REPORT_FILES)
        (staging / REPORT_NAME).write_text(_html(study, comparisons, reference, pictures), encoding="utf-8")
        (staging / RESULTS_FILE).write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
        rows = results["runs"]
        fields = list(dict.fromkeys(k for row in rows for k in row))
        with open(staging / TABLE_FILE, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        if (folder / REPORT_FILES).is_dir():
            shutil.rmtree(folder / REPORT_FILES)
        for name in (REPORT_FILES, REPORT_NAME, RESULTS_FILE, TABLE_FILE):
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"json": str(folder / RESULTS_FILE), "csv": str(folder / TABLE_FILE), "html": str(folder / REPORT_NAME)}
