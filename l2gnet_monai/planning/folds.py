# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Cross-validation: a stored, seeded k-fold split of a dataset's training cases, and the cases of one fold.

The split lives in ``splits.json`` beside the weights' folders (``models/splits.json``; ``models/fold_K/model.pt``
are the folds' weights), in nnU-Net's ``splits_final.json`` form, a list with one entry per fold::

    [{"train": ["case_001", "case_003", ...], "val": ["case_002", ...]}, ...]

Cases are named by their image file's name without ``.nii.gz``/``.nii`` (``imagesTr/la_003.nii.gz`` is
``la_003``, as nnU-Net names the cases of a Decathlon dataset), so an nnU-Net split of the same data can be copied in
as it is. The file is written once, by the first
fold trained, and read by every later run: the folds of one study, or of two studies of the same data, hold out
the same cases. A split that no longer fits the dataset (cases added or removed) is refused rather than silently
redrawn.

The pool that is split is every case of the ``dataset.json``'s ``training`` list; its ``test`` list, and a
``validation`` list where it has one, stay out of cross-validation: they score the ensemble of the folds, which
trained on every case of the pool between them. A fold's plan records its held-out cases
(:func:`cross_validation_fold`), so evaluating a fold's weights scores the cases that fold never trained on, with
or without ``splits.json``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from l2gnet_monai.data.datalist import load_split
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.plan import _write_json_atomically

__all__ = [
    "SPLITS_FILE",
    "case_id",
    "cross_validation_pool",
    "make_splits",
    "read_splits",
    "ensure_splits",
    "cross_validation_fold",
    "split_cases",
    "fold_dir",
]

#: File name of the stored split, beside the folds' folders.
SPLITS_FILE = "splits.json"

_SUFFIX = re.compile(r"\.nii(\.gz)?$")


def case_id(item: Mapping[str, Any]) -> str:
    """A case's name in ``splits.json``: its image file's name without ``.nii.gz``/``.nii``."""
    return _SUFFIX.sub("", os.path.basename(os.fspath(item["image"])))


def cross_validation_pool(datalist_file: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The cases that cross-validation splits: the ``dataset.json``'s labelled ``training`` list, by case name.

    Raises:
        DatasetError: no training cases, or two cases with the same name.
    """
    pool: dict[str, dict[str, Any]] = {}
    for item in load_split(datalist_file, "training", holdout_fraction=0):
        name = case_id(item)
        if name in pool:
            raise DatasetError(
                f"cross-validation: two cases of {os.fspath(datalist_file)!r} are both named {name!r} "
                f"({pool[name]['image']} and {item['image']}); give the images distinct file names."
            )
        pool[name] = item
    return pool


def make_splits(cases: Sequence[str], num_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """A seeded k-fold split: the sorted cases shuffled with ``seed``, dealt into ``num_folds`` held-out groups.

    Args:
        cases: case names.
        num_folds: number of folds, at least 2 and at most the number of cases.
        seed: seed of the shuffle (NumPy's default generator).

    Returns:
        nnU-Net's form: ``[{"train": [...], "val": [...]}, ...]``, names sorted within each list.

    Raises:
        DatasetError: fewer cases than folds, or fewer than 2 folds.
    """
    names = sorted(set(cases))
    if num_folds < 2 or num_folds > len(names):
        raise DatasetError(
            f"num_folds: {num_folds} folds of {len(names)} cases; choose between 2 and the number of cases."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    held = [sorted(names[i] for i in order[k::num_folds]) for k in range(num_folds)]
    return [{"train": sorted(set(names) - set(val)), "val": val} for val in held]


def read_splits(path: str | os.PathLike) -> list[dict[str, list[str]]]:
    """The folds of a ``splits.json`` (nnU-Net's ``splits_final.json`` form).

    Raises:
        DatasetError: not valid JSON, not a list of ``{"train": [...], "val": [...]}``, or a fold that trains on a
            case it holds out.
    """
    path = os.fspath(path)
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"splits: {path!r} is not valid JSON ({e}).") from e
    if not isinstance(content, list) or not content:
        raise DatasetError(f"splits: {path!r} must hold a list of folds [{{'train': [...], 'val': [...]}}, ...].")
    folds = []
    for k, fold in enumerate(content):
        if not isinstance(fold, Mapping) or not isinstance(fold.get("train"), list) or not fold.get("val"):
            raise DatasetError(f"splits: fold {k} of {path!r} needs a 'train' list and a non-empty 'val' list.")
        train, val = [str(c) for c in fold["train"]], [str(c) for c in fold["val"]]
        if set(train) & set(val):
            raise DatasetError(
                f"splits: fold {k} of {path!r} trains on cases it holds out: {sorted(set(train) & set(val))[:5]}."
            )
        folds.append({"train": train, "val": val})
    return folds


def ensure_splits(
    splits_file: str | os.PathLike, datalist_file: str | os.PathLike, num_folds: int = 5, seed: int = 12345
) -> list[dict[str, list[str]]]:
    """The stored split of ``datalist_file``'s cases, written to ``splits_file`` first if there is none.

    An existing file is reused as it is (its own number of folds and seed), after checking that it splits exactly
    the dataset's current cases.

    Raises:
        DatasetError: the stored split names cases the dataset lacks, or leaves some of its cases out, or has
            another number of folds than ``num_folds``; the message says which and how to start afresh.
    """
    pool = cross_validation_pool(datalist_file)
    path = os.fspath(splits_file)
    if not os.path.isfile(path):
        folds = make_splits(list(pool), num_folds, seed)
        _write_json_atomically(path, folds)
        return folds
    folds = read_splits(path)
    if len(folds) != num_folds:
        raise DatasetError(
            f"splits: {path!r} holds {len(folds)} folds, but num_folds is {num_folds}; pass --num_folds "
            f"{len(folds)} to use it, or give another --splits_file for a new split."
        )
    named = {c for fold in folds for c in fold["train"] + fold["val"]}
    unknown, left_out = sorted(named - set(pool)), sorted(set(pool) - named)
    if unknown or left_out:
        raise DatasetError(
            f"splits: {path!r} does not split the cases of {os.fspath(datalist_file)!r}: "
            + (f"{len(unknown)} it names are not in the dataset {unknown[:5]}" if unknown else "")
            + ("; " if unknown and left_out else "")
            + (f"{len(left_out)} of the dataset are in no fold {left_out[:5]}" if left_out else "")
            + ". The runs made with it would not be comparable with new ones: give another --splits_file (or delete "
            "this one) to draw a new split."
        )
    return folds


def cross_validation_fold(
    fold: int | None,
    datalist_file: str | os.PathLike,
    splits_file: str | os.PathLike,
    num_folds: int = 5,
    seed: int = 12345,
    plan: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The fold a run trains or evaluates: its number, and the cases it trains on and holds out.

    Args:
        fold: ``None`` (no cross-validation) or the fold's number, ``0 <= fold < num_folds``.
        datalist_file: the dataset's ``dataset.json``.
        splits_file: the stored split (written on first use, see :func:`ensure_splits`).
        num_folds: number of folds.
        seed: seed of a new split.
        plan: the plan of the weights being continued or evaluated: its fold wins over ``fold`` (the weights were
            trained on that fold's cases).

    Returns:
        ``None``, or ``{"fold", "num_folds", "splits_file", "train", "val"}`` (case names), as the plan records it.

    Raises:
        DatasetError: ``fold`` out of range, or a split that does not fit (see :func:`ensure_splits`).
    """
    recorded = (plan or {}).get("fold")
    if recorded:
        return dict(recorded)
    if fold is None or str(fold).strip() in ("", "None", "null"):
        return None
    try:
        index = int(fold)
    except (TypeError, ValueError):
        raise DatasetError(f"fold: expected a fold number 0 ... {num_folds - 1}, got {fold!r}.") from None
    if not 0 <= index < int(num_folds):
        raise DatasetError(f"fold: {index} is not one of the {num_folds} folds (0 ... {int(num_folds) - 1}).")
    folds = ensure_splits(splits_file, datalist_file, int(num_folds), int(seed))
    return {
        "fold": index,
        "num_folds": len(folds),
        "splits_file": os.path.abspath(os.fspath(splits_file)),
        "train": list(folds[index]["train"]),
        "val": list(folds[index]["val"]),
    }


def split_cases(
    datalist_file: str | os.PathLike,
    split: str,
    holdout_fraction: float = 0.2,
    fold: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The cases of ``split``: :func:`~l2gnet_monai.data.load_split`'s, or with a fold, the fold's.

    Args:
        datalist_file: the dataset's ``dataset.json``.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        holdout_fraction: see :func:`~l2gnet_monai.data.load_split` (not used with a fold).
        fold: :func:`cross_validation_fold`'s result, or ``None``: then ``training`` is the fold's ``train`` cases
            and ``validation`` its held-out ``val`` cases; ``test`` is the dataset's test list either way.

    Raises:
        DatasetError: a fold's case that the dataset no longer has.
    """
    if not fold or split == "test":
        return load_split(datalist_file, split, holdout_fraction)
    if split not in ("training", "validation"):
        raise DatasetError(f"datalist: unknown split {split!r}; expected 'training', 'validation' or 'test'.")
    pool = cross_validation_pool(datalist_file)
    names = fold["train"] if split == "training" else fold["val"]
    missing = [name for name in names if name not in pool]
    if missing:
        raise DatasetError(
            f"fold {fold.get('fold')}: cases {missing[:5]} of its split are not in {os.fspath(datalist_file)!r}; "
            "the model was trained on another version of the dataset."
        )
    return [pool[name] for name in names]


def fold_dir(models_dir: str | os.PathLike, fold: int | str | None = None) -> str:
    """The folder of a run's weights: ``models_dir`` itself, or ``models_dir/fold_K`` for fold ``K``."""
    if fold is None or str(fold).strip() in ("", "None", "null"):
        return os.fspath(models_dir)
    return os.path.join(os.fspath(models_dir), f"fold_{int(fold)}")
