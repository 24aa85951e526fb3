# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The evaluation report: ``report.html`` beside ``summary.json``, readable offline in any browser.

The page holds the scores table (the paper's Table 1 / Table 2 with our row for the paper's classes, a per-class
table otherwise), a per-case table of Dice, box plots of Dice and HD95 per class over the cases, and for every
case a figure of its chosen slices across the plan's slicing axis (:func:`~l2gnet_monai.visualize.select_slices`:
the slice with most foreground and the slice with the largest error area among those whose structures are not
tiny): image, ground truth, prediction and error map, in the radiological view of the plane at true proportions
(:mod:`~l2gnet_monai.visualize.views`), with the legend of the class colours. When the network's codes were recorded
(:class:`~l2gnet_monai.networks.explain.CodeUsageRecorder`), it adds per class the histogram of the codes its
pixels use.

The page is self-contained: plain HTML with inline CSS and no scripts; its pictures are PNG files in the folder
``report_files/`` beside it, referenced by relative paths, so the two can be copied or zipped together.
:class:`ReportBuilder` keeps only the chosen slices of each case (a few 2-D arrays), never whole volumes.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from l2gnet_monai.evaluation.results import EvaluationResults
from l2gnet_monai.evaluation.tables import PAPER_RESULTS, TABLE_COLUMNS, format_table_row, resolve_paper_table
from l2gnet_monai.visualize.colors import class_palette
from l2gnet_monai.visualize.figures import save_figure, slice_figure
from l2gnet_monai.visualize.overlays import (
    MIN_STRUCTURE_FRACTION,
    MIN_STRUCTURE_MM2,
    display_image,
    require_matplotlib,
    select_slices,
)
from l2gnet_monai.visualize.views import slice_view

__all__ = ["ReportBuilder", "REPORT_NAME", "REPORT_FILES", "REPORT_CSS", "html_table"]

logger = logging.getLogger(__name__)

#: File name of the report and of the folder of its pictures.
REPORT_NAME = "report.html"
REPORT_FILES = "report_files"

#: Up to this many cases, the box plots draw every case as a dot.
_FEW_CASES = 20

REPORT_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.ours { font-weight: bold; background: #eef; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


class ReportBuilder:
    """Collects the chosen slices of each evaluated case and writes ``report.html``.

    Args:
        class_names: ``{class index: name}`` of the scored classes (background may be included).
        modality: ``"CT"`` or ``"MRI"``: how images are windowed for display (see
            :func:`~l2gnet_monai.visualize.display_image`).
        window: CT display window; ``(0, 1)`` for images already normalised by the bundle's preprocessing,
            ``(-125, 275)`` for Hounsfield units.
        slice_axis: the RAS axis the pictures slice across (the plan's ``slice_axis``): 0 sagittal, 1 coronal,
            2 axial; ``None``: each volume's lowest-resolution axis (for predictions without a plan).
    """

    def __init__(
        self,
        class_names: Mapping[int | str, str] | None = None,
        modality: str = "CT",
        window: Sequence[float] | None = (0.0, 1.0),
        slice_axis: int | None = 2,
    ) -> None:
        self.class_names: dict[int, str] = {}
        self.palette: dict[int, tuple[float, float, float]] = {}
        if class_names is not None:
            self.set_class_names(class_names)
        self.modality = modality
        self.window = None if window is None else tuple(float(w) for w in window)
        self.slice_axis = slice_axis
        self.cases: dict[str, list[dict[str, Any]]] = {}
        self.class_code_counts: np.ndarray | None = None

    def set_class_names(self, class_names: Mapping[int | str, str]) -> None:
        """Set the classes (and so their colours); until then the classes are the values found in the volumes."""
        self.class_names = {int(k): str(v) for k, v in class_names.items() if int(k) != 0}
        self.palette = class_palette(self.class_names)

    def reset(self) -> None:
        """Forget the collected cases and code counts."""
        self.cases = {}
        self.class_code_counts = None

    def add_case(
        self,
        case: str,
        pred: np.ndarray,
        label: np.ndarray,
        image: np.ndarray | None = None,
        affine: np.ndarray | None = None,
    ) -> None:
        """Choose and keep the slices of one case worth showing.

        Args:
            case: the case name.
            pred: predicted label map ``(X, Y, Z)``.
            label: ground-truth label map of the same shape.
            image: the image in the same voxel grid, or ``None`` (the overlays are then drawn on black).
            affine: the volumes' voxel-to-world affine, so that the slices are cut across the plan's RAS axis and
                shown as radiologists read them at true proportions; ``None``: a RAS volume with 1 mm voxels.
        """
        pred, label = np.asarray(pred), np.asarray(label)
        if image is not None and np.shape(image) != label.shape:
            raise ValueError(f"case {case!r}: image shape {np.shape(image)} differs from the label's {label.shape}.")
        view = slice_view(affine, self.slice_axis)
        area = view.spacing[0] * view.spacing[1]
        chosen = select_slices(pred, label, axis=view.voxel_axis, pixel_area_mm2=area)
        # one window for the whole volume: a slice's own percentiles would stretch noise on an empty edge slice
        grey = np.zeros(label.shape, np.float32) if image is None else display_image(image, self.modality, self.window)
        rows: list[dict[str, Any]] = []
        for reason, z in chosen.items():
            if any(row["index"] == z for row in rows):
                rows[[row["index"] for row in rows].index(z)]["title"] += f" + {reason}"
                continue
            prd, lab = view.take(pred, z), view.take(label, z)
            title = f"{view.plane} slice {z}: {reason}"
            if reason == "largest error":
                title += f" ({int((prd != lab).sum()) * area:.0f} mm²)"
            rows.append(
                {"index": z, "grey": view.take(grey, z), "label": lab, "pred": prd, "title": title, "view": view}
            )
        self.cases[str(case)] = rows

    def folder_collector(
        self,
        datalist: str | None = None,
        datalist_key: str = "test",
        label_key: str = "label",
        image_key: str = "image",
    ) -> Callable[[str, np.ndarray, np.ndarray, np.ndarray, str], None]:
        """An ``on_case`` callback for :func:`~l2gnet_monai.evaluation.evaluate_folders` that feeds :meth:`add_case`.

        Args:
            datalist: a JSON datalist (e.g. a ``dataset.json``) whose entries pair ``label_key`` with
                ``image_key``: the image of each scored label is read from there (one volume at a time). Without
                it, or for a label with no image, the overlays are drawn on black.
            datalist_key: the list of a ``dataset.json`` to read.
            label_key: key of the label path in the entries.
            image_key: key of the image path in the entries.

        Returns:
            ``collect(case, prediction, ground truth, affine, label path)``.
        """
        images: dict[str, str] = {}
        if datalist is not None and os.path.isfile(datalist):
            with open(datalist, encoding="utf-8") as f:
                content = json.load(f)
            entries = content.get(datalist_key, []) if isinstance(content, dict) else content
            base = os.path.dirname(os.path.abspath(datalist))
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, Mapping) and isinstance(entry.get(label_key), str):
                    image = entry.get(image_key)
                    if isinstance(image, str):
                        label = os.path.normpath(os.path.join(base, entry[label_key]))
                        images[label] = os.path.normpath(os.path.join(base, image))

        def collect(case: str, pred: np.ndarray, label: np.ndarray, affine: np.ndarray, label_path: str) -> None:
            image_path = images.get(os.path.normpath(os.path.abspath(label_path)))
            image = None
            if image_path is not None and os.path.isfile(image_path):
                import nibabel as nib

                data = np.asanyarray(nib.load(image_path).dataobj).astype(np.float32)
                while data.ndim > label.ndim and data.shape[-1] == 1:
                    data = data[..., 0]
                image = data[..., 0] if data.ndim == label.ndim + 1 else data  # first channel of a 4-D image
                if image.shape != label.shape:
                    logger.warning(
                        "report: image %s does not match label %s; drawn without it.", image_path, label_path
                    )
                    image = None
            self.add_case(case, pred, label, image, affine)

        return collect

    # ----------------------------------------------------------------------------------------------
    # writing
    # ----------------------------------------------------------------------------------------------

    def write(self, results: EvaluationResults, output_dir: str, paper_table: str | None = "auto") -> str:
        """Write ``report.html`` and ``report_files/`` into ``output_dir``, replacing earlier ones.

        Everything is written into a temporary folder first; the old report is replaced only once the new one
        is complete, so a failure leaves either the old report or none, never a half-written one.

        Args:
            results: the evaluation's scores.
            output_dir: the folder of ``summary.json``.
            paper_table: ``"auto"``, ``"synapse"``, ``"acdc"`` or ``"none"`` (see
                :func:`~l2gnet_monai.evaluation.resolve_paper_table`).

        Returns:
            The path of ``report.html``.
        """
        require_matplotlib()
        summary = results.summary()
        if not self.class_names:
            self.set_class_names(results.class_names)
        os.makedirs(output_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".report.", dir=output_dir)
        try:
            files = os.path.join(staging, REPORT_FILES)
            os.makedirs(files)
            sections = [self._table_section(summary, paper_table), self._case_table(results)]
            sections.append(self._boxplot_section(results, files))
            if self.class_code_counts is not None:
                sections.append(self._code_section(files))
            sections.append(self._cases_section(results, files))
            sections.append(_run_section(summary.get("run")))
            title = f"Evaluation report: {summary.get('method') or 'segmentation'}, {summary['num_cases']} cases"
            page = (
                "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
                f"<title>{html.escape(title)}</title>\n<style>{REPORT_CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
            )
            with open(os.path.join(staging, REPORT_NAME), "w", encoding="utf-8") as f:
                f.write(page)
            for root, dirs, names in os.walk(staging):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
                for name in names:
                    os.chmod(os.path.join(root, name), 0o644)
            target_files = os.path.join(output_dir, REPORT_FILES)
            target_page = os.path.join(output_dir, REPORT_NAME)
            if os.path.isdir(target_files):
                old = tempfile.mkdtemp(prefix=".report-old.", dir=output_dir)
                os.replace(target_files, os.path.join(old, REPORT_FILES))
                shutil.rmtree(old, ignore_errors=True)
            os.replace(files, target_files)
            os.replace(os.path.join(staging, REPORT_NAME), target_page)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target_page

    def _table_section(self, summary: Mapping[str, Any], paper_table: str | None) -> str:
        table = resolve_paper_table(paper_table, list(summary["per_class"]))
        unit = {"voxel": "voxels", "mm": "mm"}.get(str(summary.get("hd95_unit")), str(summary.get("hd95_unit")))
        ours = format_table_row(summary, table) if table else None
        if table:
            header = ["Method", *TABLE_COLUMNS[table]]
            rows = [[m, *(f"{v:.2f}" for v in values)] for m, values in PAPER_RESULTS[table].items()]
            note = (
                f"DSC in %. The paper's rows as published (HD95 in voxels); our row: HD95 in {unit} "
                f"({summary.get('hd95_method')} definition), {summary['num_cases']} cases."
            )
            heading = "Scores beside the paper's " + ("Table 1 (Synapse)" if table == "synapse" else "Table 2 (ACDC)")
        else:
            header = ["Class", "DSC (%)", f"HD95 ({unit})"]
            rows = [[c, f"{100 * v['dsc']:.2f}", f"{v['hd95']:.2f}"] for c, v in summary["per_class"].items()]
            ours = ["mean", f"{100 * summary['mean_dsc']:.2f}", f"{summary['mean_hd95']:.2f}"]
            note = (
                f"Mean over {summary['num_cases']} cases per class, then over classes "
                f"({summary.get('hd95_method')} HD95 definition)."
            )
            heading = "Scores per class"
        return f"<h2>{heading}</h2>\n" + html_table(header, rows, ours) + f"<p class='note'>{html.escape(note)}</p>"

    def _case_table(self, results: EvaluationResults) -> str:
        names = list(self.class_names.values())
        header = ["Case", *(f"{n} DSC (%)" for n in names)]
        rows = [[case, *(f"{100 * scores[n]['dice']:.1f}" for n in names)] for case, scores in results.per_case.items()]
        return "<h2>Dice per case</h2>\n" + html_table(header, rows)

    def _boxplot_section(self, results: EvaluationResults, files: str) -> str:
        plt = require_matplotlib()
        names = list(self.class_names.values())
        colours = [self.palette[k] for k in self.class_names]
        unit = "mm" if results.hd95_unit == "mm" else "voxels"
        fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(names) + 2), 3.6))
        for ax, metric, label in ((axes[0], "dice", "Dice"), (axes[1], "hd95", f"HD95 ({unit})")):
            data = [[scores[n][metric] for scores in results.per_case.values()] for n in names]
            boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=len(results.per_case) > _FEW_CASES)
            for patch, colour in zip(boxes["boxes"], colours):
                patch.set_facecolor(colour)
                patch.set_alpha(0.5)
            if len(results.per_case) <= _FEW_CASES:  # a box of 4 cases is a line: show the cases themselves
                for position, values in enumerate(data, start=1):
                    offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
                    ax.plot(position + offsets, values, "o", color="black", markersize=3.5, alpha=0.8, zorder=3)
            ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylim(-0.02, 1.02)
        fig.tight_layout()
        save_figure(fig, os.path.join(files, "boxplots.png"))
        return (
            "<h2>Dice and HD95 per class over the cases</h2>\n"
            f"<img src='{REPORT_FILES}/boxplots.png' alt='box plots of Dice and HD95 per class'>\n"
            "<p class='note'>Each box spans the middle half of the cases, the line is the median, whiskers reach "
            f"1.5 times the box; with up to {_FEW_CASES} cases every case is a black dot, with more the circles are "
            "outlying cases.</p>"
        )

    def _code_section(self, files: str) -> str:
        plt = require_matplotlib()
        counts = np.asarray(self.class_code_counts)
        names = {0: "background", **self.class_names}
        colours = {0: (0.45, 0.45, 0.45), **self.palette}
        classes = [k for k in names if k < counts.shape[0] and counts[k].sum() > 0]
        if not classes:
            return ""
        fig, axes = plt.subplots(len(classes), 1, figsize=(8, 1.1 * len(classes) + 0.6), sharex=True, squeeze=False)
        for ax, k in zip(axes[:, 0], classes):
            share = counts[k] / counts[k].sum()
            ax.bar(np.arange(share.size), share, width=1.0, color=colours[k])
            ax.set_ylabel(names[k], rotation=0, ha="right", va="center", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[-1, 0].set_xlabel("code index")
        fig.tight_layout()
        save_figure(fig, os.path.join(files, "codes_per_class.png"))
        return (
            "<h2>Codes per class</h2>\n"
            f"<img src='{REPORT_FILES}/codes_per_class.png' alt='histogram of codes per class'>\n"
            "<p class='note'>For each class, the share of its pixels (those the network predicts as the class, over "
            "all evaluated cases) whose bottleneck position uses each code of the codebook; classes the network "
            "never predicts are left out. Classes served by a few codes of their own are the ones the codebook "
            "separates; codes shared between classes show where it does not. See docs/interpretability.md.</p>"
        )

    def _cases_section(self, results: EvaluationResults, files: str) -> str:
        parts = [
            "<h2>Cases</h2>\n<p class='note'>Per case, the slice with most ground-truth foreground and the slice "
            "with the largest error area (false positives, false negatives and wrong classes, in mm² at the "
            f"volume's spacing) among the slices whose foreground covers at least {MIN_STRUCTURE_MM2:.0f} mm² and "
            f"{100 * MIN_STRUCTURE_FRACTION:.0f} % of the largest slice's: image, ground truth, prediction, and the "
            "error map on a darkened image (in the legend's colours). Slices are shown as radiologists read them "
            "(axial: anterior up, the patient's right on the left; coronal: superior up, right on the left; "
            "sagittal: superior up, anterior on the left), at the true proportions of their pixels; the letters "
            "at the edges name the directions. One intensity window per volume.</p>"
        ]
        for number, (case, rows) in enumerate(self.cases.items()):
            scores = results.per_case.get(case, {})
            mean = np.mean([v["dice"] for v in scores.values()]) if scores else float("nan")
            fig = slice_figure(rows, self.palette, self.class_names, title=f"{case}: mean Dice {mean:.3f}")
            name = f"case_{number:04d}.png"
            save_figure(fig, os.path.join(files, name))
            parts.append(
                f"<h3>{html.escape(case)}</h3>\n<img src='{REPORT_FILES}/{name}' alt='{html.escape(case, True)}'>"
            )
        return "\n".join(parts)


def _run_section(run: Mapping[str, Any] | None) -> str:
    """The "How it ran" table: ``summary.json``'s ``"run"`` (precision, compile, device, versions, checkpoint, plan)."""
    if not run:
        return ""
    rows = [
        [key, json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)]
        for key, value in run.items()
    ]
    return (
        "<h2>How it ran</h2>\n" + html_table(["Setting", "Value"], rows) + "<p class='note'>The precision the "
        "network ran in, the compile setting, the device, the versions, the weights' SHA-256 and their training "
        'plan, as recorded in summary.json\'s "run".</p>'
    )


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], ours: Sequence[str] | None = None) -> str:
    """An HTML table of escaped text cells; ``ours`` is a last, highlighted row."""

    def row(cells: Sequence[str], tag: str = "td", css: str = "") -> str:
        inner = "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells)
        return f"<tr{css}>{inner}</tr>"

    lines = ["<table>", row(header, "th"), *(row(r) for r in rows)]
    if ours is not None:
        lines.append(row(ours, css=" class='ours'"))
    lines.append("</table>")
    return "\n".join(lines)
