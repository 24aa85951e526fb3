# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Runs that can be repeated: validation only observes the training, and an epoch is a fixed number of iterations."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.bundle.conftest import config_files, copy_bundle, run_workflow

#: short epochs for these tests: 4 epochs of 2 iterations
ITERATIONS_PER_EPOCH = 2


def _final_weights(bundle: Path, phantom: Path, **override) -> dict[str, torch.Tensor]:
    run_workflow(
        config_files(bundle, "train"),
        "train",
        phantom_dir=str(phantom),
        iterations_per_epoch=ITERATIONS_PER_EPOCH,
        **override,
    )
    return torch.load(bundle / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)["model"]


def test_validating_every_epoch_or_every_fourth_trains_the_same_weights(trained_bundle: Path, tmp_path) -> None:
    """Validation (its data loader, inferer, pictures and best-model saver) draws nothing from the training's random
    generators: the same iterations give bit-identical weights, codebook and batch-norm statistics."""
    phantom = trained_bundle / "data" / "phantom_smoke"
    every_epoch = _final_weights(copy_bundle(tmp_path / "every"), phantom, max_epochs=4, val_interval=1)
    every_fourth = _final_weights(copy_bundle(tmp_path / "fourth"), phantom, max_epochs=4, val_interval=4)
    assert every_epoch.keys() == every_fourth.keys()
    for key, value in every_epoch.items():
        torch.testing.assert_close(every_fourth[key], value, rtol=0, atol=0, msg=f"{key} differs")


def test_datasets_sliced_along_different_axes_train_the_same_iterations_per_epoch(
    trained_bundle: Path, tmp_path
) -> None:
    """An epoch is ``iterations_per_epoch`` iterations, however many slices the slicing axis gives: the smoke
    phantom has 36 axial slices (4 batches of 8) and 192 sagittal ones (24 batches); both train 3 iterations per
    epoch, continue through the slices across epochs, and the poly schedule ends at 0 after ``2 * 3``."""
    phantom = trained_bundle / "data" / "phantom_smoke"
    batches = {}
    for axis in (2, 0):
        bundle = copy_bundle(tmp_path / f"axis{axis}")
        workflow = run_workflow(
            config_files(bundle, "train"),
            "train",
            phantom_dir=str(phantom),
            slice_axis=axis,
            iterations_per_epoch=3,
            max_epochs=2,
            val_interval=100,
        )
        batches[axis] = len(workflow.parser.get_parsed_content("train#dataloader"))
        final = torch.load(bundle / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
        assert final["trainer"]["epoch_length"] == 3 and final["trainer"]["iteration"] == 6, (axis, final["trainer"])
        assert final["lr_scheduler"]["total_iters"] == 6 and final["optimizer"]["param_groups"][0]["lr"] == 0.0
    assert batches == {2: 4, 0: 24}
