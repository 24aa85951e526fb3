# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A trained bundle opened in Python: its network with the trained weights, preprocessing and classes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_bundle"]


def load_bundle(bundle_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A trained bundle's network (eval mode, weights loaded), preprocessing, modality and class names.

    Args:
        bundle_dir: the bundle folder (``configs/inference.json``, ``models/model.pt``).
        overrides: config override files merged over ``inference.json`` in order. Not needed for a bundle trained
            with this version: ``inference.json`` reads the training plan (``models/plan.json``: classes, slicing
            axis, network settings) beside the checkpoint.

    Returns:
        ``{"network", "preprocessing", "modality", "class_names", "slice_axis"}``.

    Raises:
        FileNotFoundError: no inference config, override file or checkpoint.
        ValueError: the checkpoint does not fit the configured network (the message names the mismatch).
    """
    from monai.bundle import ConfigParser

    bundle = Path(bundle_dir).expanduser()
    config = bundle / "configs" / "inference.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} does not exist: expected a MONAI bundle folder with configs/inference.json")
    files = [str(config)]
    for override in overrides:
        if not Path(override).is_file():
            raise FileNotFoundError(f"override file {override} does not exist")
        files.append(str(override))
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(bundle)
    checkpoint = Path(parser.get_parsed_content("ckpt_path"))
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist: train the bundle first")
    network = parser.get_parsed_content("network_def")
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, Mapping) else state
    try:
        network.load_state_dict(state)
    except RuntimeError as err:  # L2GNet's CheckpointMismatchError names the mismatch and the fix
        raise ValueError(f"checkpoint {checkpoint}: {str(err).strip()}") from err
    # the classes the model was trained on: the plan beside the checkpoint (inference.json reads it)
    class_names = {int(k): str(v) for k, v in parser.get_parsed_content("class_names").items() if int(k) != 0}
    return {
        "network": network.eval(),
        "preprocessing": parser.get_parsed_content("preprocessing"),
        "modality": str(parser.get_parsed_content("modality")),
        "class_names": class_names,
        "slice_axis": int(parser.get_parsed_content("slice_axis")),
    }
