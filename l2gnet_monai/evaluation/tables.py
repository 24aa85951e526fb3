# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The paper's Table 1 (Synapse) and Table 2 (ACDC): published rows, column layout, our row beside them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from l2gnet_monai.data.labels import ACDC_LABELS, SYNAPSE_LABELS
from l2gnet_monai.evaluation.results import EvaluationResults

__all__ = ["SYNAPSE_CLASSES", "ACDC_CLASSES", "TABLE_COLUMNS", "PAPER_RESULTS", "format_table_row", "format_comparison"]

#: Synapse labels after TransUNet's preprocessing (0 is background).
SYNAPSE_CLASSES: dict[int, str] = {k: v for k, v in SYNAPSE_LABELS.items() if k != 0}

#: ACDC labels (0 is background).
ACDC_CLASSES: dict[int, str] = {k: v for k, v in ACDC_LABELS.items() if k != 0}

#: Value columns of the paper's Table 1 (Synapse, class-wise DSC) and Table 2 (ACDC, class-wise DSC and HD).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "synapse": ("DSC", "HD", "Aorta", "GB", "KL", "KR", "Liver", "PC", "SP", "SM"),
    "acdc": ("DSC", "HD", "RV DSC", "Myo DSC", "LV DSC", "RV HD", "Myo HD", "LV HD"),
}

#: The paper's published rows, in the order of :data:`TABLE_COLUMNS` (DSC in percent).
PAPER_RESULTS: dict[str, dict[str, tuple[float, ...]]] = {
    "synapse": {
        "UNet": (77.54, 38.26, 85.52, 61.86, 80.57, 77.24, 94.37, 54.72, 87.95, 78.12),
        "AttnUNet": (75.57, 36.97, 55.92, 63.91, 79.20, 72.71, 93.56, 49.37, 87.19, 74.95),
        "TransUNet": (77.48, 30.45, 87.23, 63.13, 81.87, 77.02, 94.08, 55.86, 85.08, 75.62),
        "VQUNet": (63.44, 68.79, 78.99, 50.74, 67.32, 61.91, 89.94, 33.96, 73.83, 50.87),
        "SSNet": (78.36, 32.48, 86.42, 61.16, 83.55, 79.64, 94.44, 57.69, 85.67, 78.32),
        "TranSSNet": (78.74, 33.63, 85.79, 63.61, 82.73, 77.38, 94.90, 59.09, 86.44, 80.00),
        "SynergyNet*": (79.65, 23.59, 86.10, 65.49, 82.78, 79.23, 95.06, 58.28, 88.95, 81.30),
        "L2GNet(2-ref)": (78.98, 23.90, 87.75, 57.75, 83.48, 75.79, 94.43, 64.85, 90.43, 77.33),
        "L2GNet(4-ref)": (82.23, 14.17, 86.87, 69.06, 86.32, 79.54, 95.06, 67.49, 91.80, 81.77),
    },
    "acdc": {
        "UNet": (87.94, 1.98, 84.62, 84.52, 93.68, 3.81, 1.10, 1.05),
        "AttnUNet": (86.90, 2.10, 83.27, 84.33, 93.53, 3.84, 1.14, 1.11),
        "TransUNet": (89.71, 1.82, 86.67, 87.27, 95.18, 3.39, 1.06, 1.04),
        "VQUNet": (78.15, 3.16, 70.14, 74.13, 90.13, 5.09, 2.15, 2.24),
        "SSNet": (89.69, 1.54, 87.90, 86.62, 94.74, 2.49, 1.07, 1.08),
        "TranSSNet": (91.32, 1.30, 90.09, 88.34, 95.53, 1.85, 1.02, 1.04),
        "SynergyNet": (89.78, 1.86, 87.68, 86.60, 95.06, 2.76, 1.53, 1.15),
        "L2GNet(2-ref)": (91.36, 1.16, 90.04, 88.62, 95.55, 1.42, 1.02, 1.03),
        "L2GNet(4-ref)": (91.44, 1.24, 89.97, 88.84, 95.50, 1.64, 1.01, 1.10),
    },
}

_TABLE_TITLES = {
    "synapse": "Table 1 (Synapse multi-organ CT): mean DSC (%), mean HD95, class-wise DSC (%)",
    "acdc": "Table 2 (ACDC cardiac MRI): mean DSC (%), mean HD95, class-wise DSC (%), class-wise HD95",
}

# paper column -> accepted class names (compared after lower-casing and mapping "_"/"-" to spaces)
_CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "Aorta": ("aorta",),
    "GB": ("gallbladder", "gall bladder", "gb"),
    "KL": ("left kidney", "kidney left", "kidney l", "l kidney", "kl", "lk"),
    "KR": ("right kidney", "kidney right", "kidney r", "r kidney", "kr", "rk"),
    "Liver": ("liver",),
    "PC": ("pancreas", "pc"),
    "SP": ("spleen", "sp"),
    "SM": ("stomach", "sm"),
    "RV": ("rv", "right ventricle", "right ventricle cavity"),
    "Myo": ("myo", "myocardium"),
    "LV": ("lv", "left ventricle", "left ventricle cavity"),
}

HD95_METHODS = ("medpy", "monai")


def _norm_name(name: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())


def _find_class(per_class: Mapping[str, Any], column: str) -> str:
    by_norm = {_norm_name(n): n for n in per_class}
    for alias in _CLASS_ALIASES[column]:
        if alias in by_norm:
            return by_norm[alias]
    raise ValueError(
        f"no class for the paper's column {column!r} (accepted names: {list(_CLASS_ALIASES[column])}); "
        f"the summary has classes {list(per_class)}."
    )


def _check_dataset(dataset: str) -> str:
    key = str(dataset).lower()
    if key not in TABLE_COLUMNS:
        raise ValueError(f"dataset must be one of {sorted(TABLE_COLUMNS)}, got {dataset!r}.")
    return key


def _as_summary(summary: EvaluationResults | Mapping[str, Any]) -> Mapping[str, Any]:
    return summary.summary() if isinstance(summary, EvaluationResults) else summary


def format_table_row(
    summary: EvaluationResults | Mapping[str, Any], dataset: str = "synapse", name: str = "L2GNet (ours)"
) -> list[str]:
    """Cells of one row in the layout of the paper's Table 1 (Synapse) or Table 2 (ACDC).

    Class columns are matched to the summary's classes by name (e.g. ``"KL"`` <- ``"left kidney"``),
    not by label index: the paper's column order differs from the label order.

    Args:
        summary: an :class:`EvaluationResults` or the dict from :meth:`EvaluationResults.summary` /
            :func:`aggregate`.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name in the first cell.

    Returns:
        ``[name, DSC, HD, ...]`` as strings, DSC in percent, all with 2 decimals, in :data:`TABLE_COLUMNS` order.

    Raises:
        ValueError: unknown dataset, or a paper column with no matching class.
    """
    key = _check_dataset(dataset)
    s = _as_summary(summary)
    per_class = s["per_class"]
    cells = [name, f"{100.0 * s['mean_dsc']:.2f}", f"{s['mean_hd95']:.2f}"]
    for column in TABLE_COLUMNS[key][2:]:
        cls, _, metric = column.partition(" ")
        scores = per_class[_find_class(per_class, cls)]
        value = scores["hd95"] if metric == "HD" else 100.0 * scores["dsc"]
        cells.append(f"{value:.2f}")
    return cells


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]]


def format_comparison(
    our_summary: EvaluationResults | Mapping[str, Any] | None,
    dataset: str = "synapse",
    name: str = "L2GNet (ours)",
) -> str:
    """A text table of our row below the paper's published rows (Table 1 or Table 2).

    Args:
        our_summary: our scores (see :func:`format_table_row`); ``None`` prints only the paper's rows.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name of our row.

    Returns:
        The table as a multi-line string, with a note on the HD95 unit.
    """
    key = _check_dataset(dataset)
    header = ["Method", *TABLE_COLUMNS[key]]
    rows = [[method, *(f"{v:.2f}" for v in values)] for method, values in PAPER_RESULTS[key].items()]
    notes = ["Paper rows as published; the TransUNet protocol they follow calls medpy's hd95 without spacing (voxels)."]
    if our_summary is not None:
        s = _as_summary(our_summary)
        rows.append(format_table_row(s, key, name))
        unit = s.get("hd95_unit", "unknown unit")
        method = s.get("hd95_method", "unknown method")
        notes.append(f"{name}: {s.get('num_cases', '?')} cases, HD95 in {unit} ({method} definition).")
    return "\n".join([_TABLE_TITLES[key], *_render(header, rows), *notes])
