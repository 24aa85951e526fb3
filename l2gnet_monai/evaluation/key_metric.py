# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The key metric of an evaluator, named after the split it scores (``test_mean_dice``, ``validation_mean_dice``)."""

from __future__ import annotations

from monai.handlers import MeanDice, from_engine

__all__ = ["mean_dice_metric"]


def mean_dice_metric(split: str, include_background: bool = False) -> dict[str, MeanDice]:
    """``{"<split>_mean_dice": MeanDice(...)}``: an evaluator's ``key_val_metric`` whose logs say which cases it scored.

    Args:
        split: the datalist key scored (``test``, ``validation``, ``training``).
        include_background: score the background class too.
    """
    metric = MeanDice(include_background=include_background, output_transform=from_engine(["pred", "label"]))
    return {f"{split}_mean_dice": metric}
