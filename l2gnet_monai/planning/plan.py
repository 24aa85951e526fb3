# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The training plan: what a model was trained on and with, carried inside its checkpoints (as nnU-Net's plans).

Training computes, once, from the dataset (:func:`~l2gnet_monai.planning.dataset.describe_dataset`: ``dataset.json``
and the NIfTI headers, nothing generated) and from its settings, everything that later steps need to use the model::

    {"plan_version": 2, "class_names": {"0": "background", ...}, "num_classes": 3, "modality": "MRI",
     "ct_window": [-125, 275], "slice_size": [224, 224], "slice_axis": 0, "median_spacing": [4.0, 1.2, 1.2],
     "dataset": {"datalist": "/data/my_mri/dataset.json", "phantom": null},
     "validation_split": "validation", "holdout_fraction": 0.2, "batch_size": 24,
     "network": {"_target_": "l2gnet_monai.networks.L2GNet", "out_channels": 3, "backbone": "resnet18", ...},
     "fold": null}

``"fold"`` is ``{"fold": 2, "num_folds": 5, "train": [...], "val": [...]}`` for a fold of a cross-validation
(:mod:`~l2gnet_monai.planning.folds`); an ensemble of folds (:mod:`~l2gnet_monai.planning.ensemble`) adds
``"ensemble"``: which folds' weights it holds.

**Weights and plan are one artifact.** The plan is an entry of every checkpoint training writes (``"plan"`` beside
``"model"``: :class:`PlanState` in the savers' ``save_dict``), so a ``model.pt`` cannot be paired with another
training's settings. ``plan.json`` and ``metadata.json`` beside ``model.pt`` are readable copies, written once
``model.pt`` holds this run's weights (:class:`~l2gnet_monai.planning.checkpoint.PlanCopy`); whatever loads weights
reads the plan from the checkpoint and refuses a ``plan.json`` that disagrees
(:func:`~l2gnet_monai.planning.checkpoint.trained_plan`). Training never writes into the bundle's ``configs/``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.geometry import AXIS_NAMES
from l2gnet_monai.planning.network import network_definition

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "PLAN_FILE",
    "METADATA_FILE",
    "PLAN_VERSION",
    "WEIGHT_KEYS",
    "build_plan",
    "plan_differences",
    "PlanState",
    "save_plan",
    "read_plan",
    "normalise_plan",
    "planned_setting",
    "metadata_with_plan",
    "training_overrides",
]

logger = logging.getLogger(__name__)

#: File name of the plan's readable copy, beside the weights (``models/plan.json``).
PLAN_FILE = "plan.json"
#: File name of the trained model's metadata, beside the weights (``models/metadata.json``).
METADATA_FILE = "metadata.json"
#: Version of the plan's format.
PLAN_VERSION = 2
#: What the weights depend on: two plans that differ here describe networks that cannot share weights.
WEIGHT_KEYS = ("class_names", "modality", "ct_window", "slice_size", "slice_axis", "network")


def build_plan(
    class_names: Mapping[int, str],
    modality: str,
    ct_window: Sequence[float],
    slice_size: Sequence[int],
    slice_axis: int,
    network: nn.Module,
    dataset: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    validation_split: str = "validation",
    holdout_fraction: float = 0.2,
    fold: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The plan of a training run, from the values its config resolved (the arguments are config keys).

    Args:
        class_names: ``{0: "background", ...}``.
        modality: ``"CT"`` or ``"MRI"``.
        ct_window: the CT intensity window (HU).
        slice_size: the 2-D slice size.
        slice_axis: the RAS axis sliced across.
        network: the network being trained (possibly wrapped in DDP); its whole definition is recorded
            (:func:`~l2gnet_monai.planning.network.network_definition`), so that every later step builds it.
        dataset: :func:`~l2gnet_monai.planning.dataset.describe_dataset`'s result: where the data is (the
            ``dataset.json``, or the phantom's folder and settings) and its median spacing.
        batch_size: the training batch size (slices), which further training of the packaged model keeps.
        validation_split: the datalist key validated on (``validation``, or ``test``).
        holdout_fraction: the fraction of training cases held out for validation when the dataset has no
            ``validation`` list; evaluation holds out the same cases.
        fold: the cross-validation fold trained (:func:`~l2gnet_monai.planning.folds.cross_validation_fold`: its
            number and the cases it trains on and holds out), or ``None``.

    Returns:
        The plan, JSON-serialisable.

    Raises:
        DatasetError: the network's output channels disagree with the classes, or its definition cannot be recorded.
    """
    from l2gnet_monai import __version__

    names = {int(k): str(v) for k, v in class_names.items()}
    record = network_definition(network)
    if "out_channels" in record and record["out_channels"] != len(names):
        raise DatasetError(
            f"plan: network_def#out_channels is {record['out_channels']} but the dataset declares {len(names)} "
            f"classes {names}; drop the out_channels override or fix the dataset.json 'labels'."
        )
    description = dict(dataset or {})
    return {
        "plan_version": PLAN_VERSION,
        "package_version": __version__,
        "class_names": {str(k): names[k] for k in sorted(names)},
        "num_classes": len(names),
        "modality": str(modality),
        "ct_window": [float(v) for v in ct_window],
        "slice_size": [int(s) for s in slice_size],
        "slice_axis": int(slice_axis),
        "median_spacing": [float(s) for s in description.get("median_spacing") or []],
        "dataset": json.loads(json.dumps(description.get("dataset") or {"datalist": None, "phantom": None})),
        "validation_split": str(validation_split),
        "holdout_fraction": float(holdout_fraction),
        "batch_size": None if batch_size is None else int(batch_size),
        "network": record,
        "fold": json.loads(json.dumps(dict(fold))) if fold else None,
    }


def normalise_plan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``plan`` as read back from JSON or a checkpoint: a plain dict with integer ``class_names`` keys.

    Raises:
        DatasetError: not a plan of this version.
    """
    if not isinstance(plan, Mapping) or plan.get("plan_version") != PLAN_VERSION:
        version = plan.get("plan_version") if isinstance(plan, Mapping) else None
        raise DatasetError(
            f"plan: not a plan of version {PLAN_VERSION} (plan_version {version!r}); train again to write one."
        )
    plan = json.loads(json.dumps(dict(plan)))
    plan["class_names"] = {int(k): str(v) for k, v in plan.get("class_names", {}).items()}
    return plan


def planned_setting(plan: Mapping[str, Any] | None, key: str, default: Any) -> Any:
    """A training setting: the plan's (a resumed or further-trained model keeps what it was trained with), else
    ``default`` (the config's, for a new training).

    Args:
        plan: the plan of the weights being continued (``{}``/``None``: a new training).
        key: the plan's key (``slice_size``, ``ct_window``, ``validation_split``, ``holdout_fraction``).
        default: the value for a new training.
    """
    value = (plan or {}).get(key)
    return default if value is None else value


def _canonical(value: Any) -> str:
    if isinstance(value, Mapping):
        value = {str(k): v for k, v in value.items()}
    return json.dumps(value, sort_keys=True)


def plan_differences(plan: Mapping[str, Any], other: Mapping[str, Any], keys: Sequence[str] = WEIGHT_KEYS) -> list:
    """The keys of ``keys`` whose values differ between two plans (class-name keys compared as strings)."""
    return [k for k in keys if _canonical(plan.get(k)) != _canonical(other.get(k))]


def _describe(plan: Mapping[str, Any]) -> str:
    names = ", ".join(str(v) for _, v in sorted((int(k), v) for k, v in dict(plan.get("class_names", {})).items()))
    network = dict(plan.get("network") or {})
    return (
        f"{network.get('_target_', '?').rpartition('.')[2]} ({network.get('backbone', '')}), classes [{names}], "
        f"{plan.get('modality')}, slices {plan.get('slice_size')} across axis {plan.get('slice_axis')}"
    )


class PlanState:
    """The plan as a checkpoint entry (``state_dict``/``load_state_dict``), so weights and plan are saved together.

    In a saver's ``save_dict`` (``"plan": "@plan_state"``) it writes the plan into the checkpoint; in a resume
    loader's ``load_dict`` it checks that the checkpoint was trained with the same plan as this run and refuses it
    otherwise. The plan is stored as plain JSON values, which ``torch.load(..., weights_only=True)`` reads.

    Args:
        plan: :func:`build_plan`'s result for this run.
    """

    def __init__(self, plan: Mapping[str, Any]) -> None:
        self.plan = json.loads(json.dumps({**plan, "class_names": {str(k): v for k, v in plan["class_names"].items()}}))

    def state_dict(self) -> dict[str, Any]:
        """The plan, as JSON values."""
        return json.loads(json.dumps(self.plan))

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Check a checkpoint's plan against this run's.

        Raises:
            DatasetError: the two differ in what the weights depend on (:data:`WEIGHT_KEYS`); the message names both.
        """
        differences = plan_differences(state_dict, self.plan)
        if differences:
            raise DatasetError(
                f"resume: the checkpoint was trained with {_describe(state_dict)}; this run's plan has "
                f"{_describe(self.plan)} (differs in {', '.join(differences)}). Resume without the overrides that "
                "change these, or start a new training in another --ckpt_dir."
            )


def _write_json_atomically(path: str, content: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(content, f, indent=4)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_plan(
    plan: Mapping[str, Any], ckpt_dir: str | os.PathLike, metadata_source: str | os.PathLike | None = None
) -> str:
    """Write ``plan`` as ``ckpt_dir/plan.json`` and the trained model's ``ckpt_dir/metadata.json``.

    The metadata is ``metadata_source`` (the bundle's ``configs/metadata.json``, which is not changed) described
    with the plan's classes, modality and input (:func:`metadata_with_plan`), keeping the ``eval_metrics`` already in
    ``ckpt_dir/metadata.json`` when that file describes the same plan. Both files are replaced atomically.

    Args:
        plan: :func:`build_plan`'s result.
        ckpt_dir: the folder of the weights.
        metadata_source: the bundle's ``configs/metadata.json``.

    Returns:
        The path of ``plan.json``.
    """
    folder = os.fspath(ckpt_dir)
    path = os.path.join(folder, PLAN_FILE)
    plan = json.loads(json.dumps({**plan, "class_names": {str(k): v for k, v in plan["class_names"].items()}}))
    previous = read_plan(path) if os.path.isfile(path) else {}
    _write_json_atomically(path, plan)
    logger.info("plan: %s (%d classes, %s, slicing across the %s axis)", path, plan["num_classes"],
                plan["modality"], AXIS_NAMES[int(plan["slice_axis"])])  # fmt: skip
    if metadata_source is not None and os.path.isfile(metadata_source):
        with open(metadata_source) as f:
            metadata = metadata_with_plan(json.load(f), plan)
        target = os.path.join(folder, METADATA_FILE)
        if previous and not plan_differences(previous, plan) and os.path.isfile(target):
            with open(target) as f:
                metadata["eval_metrics"] = json.load(f).get("eval_metrics", {})
        else:
            metadata["eval_metrics"] = {}
        _write_json_atomically(target, metadata)
    return path


def read_plan(path: str | os.PathLike | None) -> dict[str, Any]:
    """The plan in a ``plan.json`` (or the folder holding one), or ``{}`` when there is none.

    Returns:
        The plan with integer ``class_names`` keys.

    Raises:
        DatasetError: the file is not a plan this version can read.
    """
    if path is None:
        return {}
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, PLAN_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            plan = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"plan: {path!r} is not valid JSON ({e}); delete it or train again.") from e
    try:
        return normalise_plan(plan)
    except DatasetError as e:
        raise DatasetError(f"{path!r}: {e}") from None


def metadata_with_plan(metadata: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` (a bundle's ``metadata.json``) with the classes, modality and slice size of ``plan``.

    ``network_data_format.outputs.pred.channel_def`` is what MONAI Label shows as label names.
    """
    updated = json.loads(json.dumps(metadata))
    names = {int(k): str(v) for k, v in plan["class_names"].items()}
    ct = str(plan["modality"]).upper() == "CT"
    size = [int(s) for s in plan["slice_size"]]
    formats = updated.setdefault("network_data_format", {})
    image = next(iter(formats.setdefault("inputs", {"image": {}}).values()))
    pred = next(iter(formats.setdefault("outputs", {"pred": {}}).values()))
    image.update({"format": "hounsfield" if ct else "magnitude", "modality": "CT" if ct else "MR"})
    image["spatial_shape"] = pred["spatial_shape"] = size
    pred.update({"num_channels": len(names), "channel_def": {str(k): names[k] for k in sorted(names)}})
    low, high = (f"{float(v):g}" for v in plan["ct_window"])
    normalisation = (
        f"CT in Hounsfield units windowed to [{low}, {high}] and scaled to [0, 1] (MRI: per-volume min-max to [0, 1])"
        if ct
        else "MRI scaled per volume (min-max) to [0, 1]"
    )
    axis = AXIS_NAMES[int(plan["slice_axis"])].split()[0]
    updated["image_classes"] = f"single channel data, {normalisation}, {axis} slices resized to {size[0]}x{size[1]}"
    updated["label_classes"] = ", ".join(f"{k} {names[k]}" for k in sorted(names))
    updated["pred_classes"] = f"{len(names)} channels of logits in the label_classes order"
    return updated


def training_overrides(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides that make ``train.json`` continue the planned model (for a packaged, trained bundle).

    The packaged ``train.json`` then takes the classes, modality, slicing, network and batch size from the plan of
    its own ``models/model.pt`` (MONAI Label trains it further on its own datalist, without ``dataset_dir``).
    """
    return {
        "trained_checkpoint": "$@ckpt_dir + '/model.pt'",
        "batch_size": plan.get("batch_size") or 24,
        # a fold's cases are named in its plan; further training (MONAI Label's) uses its own datalist instead
        "cross_validation": None,
    }
