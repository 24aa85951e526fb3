# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The weights a workflow uses: one model, one fold, or an ensemble of folds written as one checkpoint.

An ensemble (:class:`~l2gnet_monai.networks.FoldEnsemble`: the folds' softmax averaged, optionally over mirrored
inputs) is written once as an ordinary trained model, ``models/ensemble_0-1-2-3-4/model.pt`` with its plan
(``"network"``: the ensemble's definition, ``"ensemble"``: which folds' weights, by SHA-256) and its readable copies.
Every later step treats it like any other ``model.pt``: evaluation and inference build the plan's network and load
the weights, ``package-bundle`` ships it, MONAI Label serves it. It is written again when a fold's weights change.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from l2gnet_monai._files import file_sha256
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.checkpoint import checkpoint_plan, trained_plan
from l2gnet_monai.planning.folds import fold_dir
from l2gnet_monai.planning.plan import WEIGHT_KEYS, plan_differences, save_plan

__all__ = ["ENSEMBLE_NETWORK", "parse_folds", "fold_checkpoints", "ensemble_checkpoint", "trained_model_file"]

logger = logging.getLogger(__name__)

#: The class of an ensemble's network.
ENSEMBLE_NETWORK = "l2gnet_monai.networks.FoldEnsemble"

_NONE = ("", "none", "null")


def parse_folds(folds: Any) -> list[int] | str | None:
    """``--folds`` as given on a command line: ``None``, ``"all"``, ``3``, ``"0,2"``, ``(0, 2)`` or ``[0, 2]``.

    Returns:
        ``None`` (no ensemble), ``"all"``, or the sorted fold numbers.

    Raises:
        DatasetError: anything else.
    """
    if folds is None or (isinstance(folds, str) and folds.strip().lower() in _NONE):
        return None
    if isinstance(folds, str) and folds.strip().lower() == "all":
        return "all"
    items = folds.replace("[", "").replace("]", "").split(",") if isinstance(folds, str) else folds
    if isinstance(items, int):
        items = [items]
    try:
        numbers = sorted({int(str(item).strip()) for item in items if str(item).strip()})
    except (TypeError, ValueError):
        numbers = []
    if not numbers or min(numbers) < 0:
        raise DatasetError(f"folds: expected 'all' or fold numbers such as 0,1,2, got {folds!r}.")
    return numbers


def fold_checkpoints(models_dir: str | os.PathLike, folds: Any) -> list[tuple[int, str]]:
    """The trained folds' ``model.pt`` files: ``(fold, path)`` for each fold of ``folds``.

    Args:
        models_dir: the folder holding ``fold_K/`` (``models/``).
        folds: ``"all"`` (every fold of the split, all of which must be trained) or fold numbers.

    Raises:
        DatasetError: no trained fold, a fold that is not trained, or with ``"all"`` a split whose folds are not
            all trained; the message names the missing ``model.pt`` files.
    """
    selected = parse_folds(folds)
    if selected is None:
        raise DatasetError("folds: no folds given.")
    root = os.fspath(models_dir)
    if selected == "all":
        folders = os.listdir(root) if os.path.isdir(root) else []
        trained = sorted(
            int(name[5:])
            for name in folders
            if name.startswith("fold_") and name[5:].isdigit() and os.path.isfile(os.path.join(root, name, "model.pt"))
        )
        if not trained:
            raise DatasetError(f"folds: {root!r} holds no trained fold (fold_K/model.pt); train with --fold K first.")
        fold = trained_plan(os.path.join(fold_dir(root, trained[0]), "model.pt")).get("fold") or {}
        selected = list(range(int(fold.get("num_folds", len(trained)))))
    paths = [(k, os.path.join(fold_dir(root, k), "model.pt")) for k in selected]
    missing = [path for _, path in paths if not os.path.isfile(path)]
    if missing:
        raise DatasetError(
            f"folds: {len(missing)} of the folds {selected} are not trained ({', '.join(missing)}); train them with "
            "--fold K, or name the trained ones with --folds 0,1,..."
        )
    return paths


def _member_record(fold: int, path: str) -> dict[str, Any]:
    stat = os.stat(path)
    return {"fold": fold, "checkpoint": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _same_members(existing: dict[str, Any], members: list[dict[str, Any]], flips: bool) -> bool:
    recorded = existing.get("ensemble") or {}
    keys = ("fold", "checkpoint", "size", "mtime_ns")
    old = [{k: m.get(k) for k in keys} for m in recorded.get("members", [])]
    return bool(recorded.get("test_time_flips")) == flips and old == [{k: m[k] for k in keys} for m in members]


def ensemble_checkpoint(
    models_dir: str | os.PathLike,
    folds: Any = "all",
    test_time_flips: bool = False,
    metadata_source: str | os.PathLike | None = None,
) -> str:
    """The checkpoint of the ensemble of ``folds`` (written, or rewritten when a fold's weights changed).

    Args:
        models_dir: the folder holding the folds' ``fold_K/model.pt``.
        folds: ``"all"`` or fold numbers (see :func:`fold_checkpoints`).
        test_time_flips: also average over the inputs mirrored along the slice's axes.
        metadata_source: the bundle's ``configs/metadata.json``, for the ensemble's ``metadata.json``.

    Returns:
        The path of the ensemble's ``model.pt``.

    Raises:
        DatasetError: a fold is missing, or the folds were trained with different settings or data.
    """

    checkpoints = fold_checkpoints(models_dir, folds)
    plans = [trained_plan(path) for _, path in checkpoints]
    first = plans[0]
    if not first:
        raise DatasetError(f"folds: {checkpoints[0][1]} carries no plan; ensembles are made of folds training wrote.")
    for (fold, path), plan in zip(checkpoints, plans):
        recorded = (plan.get("fold") or {}).get("fold")
        if recorded != fold:
            raise DatasetError(f"folds: {path} holds the weights of fold {recorded!r}, not of fold {fold}.")
        differences = plan_differences(plan, first, (*WEIGHT_KEYS, "dataset"))
        if differences:
            raise DatasetError(
                f"folds: {path} was trained with other settings than {checkpoints[0][1]} (they differ in "
                f"{', '.join(differences)}); only folds of one training configuration can be ensembled."
            )
    name = "ensemble_" + "-".join(str(k) for k, _ in checkpoints) + ("_flips" if test_time_flips else "")
    return _write_ensemble(
        os.path.join(os.fspath(models_dir), name), first, checkpoints, test_time_flips, metadata_source
    )


def _write_ensemble(
    folder: str,
    member_plan: dict[str, Any],
    checkpoints: list[tuple[int, str]],
    test_time_flips: bool,
    metadata_source: str | os.PathLike | None,
) -> str:
    """``folder/model.pt``: the members' weights as one :class:`~l2gnet_monai.networks.FoldEnsemble`, and its plan.

    Kept as it is when it already holds these members' current files.
    """
    import torch

    target = os.path.join(folder, "model.pt")
    members = [_member_record(k, path) for k, path in checkpoints]
    if os.path.isfile(target) and _same_members(checkpoint_plan(target), members, bool(test_time_flips)):
        return target
    for member in members:
        member["sha256"] = file_sha256(member["checkpoint"])
    plan = json.loads(
        json.dumps({**member_plan, "class_names": {str(k): v for k, v in member_plan["class_names"].items()}})
    )
    spatial_dims = int(member_plan["network"].get("spatial_dims", 2))
    plan["network"] = {
        "_target_": ENSEMBLE_NETWORK,
        "network": dict(member_plan["network"]),
        "num_members": len(members),
        "flip_axes": list(range(spatial_dims)) if test_time_flips else [],
    }
    if len(members) > 1:  # trained, together, on every case of the split: no held-out cases of its own
        plan["fold"] = None
    plan["ensemble"] = {"folds": [k for k, _ in checkpoints] if member_plan.get("fold") else [],
                        "test_time_flips": bool(test_time_flips), "members": members}  # fmt: skip
    state: dict[str, Any] = {}
    for index, (_, path) in enumerate(checkpoints):
        weights = torch.load(path, map_location="cpu", weights_only=True)
        weights = weights.get("model", weights)
        state.update({f"members.{index}.{key}": value for key, value in weights.items()})
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".model.pt.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save({"model": state, "plan": plan}, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    save_plan(plan, folder, metadata_source)
    logger.info("ensemble: %s (%d member(s)%s)", target, len(members), ", mirrored inputs" if test_time_flips else "")
    return target


def trained_model_file(
    ckpt_dir: str | os.PathLike,
    models_dir: str | os.PathLike | None = None,
    folds: Any = None,
    test_time_flips: bool = False,
    metadata_source: str | os.PathLike | None = None,
) -> str:
    """The ``model.pt`` a workflow evaluates or runs: ``ckpt_dir/model.pt``, or an ensemble's.

    Args:
        ckpt_dir: the folder of the model (``models/``, or ``models/fold_K`` for one fold).
        models_dir: the folder of the folds, for ``folds``.
        folds: ``None`` (the model in ``ckpt_dir``), ``"all"`` or fold numbers (their ensemble).
        test_time_flips: average over mirrored inputs too (one model: an ensemble of itself).
        metadata_source: the bundle's ``configs/metadata.json``, for an ensemble's ``metadata.json``.
    """
    if parse_folds(folds) is not None:
        return ensemble_checkpoint(models_dir or ckpt_dir, folds, test_time_flips, metadata_source)
    model = os.path.join(os.fspath(ckpt_dir), "model.pt")
    if not test_time_flips:
        return model
    plan = trained_plan(model)
    if not plan:
        raise DatasetError(f"test_time_flips: {model} does not exist or carries no plan (train it with the bundle).")
    fold = (plan.get("fold") or {}).get("fold", 0)
    return _write_ensemble(os.path.join(os.fspath(ckpt_dir), "flips"), plan, [(fold, model)], True, metadata_source)
