# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Score tables: the paper's Table 1 (Synapse) and Table 2 (ACDC) with our row beside them, or a per-class table.

The paper's layout is used only for the paper's classes (matched by name, e.g. ``"left kidney"`` -> ``KL``);
any other dataset gets a plain per-class table (:func:`format_report` chooses).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from l2gnet_monai.data.labels import ACDC_LABELS, SYNAPSE_LABELS
from l2gnet_monai.evaluation.results import EvaluationResults

__all__ = [
    "SYNAPSE_CLASSES",
    "ACDC_CLASSES",
    "TABLE_COLUMNS",
    "PAPER_RESULTS",
    "PAPER_TABLE_CHOICES",
    "format_table_row",
    "format_comparison",
    "format_scores",
    "format_report",
    "detect_paper_table",
    "resolve_paper_table",
    "network_label",
]

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


#: Values of the bundle's ``paper_table`` (and ``PaperMetricsHandler(dataset=...)``).
PAPER_TABLE_CHOICES = ("auto", "synapse", "acdc", "none")

#: The row label when nothing says which network was scored.
_DEFAULT_NAME = "ours"


def _paper_classes(table: str) -> list[str]:
    """The class part of the paper's class columns, in column order (``"RV"`` for ``"RV DSC"``)."""
    return list(dict.fromkeys(column.partition(" ")[0] for column in TABLE_COLUMNS[table][2:]))


def _foreground_names(class_names: Mapping[Any, str] | Iterable[str]) -> list[str]:
    """Class names without the background: a ``{index: name}`` map loses index 0, a list loses "background"."""
    if isinstance(class_names, Mapping):
        return [str(v) for k, v in class_names.items() if str(k) != "0"]
    return [str(n) for n in class_names if _norm_name(n) != "background"]


def _missing_classes(names: Sequence[str], table: str) -> list[str]:
    by_norm = {_norm_name(n) for n in names}
    return [c for c in _paper_classes(table) if not any(a in by_norm for a in _CLASS_ALIASES[c])]


def detect_paper_table(class_names: Mapping[Any, str] | Iterable[str]) -> str | None:
    """The paper's table whose classes these are, by name, or ``None`` for any other set of classes.

    Args:
        class_names: ``{index: name}`` (index 0, the background, is ignored) or the class names.

    Returns:
        ``"synapse"`` when the foreground classes are exactly Synapse's 8 organs, ``"acdc"`` when they are
        exactly RV, Myo and LV (accepted spellings as in :func:`format_table_row`), otherwise ``None``.
    """
    names = _foreground_names(class_names)
    for table in TABLE_COLUMNS:
        if len(names) == len(_paper_classes(table)) and not _missing_classes(names, table):
            return table
    return None


def resolve_paper_table(paper_table: str | None, class_names: Mapping[Any, str] | Iterable[str]) -> str | None:
    """Which of the paper's tables to print for these classes; checks an explicit choice before any work.

    Args:
        paper_table: ``"auto"`` (the paper's table when the classes are the paper's, see
            :func:`detect_paper_table`), ``"synapse"``, ``"acdc"``, or ``"none"`` / ``None`` / ``""`` (a plain
            per-class table). Case-insensitive. ``"none"`` is the form that works on MONAI's command line,
            which drops a ``None`` value.
        class_names: ``{index: name}`` or the class names of the dataset.

    Returns:
        ``"synapse"``, ``"acdc"`` or ``None``.

    Raises:
        ValueError: an unknown value, or ``"synapse"``/``"acdc"`` for classes that lack some of the paper's
            columns (the message names the missing classes and what to do).
    """
    key = "none" if paper_table is None else str(paper_table).strip().lower()
    if key in ("none", "", "null", "false"):
        return None
    if key not in PAPER_TABLE_CHOICES:
        raise ValueError(f"paper_table: expected one of {list(PAPER_TABLE_CHOICES)}, got {paper_table!r}.")
    if key == "auto":
        return detect_paper_table(class_names)
    names = _foreground_names(class_names)
    missing = _missing_classes(names, key)
    if missing:
        accepted = "; ".join(f"{c}: {' / '.join(_CLASS_ALIASES[c])}" for c in missing)
        raise ValueError(
            f"paper_table: {key!r} needs the paper's classes, but the dataset's classes {names} lack "
            f"{missing} (accepted names: {accepted}); set paper_table to 'auto' (the paper's table only for "
            "the paper's classes) or 'none' (a per-class table)."
        )
    return key


def network_label(
    target: str | type | None = None, backbone: str | None = None, definition: Mapping[str, Any] | None = None
) -> str:
    """Row label naming the scored network: its class name and backbone, e.g. ``"L2GNet (resnet50)"``, or for an
    ensemble of folds ``"L2GNet (resnet50), 5 folds"`` (``", mirrored"`` with test-time flips).

    Args:
        target: the network's class or its ``_target_`` path, e.g. ``"l2gnet_monai.networks.L2GNet"``.
        backbone: the encoder's name, if the network has one.
        definition: the network's definition as a plan records it; when given, it names the network instead.
    """
    if definition:
        members = definition.get("network") if str(definition.get("_target_", "")).endswith("FoldEnsemble") else None
        if isinstance(members, Mapping):
            count = int(definition.get("num_members", 1))
            label = network_label(definition=members) + (f", {count} folds" if count > 1 else "")
            return label + (", mirrored" if definition.get("flip_axes") else "")
        return network_label(definition.get("_target_", "network"), definition.get("backbone"))
    name = target.__name__ if isinstance(target, type) else str(target).rsplit(".", 1)[-1]
    return f"{name} ({backbone})" if backbone else name


def _row_name(summary: Mapping[str, Any], name: str | None) -> str:
    return str(name if name is not None else summary.get("method") or _DEFAULT_NAME)


def _unit_text(unit: Any) -> str:
    return {"voxel": "voxels", "mm": "mm"}.get(str(unit), str(unit))


def _check_dataset(dataset: str) -> str:
    key = str(dataset).lower()
    if key not in TABLE_COLUMNS:
        raise ValueError(f"dataset must be one of {sorted(TABLE_COLUMNS)}, got {dataset!r}.")
    return key


def _as_summary(summary: EvaluationResults | Mapping[str, Any]) -> Mapping[str, Any]:
    return summary.summary() if isinstance(summary, EvaluationResults) else summary


def format_table_row(
    summary: EvaluationResults | Mapping[str, Any], dataset: str = "synapse", name: str | None = None
) -> list[str]:
    """Cells of one row in the layout of the paper's Table 1 (Synapse) or Table 2 (ACDC).

    Class columns are matched to the summary's classes by name (e.g. ``"KL"`` <- ``"left kidney"``),
    not by label index: the paper's column order differs from the label order.

    Args:
        summary: an :class:`EvaluationResults` or the dict from :meth:`EvaluationResults.summary` /
            :func:`aggregate`.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name in the first cell; default: the summary's ``method``, else ``"ours"``.

    Returns:
        ``[name, DSC, HD, ...]`` as strings, DSC in percent, all with 2 decimals, in :data:`TABLE_COLUMNS` order.

    Raises:
        ValueError: unknown dataset, or a paper column with no matching class.
    """
    key = _check_dataset(dataset)
    s = _as_summary(summary)
    per_class = s["per_class"]
    cells = [_row_name(s, name), f"{100.0 * s['mean_dsc']:.2f}", f"{s['mean_hd95']:.2f}"]
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
    name: str | None = None,
) -> str:
    """A text table of our row below the paper's published rows (Table 1 or Table 2).

    Args:
        our_summary: our scores (see :func:`format_table_row`); ``None`` prints only the paper's rows.
        dataset: ``"synapse"`` or ``"acdc"``.
        name: the method name of our row; default: the summary's ``method``, else ``"ours"``.

    Returns:
        The table as a multi-line string; the title gives the HD95 unit of the paper's rows and of ours.
    """
    key = _check_dataset(dataset)
    header = ["Method", *TABLE_COLUMNS[key]]
    rows = [[method, *(f"{v:.2f}" for v in values)] for method, values in PAPER_RESULTS[key].items()]
    title = f"{_TABLE_TITLES[key]}; HD95 in voxels (paper's rows)"
    notes = ["Paper rows as published; the TransUNet protocol they follow calls medpy's hd95 without spacing (voxels)."]
    if our_summary is not None:
        s = _as_summary(our_summary)
        row_name = _row_name(s, name)
        rows.append(format_table_row(s, key, row_name))
        unit = s.get("hd95_unit", "unknown unit")
        method = s.get("hd95_method", "unknown method")
        title += f", in {_unit_text(unit)} ({row_name})"
        notes.append(f"{row_name}: {s.get('num_cases', '?')} cases, HD95 in {unit} ({method} definition).")
    return "\n".join([title, *_render(header, rows), *notes])


def format_scores(summary: EvaluationResults | Mapping[str, Any], name: str | None = None) -> str:
    """A per-class table of any dataset's scores: one row per class, then the mean over classes.

    Args:
        summary: an :class:`EvaluationResults` or the dict from :meth:`EvaluationResults.summary`.
        name: the method name in the title; default: the summary's ``method``, else ``"ours"``.

    Returns:
        The table as a multi-line string; the header gives the HD95 unit.
    """
    s = _as_summary(summary)
    row_name = _row_name(s, name)
    unit = _unit_text(s.get("hd95_unit", "unknown unit"))
    method = s.get("hd95_method", "unknown method")
    title = f"{row_name}: mean DSC (%) and mean HD95 ({unit}, {method} definition) per class"
    title += f" over {s.get('num_cases', '?')} cases"
    header = ["Class", "DSC (%)", f"HD95 ({unit})"]
    rows = [[str(c), f"{100.0 * v['dsc']:.2f}", f"{v['hd95']:.2f}"] for c, v in s["per_class"].items()]
    rows.append(["mean", f"{100.0 * s['mean_dsc']:.2f}", f"{s['mean_hd95']:.2f}"])
    return "\n".join([title, *_render(header, rows)])


def format_report(
    summary: EvaluationResults | Mapping[str, Any], paper_table: str | None = "auto", name: str | None = None
) -> str:
    """The paper's table for the paper's classes, a per-class table otherwise.

    Args:
        summary: an :class:`EvaluationResults` or the dict from :meth:`EvaluationResults.summary`.
        paper_table: ``"auto"``, ``"synapse"``, ``"acdc"`` or ``"none"``, see :func:`resolve_paper_table`.
        name: the method name of our row.

    Returns:
        :func:`format_comparison` or :func:`format_scores`.
    """
    s = _as_summary(summary)
    table = resolve_paper_table(paper_table, list(s["per_class"]))
    return format_comparison(s, table, name) if table else format_scores(s, name)
