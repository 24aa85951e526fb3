# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Reading the command line's arguments and input files, with one-line errors (:class:`DatasetError`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from l2gnet_monai.data.errors import DatasetError, one_line

__all__ = ["PAPER_DATASETS", "paper_dataset", "paper_class_names", "read_json_object", "parse_classes", "read_summary"]

#: ``--dataset`` values of ``evaluate``, ``compare`` and ``table``: the classes of the paper's Table 1 and Table 2.
PAPER_DATASETS = ("synapse", "acdc")


def paper_dataset(dataset: Any) -> str:
    """The ``--dataset`` value, lower-cased; a :class:`DatasetError` unless it is one of :data:`PAPER_DATASETS`."""
    key = str(dataset).strip().lower()
    if key not in PAPER_DATASETS:
        raise DatasetError(f"--dataset must be one of {', '.join(PAPER_DATASETS)}, got {dataset!r}")
    return key


def paper_class_names(dataset: str) -> dict[int, str]:
    from l2gnet_monai.evaluation.tables import ACDC_CLASSES, SYNAPSE_CLASSES

    return dict(SYNAPSE_CLASSES if dataset == "synapse" else ACDC_CLASSES)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file's object (an empty dict for a JSON list, e.g. a plain datalist); one line on bad JSON."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON: {one_line(err)}") from err
    return content if isinstance(content, dict) else {}


def parse_classes(classes: Any) -> dict[int, str]:
    """``--classes``: ``{index: name}``, names for 1, 2, ... (a list or a comma-separated string), or a dataset.json."""
    if isinstance(classes, str) and classes.strip().endswith(".json"):
        from l2gnet_monai.data.datalist import dataset_labels

        return dataset_labels(Path(classes.strip()).expanduser())
    if isinstance(classes, str) and classes.strip().startswith("{"):
        try:
            classes = json.loads(classes)
        except json.JSONDecodeError as err:
            raise DatasetError(f"--classes {classes!r} is not a JSON object of index: name ({one_line(err)})") from err
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if isinstance(classes, Mapping):
        try:
            return {int(k): str(v) for k, v in classes.items()}
        except (TypeError, ValueError) as err:
            raise DatasetError(f"--classes: the keys of {dict(classes)!r} must be class indices (integers)") from err
    if isinstance(classes, (list, tuple)) and classes:
        names = [str(c) for c in classes]
        start = 0 if names[0].lower() == "background" else 1
        return {start + i: n for i, n in enumerate(names)}
    raise DatasetError(f"--classes: expected {{index: name}} or names separated by commas, got {classes!r}")


def read_summary(path: Path) -> dict[str, Any]:
    """A ``summary.json`` written by the bundle's evaluation or by ``evaluate``, checked for the table's fields."""
    if not path.is_file():
        raise FileNotFoundError(f"summary file {path} does not exist")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON: {one_line(err)}") from err
    if not isinstance(summary, Mapping):
        raise DatasetError(f"{path} must hold a JSON object (a summary.json of an evaluation)")
    missing = [k for k in ("mean_dsc", "mean_hd95", "per_class") if k not in summary]
    if missing or not isinstance(summary.get("per_class"), Mapping):
        raise DatasetError(
            f"{path} is not an evaluation summary: it lacks {', '.join(missing) or 'a per_class mapping'} "
            "(expected the summary.json written by the bundle's evaluation or by `l2gnet-monai evaluate`)"
        )
    return dict(summary)
