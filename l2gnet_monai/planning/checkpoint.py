# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The plan inside a checkpoint: read it, check the readable copies beside it, write those copies, record scores.

* :func:`checkpoint_plan`: the plan a checkpoint carries (``{}`` for a plain state dict from elsewhere);
* :func:`trained_plan`: the same, refused when a ``plan.json`` beside the weights disagrees with it (what every
  step that loads weights uses: inference, evaluation, ``ckpt_export``, ``explain``, packaging, MONAI Label);
* :class:`PlanCopy`: writes ``plan.json`` and ``metadata.json`` beside ``model.pt`` once ``model.pt`` holds this
  run's weights, so the readable copies never describe other weights;
* :func:`record_scores`: an evaluation's scores into the trained model's ``metadata.json`` (``eval_metrics``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

from ignite.engine import Engine, Events

from l2gnet_monai._files import file_sha256
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.plan import (
    METADATA_FILE,
    PLAN_FILE,
    _write_json_atomically,
    normalise_plan,
    plan_differences,
    read_plan,
    save_plan,
)

__all__ = ["checkpoint_plan", "trained_plan", "PlanCopy", "record_scores"]

logger = logging.getLogger(__name__)

#: Everything a plan holds: a readable copy must equal its checkpoint's plan in all of it.
_ALL_KEYS = (
    *("class_names", "modality", "ct_window", "slice_size", "slice_axis", "network", "dataset", "batch_size"),
    *("fold", "ensemble"),
)


#: Plans read from checkpoint files, by file (path, inode, size, modification time): one per file.
_PLANS: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def checkpoint_plan(path: str | os.PathLike | None) -> dict[str, Any]:
    """The plan that a checkpoint written by training carries, or ``{}`` (no file, or weights from elsewhere).

    Reads the file memory-mapped: the tensors are not loaded. The plan is remembered for the file as long as it is
    not replaced or rewritten (same inode, size and modification time), so that a server running
    ``inference.json`` per request does not open the checkpoint every time; a copy is returned.

    Raises:
        DatasetError: the file is not a checkpoint ``torch.load(weights_only=True)`` reads, or its plan is of
            another version.
    """
    if path is None or not os.path.isfile(path):
        return {}
    key = os.path.abspath(os.fspath(path))
    status = os.stat(key)
    stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
    known = _PLANS.get(key)
    if known is None or known[0] != stamp:
        known = _PLANS[key] = (stamp, _read_checkpoint_plan(path))
    return deepcopy(known[1])


def _read_checkpoint_plan(path: str | os.PathLike) -> dict[str, Any]:
    import torch

    try:
        checkpoint = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise DatasetError(
            f"checkpoint: {os.fspath(path)!r} does not load with torch.load(weights_only=True) "
            f"({' '.join(str(e).split())[:200]})."
        ) from e
    plan = checkpoint.get("plan") if isinstance(checkpoint, Mapping) else None
    if not plan:
        return {}
    try:
        return normalise_plan(plan)
    except DatasetError as e:
        raise DatasetError(f"checkpoint {os.fspath(path)!r}: {e}") from None


def trained_plan(checkpoint: str | os.PathLike | None, described: str = "model.pt") -> dict[str, Any]:
    """The plan of the weights in ``checkpoint``, checked against the ``plan.json`` beside it.

    Args:
        checkpoint: the weights (``models/model.pt``, or a resumable checkpoint); a missing file or ``None`` gives
            ``{}`` (the workflow's own checkpoint check then names it).
        described: the file that ``plan.json`` describes: only that checkpoint is checked against it (a
            ``checkpoint_latest.pt`` can be newer than the best model).

    Returns:
        The checkpoint's plan, or ``{}`` for weights without one and no ``plan.json`` beside them (weights from
        elsewhere: the config's own settings apply).

    Raises:
        DatasetError: ``plan.json`` describes other settings than the checkpoint's plan, or describes a training
            although the checkpoint carries no plan; the message names both files.
    """
    if checkpoint is None or not os.path.isfile(checkpoint):
        return {}
    checkpoint = os.fspath(checkpoint)
    plan = checkpoint_plan(checkpoint)
    copy_path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), PLAN_FILE)
    if os.path.basename(checkpoint) != described:
        return plan
    copy = read_plan(copy_path)
    if copy and not plan:
        raise DatasetError(
            f"plan: {copy_path} describes a training, but {checkpoint} carries no plan, so it was not written by that "
            f"training. Use weights that training wrote, or remove {PLAN_FILE} to use these weights with the config's "
            "own settings."
        )
    differences = plan_differences(plan, copy, _ALL_KEYS) if copy else []
    if differences:
        raise DatasetError(
            f"plan: {copy_path} disagrees with the plan inside {checkpoint} in {', '.join(differences)} "
            f"({differences[0]}: {copy.get(differences[0])!r} against {plan.get(differences[0])!r}); the weights "
            f"were trained with the checkpoint's. Delete {PLAN_FILE} (training writes it again) or use the weights "
            "it belongs to."
        )
    return plan


class PlanCopy:
    """Writes the readable copies of this run's plan beside its best model, once that model holds this run's weights.

    Attach it to the evaluator after the best-model saver (the bundle's ``validate#handlers``): after each
    validation it reads the plan inside ``model.pt`` and, when it is this run's plan, writes ``plan.json`` and the
    trained model's ``metadata.json`` (:func:`~l2gnet_monai.planning.plan.save_plan`) if they differ. A new training
    in a folder that still holds another training's ``model.pt`` leaves that model's copies alone until it replaces
    the weights. The bundle's own ``configs/`` is never written.

    Args:
        plan: this run's plan.
        ckpt_dir: the folder of ``model.pt``.
        metadata_source: the bundle's ``configs/metadata.json`` (read only).
        model_file: the best model's file name in ``ckpt_dir``.
    """

    def __init__(
        self,
        plan: Mapping[str, Any],
        ckpt_dir: str | os.PathLike,
        metadata_source: str | os.PathLike | None = None,
        model_file: str = "model.pt",
    ) -> None:
        self.plan = json.loads(json.dumps({**plan, "class_names": {str(k): v for k, v in plan["class_names"].items()}}))
        self.ckpt_dir = os.fspath(ckpt_dir)
        self.metadata_source = metadata_source
        self.model_file = model_file

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        model = os.path.join(self.ckpt_dir, self.model_file)
        if plan_differences(checkpoint_plan(model), self.plan, _ALL_KEYS):
            return  # no model.pt yet, or another training's
        copy = read_plan(os.path.join(self.ckpt_dir, PLAN_FILE))
        if copy and not plan_differences(copy, self.plan, _ALL_KEYS):
            return
        save_plan(self.plan, self.ckpt_dir, self.metadata_source)


def record_scores(
    checkpoint: str | os.PathLike, scores: Mapping[str, Any], split: str, prefix: str = "mean"
) -> dict[str, Any]:
    """Put an evaluation's scores into the ``eval_metrics`` of the trained model's ``metadata.json``.

    Only the scores of the weights ``metadata.json`` describes are recorded: ``checkpoint`` must carry the same plan
    as the ``plan.json`` beside it, and the scores are stored with its SHA-256.

    Args:
        checkpoint: the evaluated weights (``models/model.pt``).
        scores: the evaluator's metrics (``mean_dsc``, ``mean_hd95``, ...).
        split: the datalist key that was scored (``test``, ``validation``).
        prefix: which metrics to take: those whose name starts with it.

    Returns:
        The recorded ``eval_metrics`` (``{}`` when ``metadata.json`` describes other weights or is missing).
    """
    folder = os.path.dirname(os.path.abspath(checkpoint))
    target = os.path.join(folder, METADATA_FILE)
    plan, copy = checkpoint_plan(checkpoint), read_plan(os.path.join(folder, PLAN_FILE))
    if not os.path.isfile(target) or not plan or not copy or plan_differences(plan, copy, _ALL_KEYS):
        return {}
    with open(target) as f:
        metadata = json.load(f)
    recorded = {f"{split}_{k}": round(float(v), 6) for k, v in scores.items() if str(k).startswith(prefix)}
    recorded["checkpoint_sha256"] = file_sha256(checkpoint)
    metadata["eval_metrics"] = recorded
    _write_json_atomically(target, metadata)
    logger.info("%s: eval_metrics %s", target, recorded)
    return recorded
