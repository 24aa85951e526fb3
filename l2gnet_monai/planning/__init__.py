# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The plan of a training run and the bundle around the trained model: what later steps read from training.

* :mod:`~l2gnet_monai.planning.geometry`: spacing in RAS order and the slicing axis;
* :mod:`~l2gnet_monai.planning.dataset`: what a dataset is (classes, modality, spacing, slicing axis), from its
  ``dataset.json`` and NIfTI headers, and where a trained model's data is;
* :mod:`~l2gnet_monai.planning.network`: the plan's network definition, built and read back;
* :mod:`~l2gnet_monai.planning.plan`: the plan, carried inside every checkpoint (``PlanState``);
* :mod:`~l2gnet_monai.planning.checkpoint`: the plan read from a checkpoint and checked against its readable copy;
* :mod:`~l2gnet_monai.planning.folds`: cross-validation: the stored split (``splits.json``) and a fold's cases;
* :mod:`~l2gnet_monai.planning.ensemble`: the weights a workflow uses: one model, one fold, or the folds' ensemble;
* :mod:`~l2gnet_monai.planning.weights`: a checkpoint loaded once into the network a server keeps between requests;
* :mod:`~l2gnet_monai.planning.trained_bundle`: a trained bundle opened in Python (network, preprocessing, classes);
* :mod:`~l2gnet_monai.planning.packaging` and :mod:`~l2gnet_monai.planning.install`: the bundle as a model-zoo zip;
* :mod:`~l2gnet_monai.planning.bundle_root`: where the bundle is, and the checkpoint a workflow needs.

May import :mod:`l2gnet_monai.data` (datalists, dataset errors, the phantom's classes) and the network classes a
plan names; nothing from training, inference, evaluation or pictures.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "default_bundle_root": "l2gnet_monai.planning.bundle_root",
    "require_checkpoint": "l2gnet_monai.planning.bundle_root",
    "AXIS_NAMES": "l2gnet_monai.planning.geometry",
    "ras_spacing": "l2gnet_monai.planning.geometry",
    "lowest_resolution_axis": "l2gnet_monai.planning.geometry",
    "describe_dataset": "l2gnet_monai.planning.dataset",
    "dataset_datalist": "l2gnet_monai.planning.dataset",
    "evaluation_split": "l2gnet_monai.planning.dataset",
    "check_slice_axis": "l2gnet_monai.planning.dataset",
    "DEFAULT_NETWORK": "l2gnet_monai.planning.network",
    "planned_network": "l2gnet_monai.planning.network",
    "build_network": "l2gnet_monai.planning.network",
    "network_definition": "l2gnet_monai.planning.network",
    "PLAN_FILE": "l2gnet_monai.planning.plan",
    "METADATA_FILE": "l2gnet_monai.planning.plan",
    "PLAN_VERSION": "l2gnet_monai.planning.plan",
    "WEIGHT_KEYS": "l2gnet_monai.planning.plan",
    "build_plan": "l2gnet_monai.planning.plan",
    "plan_differences": "l2gnet_monai.planning.plan",
    "PlanState": "l2gnet_monai.planning.plan",
    "save_plan": "l2gnet_monai.planning.plan",
    "read_plan": "l2gnet_monai.planning.plan",
    "normalise_plan": "l2gnet_monai.planning.plan",
    "planned_setting": "l2gnet_monai.planning.plan",
    "metadata_with_plan": "l2gnet_monai.planning.plan",
    "training_overrides": "l2gnet_monai.planning.plan",
    "checkpoint_plan": "l2gnet_monai.planning.checkpoint",
    "trained_plan": "l2gnet_monai.planning.checkpoint",
    "PlanCopy": "l2gnet_monai.planning.checkpoint",
    "record_scores": "l2gnet_monai.planning.checkpoint",
    "ReusingCheckpointLoader": "l2gnet_monai.planning.weights",
    "load_bundle": "l2gnet_monai.planning.trained_bundle",
    "SPLITS_FILE": "l2gnet_monai.planning.folds",
    "case_id": "l2gnet_monai.planning.folds",
    "cross_validation_pool": "l2gnet_monai.planning.folds",
    "make_splits": "l2gnet_monai.planning.folds",
    "read_splits": "l2gnet_monai.planning.folds",
    "ensure_splits": "l2gnet_monai.planning.folds",
    "cross_validation_fold": "l2gnet_monai.planning.folds",
    "split_cases": "l2gnet_monai.planning.folds",
    "fold_dir": "l2gnet_monai.planning.folds",
    "ENSEMBLE_NETWORK": "l2gnet_monai.planning.ensemble",
    "parse_folds": "l2gnet_monai.planning.ensemble",
    "fold_checkpoints": "l2gnet_monai.planning.ensemble",
    "ensemble_checkpoint": "l2gnet_monai.planning.ensemble",
    "trained_model_file": "l2gnet_monai.planning.ensemble",
    "BundleError": "l2gnet_monai.planning.packaging",
    "DEFAULT_BUNDLE_NAME": "l2gnet_monai.planning.packaging",
    "OVERRIDE_TARGETS": "l2gnet_monai.planning.packaging",
    "REQUIRED_CONFIGS": "l2gnet_monai.planning.packaging",
    "merge_overrides": "l2gnet_monai.planning.packaging",
    "package_bundle": "l2gnet_monai.planning.packaging",
    "read_metadata": "l2gnet_monai.planning.packaging",
    "check_archive": "l2gnet_monai.planning.install",
    "install_bundle": "l2gnet_monai.planning.install",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
