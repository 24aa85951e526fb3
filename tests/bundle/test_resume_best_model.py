# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``--resume_from latest`` keeps the best model: a worse first validation does not overwrite ``models/model.pt``."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import torch

from tests.bundle.conftest import bundle_workflow, config_files, copy_bundle


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(bundle: Path, phantom: Path, max_epochs: int, label: int, resume: bool) -> tuple[float, int, str]:
    """Train up to ``max_epochs`` at learning rate 0 with a network that predicts ``label`` at every pixel (its
    segmentation head's weights zeroed, the bias favouring ``label``), so that each validation's score is forced.

    Returns:
        the evaluator's best score and its epoch after the run, and the run's log.
    """
    workflow = bundle_workflow(
        config_files(bundle, "train"),
        "train",
        max_epochs=max_epochs,
        learning_rate=0.0,
        phantom_dir=str(phantom),
        resume_from="latest" if resume else None,
    )
    workflow.initialize()
    head = workflow.parser.get_parsed_content("network").segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[label] = 10.0
    log = io.StringIO()
    handler = logging.StreamHandler(log)  # the bundle's logging.conf replaced the root's handlers at initialize
    loggers = [logging.getLogger(), logging.getLogger("monai.handlers.StatsHandler")]  # the latter propagates not
    for logger in loggers:
        logger.addHandler(handler)
    try:
        workflow.run()
        workflow.finalize()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    state = workflow.parser.get_parsed_content("validate#evaluator").state
    return state.best_metric, state.best_metric_epoch, log.getvalue()


def _classes_by_area(bundle: Path, phantom: Path) -> list[int]:
    """The foreground classes of the validation split, from the smallest to the largest number of voxels."""
    workflow = bundle_workflow(config_files(bundle, "train"), "train", phantom_dir=str(phantom))
    workflow.initialize()
    counts = sum(
        torch.bincount(item["label"].as_tensor().long().flatten(), minlength=32)
        for item in workflow.parser.get_parsed_content("validate#dataset")
    )
    present = [int(k) for k in torch.nonzero(counts).flatten() if k > 0]
    return sorted(present, key=lambda k: int(counts[k]))


def test_a_resume_with_a_worse_validation_keeps_the_best_model_and_a_better_one_replaces_it(
    trained_bundle: Path, tmp_path
) -> None:
    bundle = copy_bundle(tmp_path / "l2gnet_segmentation")
    phantom = trained_bundle / "data" / "phantom_smoke"
    best_model = bundle / "models" / "model.pt"
    smallest, *_, largest = _classes_by_area(bundle, phantom)

    first_best, first_epoch, _ = _train(bundle, phantom, max_epochs=1, label=smallest, resume=False)
    assert first_best > 0 and first_epoch == 1
    first_model = _sha256(best_model)

    # the resumed run's first validation predicts background everywhere: a mean Dice of 0, worse than the first
    best, epoch, log = _train(bundle, phantom, max_epochs=2, label=0, resume=True)
    assert "Epoch[2] Metrics -- val_mean_dice: 0.0000" in log
    assert _sha256(best_model) == first_model, "a worse validation after the resume overwrote models/model.pt"
    assert (best, epoch) == (first_best, 1)
    assert f"Key metric: val_mean_dice best value: {first_best} at epoch: 1" in log
    saved = torch.load(bundle / "models" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert saved["best_metric"]["best_metric"] == first_best and saved["best_metric"]["best_metric_epoch"] == 1

    # the largest class everywhere scores better than the smallest: the next best model replaces the first
    best, epoch, log = _train(bundle, phantom, max_epochs=3, label=largest, resume=True)
    assert f"Got new best metric of val_mean_dice: {best}" in log
    assert best > first_best and epoch == 3
    assert _sha256(best_model) != first_model
    weights = torch.load(best_model, map_location="cpu", weights_only=True)["model"]
    assert int(weights["segmentation_head.0.bias"].argmax()) == largest
