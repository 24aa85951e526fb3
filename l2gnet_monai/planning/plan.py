# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The training plan: what a trained model was trained on, stored beside its weights (as nnU-Net's plans).

Training computes, once, from the dataset (:func:`~l2gnet_monai.planning.dataset.describe_dataset`: ``dataset.json``
and the NIfTI headers, nothing generated) and from its settings, everything that later steps need to use the model::

    {"plan_version": 1, "class_names": {"0": "background", ...}, "num_classes": 3, "modality": "MRI",
     "ct_window": [-125, 275], "slice_size": [224, 224], "slice_axis": 0, "median_spacing": [4.0, 1.2, 1.2],
     "dataset": "/data/my_mri/dataset.json",
     "network": {"_target_": "l2gnet_monai.networks.L2GNet", "out_channels": 3, "backbone": "resnet18", ...}}

and writes it atomically as ``plan.json`` into ``ckpt_dir`` before the first epoch (:func:`save_plan`), also updating
the bundle's ``metadata.json`` so that MONAI Label shows the trained classes. ``inference.json`` and
``evaluate.json`` read it from beside the checkpoint they load (:func:`read_plan`, :func:`planned_network`);
without one (a weights file from elsewhere) they fall back to their own settings.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.geometry import AXIS_NAMES

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "PLAN_FILE",
    "PLAN_VERSION",
    "build_plan",
    "save_plan",
    "read_plan",
    "planned_network",
    "metadata_with_plan",
    "training_overrides",
]

logger = logging.getLogger(__name__)

#: File name of the plan, beside the weights (``models/plan.json``).
PLAN_FILE = "plan.json"
#: Version of the plan's format.
PLAN_VERSION = 1


def _network_record(network: nn.Module) -> dict[str, Any]:
    module = getattr(network, "module", network)  # DistributedDataParallel
    record: dict[str, Any] = {"_target_": f"{type(module).__module__}.{type(module).__qualname__}"}
    record.update(json.loads(json.dumps(getattr(module, "init_args", {}))))
    return record


def build_plan(
    class_names: Mapping[int, str],
    modality: str,
    ct_window: Sequence[float],
    slice_size: Sequence[int],
    slice_axis: int,
    network: nn.Module,
    dataset: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The plan of a training run, from the values its config resolved (the arguments are config keys).

    Args:
        class_names: ``{0: "background", ...}``.
        modality: ``"CT"`` or ``"MRI"``.
        ct_window: the CT intensity window (HU).
        slice_size: the 2-D slice size.
        slice_axis: the RAS axis sliced across.
        network: the network being trained; its ``init_args`` (see :class:`~l2gnet_monai.networks.L2GNet`) are
            recorded, so that inference builds the same network.
        dataset: :func:`describe_dataset`'s result (provenance and median spacing).
        batch_size: the training batch size (slices), which further training of the packaged model keeps.

    Returns:
        The plan, JSON-serialisable.
    """
    from l2gnet_monai import __version__

    names = {int(k): str(v) for k, v in class_names.items()}
    record = _network_record(network)
    if "out_channels" in record and record["out_channels"] != len(names):
        raise DatasetError(
            f"plan: network_def#out_channels is {record['out_channels']} but the dataset declares {len(names)} "
            f"classes {names}; drop the out_channels override or fix the dataset.json 'labels'."
        )
    return {
        "plan_version": PLAN_VERSION,
        "package_version": __version__,
        "class_names": {str(k): names[k] for k in sorted(names)},
        "num_classes": len(names),
        "modality": str(modality),
        "ct_window": [float(v) for v in ct_window],
        "slice_size": [int(s) for s in slice_size],
        "slice_axis": int(slice_axis),
        "median_spacing": list((dataset or {}).get("median_spacing") or []),
        "dataset": str((dataset or {}).get("dataset", "")),
        "batch_size": None if batch_size is None else int(batch_size),
        "network": record,
    }


def _write_json_atomically(path: str, content: Mapping[str, Any]) -> None:
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
    plan: Mapping[str, Any], ckpt_dir: str | os.PathLike, metadata_file: str | os.PathLike | None = None
) -> str:
    """Write ``plan`` as ``ckpt_dir/plan.json`` and, when given, bring ``metadata_file`` in line with it.

    Both files are replaced atomically (a reader sees the old or the new file, never a partial one);
    ``metadata.json`` is rewritten only when its class or input description changes.

    Args:
        plan: :func:`build_plan`'s result.
        ckpt_dir: the folder of the weights.
        metadata_file: the bundle's ``configs/metadata.json``.

    Returns:
        The path of ``plan.json``.
    """
    path = os.path.join(os.fspath(ckpt_dir), PLAN_FILE)
    _write_json_atomically(path, plan)
    logger.info("plan: %s (%d classes, %s, slicing across the %s axis)", path, plan["num_classes"],
                plan["modality"], AXIS_NAMES[int(plan["slice_axis"])])  # fmt: skip
    if metadata_file is not None and os.path.isfile(metadata_file):
        with open(metadata_file) as f:
            metadata = json.load(f)
        updated = metadata_with_plan(metadata, plan)
        if updated != metadata:
            _write_json_atomically(os.fspath(metadata_file), updated)
            logger.info("plan: %s now describes the trained classes.", metadata_file)
    return path


def read_plan(path: str | os.PathLike | None) -> dict[str, Any]:
    """The plan in ``path`` (a ``plan.json``, or the folder holding it), or ``{}`` when there is none.

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
    if not isinstance(plan, dict) or plan.get("plan_version") != PLAN_VERSION:
        raise DatasetError(
            f"plan: {path!r} is not a plan of version {PLAN_VERSION} (plan_version "
            f"{plan.get('plan_version') if isinstance(plan, dict) else None!r}); train again to write one."
        )
    plan["class_names"] = {int(k): str(v) for k, v in plan.get("class_names", {}).items()}
    return plan


def _locate(target: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise DatasetError(f"plan: cannot import the planned network {target!r} ({e}).") from e


def planned_network(
    plan: Mapping[str, Any] | None = None, network: str = "l2gnet_monai.networks.L2GNet", **arguments: Any
) -> nn.Module:
    """The network a plan describes; without a plan, ``network(**arguments)``.

    The plan's arguments win over ``arguments`` (the config's own settings), because the weights to be loaded
    were trained with them; a differing setting is logged.

    Args:
        plan: :func:`read_plan`'s result (``{}`` or ``None``: no plan).
        network: the network class (dotted path) when the plan names none.
        arguments: the config's network arguments.

    Returns:
        The network, on the CPU.
    """
    recorded = dict((plan or {}).get("network") or {})
    target = str(recorded.pop("_target_", network))
    for key, value in recorded.items():
        given = arguments.get(key)
        if key in arguments and json.loads(json.dumps(given)) != value:
            logger.warning("network_def#%s: %r from the config differs from the plan's %r; using the plan's.",
                           key, given, value)  # fmt: skip
    return _locate(target)(**{**arguments, **recorded})


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

    Without ``dataset_dir`` the description of the data comes from the bundle's own ``models/plan.json`` (so that
    MONAI Label's training on its datalist keeps the classes); the network, slice size and batch size are the
    planned ones.
    """
    overrides: dict[str, Any] = {
        "dataset_info#plan_file": f"$@ckpt_dir + '/{PLAN_FILE}'",
        "ct_window": list(plan["ct_window"]),
        "slice_size": list(plan["slice_size"]),
    }
    if plan.get("batch_size"):
        overrides["batch_size"] = int(plan["batch_size"])
    network = dict(plan.get("network") or {})
    network.pop("out_channels", None)  # follows the classes (num_classes)
    overrides.update({f"network_def#{key}": value for key, value in network.items()})
    return overrides
