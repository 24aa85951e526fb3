# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Which converter a downloaded dataset needs: layout detection and the ``prepare`` dispatch.

The converters (:mod:`l2gnet_monai.data.synapse`, :mod:`l2gnet_monai.data.acdc`) build on the shared MSD writer of
:mod:`l2gnet_monai.data.msd`; this module sits above all three, so that none of them imports another's caller.
"""

from __future__ import annotations

import logging
from pathlib import Path

from l2gnet_monai.data.acdc import locate_acdc, prepare_acdc
from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.synapse import (
    locate_synapse_raw,
    locate_synapse_transunet,
    prepare_synapse_raw,
    prepare_synapse_transunet,
)

__all__ = ["LAYOUTS", "is_msd_dataset", "detect_layout", "prepare_dataset"]

logger = logging.getLogger(__name__)

#: Layout names understood by :func:`detect_layout` and :func:`prepare_dataset`.
LAYOUTS = ("synapse-raw", "synapse-transunet", "acdc", "msd")


def is_msd_dataset(path: Path | str) -> bool:
    """Whether ``path`` is an already-converted dataset (``dataset.json`` next to ``imagesTr/``)."""
    path = Path(path)
    return (path / "dataset.json").is_file() and (path / "imagesTr").is_dir()


def _layout_roots(path: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if is_msd_dataset(path):
        found["msd"] = path
    for layout, locate in (
        ("synapse-raw", locate_synapse_raw),
        ("synapse-transunet", locate_synapse_transunet),
        ("acdc", locate_acdc),
    ):
        root = locate(path)
        if root is not None:
            found[layout] = root
    return found


_LOOKED_FOR = (
    "synapse-raw (RawData/Training/img/img*.nii.gz with RawData/Training/label/), "
    "synapse-transunet (train_npz/case*_slice*.npz and/or test_vol_h5/case*.npy.h5), "
    "acdc (training/ or testing/ or a flat folder of patientNNN/ folders holding Info.cfg and "
    "patientNNN_frameNN.nii.gz), msd (dataset.json with imagesTr/)"
)


def detect_layout(path: Path | str) -> str:
    """Recognise the layout of a dataset folder.

    Args:
        path: the folder a user downloaded or unpacked (for Synapse raw it may also be ``RawData/`` or
            ``RawData/Training/``; for ACDC the folder holding ``training/``/``testing/``, or one of them).

    Returns:
        One of :data:`LAYOUTS`: ``"synapse-raw"``, ``"synapse-transunet"``, ``"acdc"`` or ``"msd"``.

    Raises:
        DatasetError: ``path`` is missing, matches no known layout (the message says which layouts were looked
            for and what was found), or matches several.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist or is not a folder")
    found = _layout_roots(path)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        shown = ", ".join(entries[:15]) + (f", ... ({len(entries)} entries)" if len(entries) > 15 else "")
        raise DatasetError(
            f"{path} is in none of the known layouts; looked for {_LOOKED_FOR}; found: {shown or 'an empty folder'}"
        )
    raise DatasetError(
        f"{path} matches several layouts ({', '.join(sorted(found))}); choose one explicitly with layout=..."
    )


def prepare_dataset(
    src: Path | str,
    dst: Path | str,
    layout: str = "auto",
    overwrite: bool = False,
    allow_missing: bool = False,
) -> Path:
    """Convert a dataset from one of the supported layouts into the MSD layout the bundle reads.

    Args:
        src: the source folder.
        dst: the output folder (created; must not exist or be empty unless ``overwrite``).
        layout: ``"auto"`` (see :func:`detect_layout`), ``"synapse-raw"``, ``"synapse-transunet"`` or ``"acdc"``.
        overwrite: replace a non-empty ``dst``.
        allow_missing: convert what exists of a partial download instead of failing on missing protocol cases.

    Returns:
        The output folder (holding ``dataset.json``).

    Raises:
        DatasetError: bad input; nothing is written.
    """
    converters = {
        "synapse-raw": prepare_synapse_raw,
        "synapse-transunet": prepare_synapse_transunet,
        "acdc": prepare_acdc,
    }
    if layout == "auto":
        layout = detect_layout(src)
        logger.info("detected layout: %s", layout)
    if layout == "msd":
        raise DatasetError(
            f"{src} is already a converted dataset (dataset.json with imagesTr/): use it directly as the bundle's "
            "dataset_dir, there is nothing to prepare"
        )
    if layout not in converters:
        raise DatasetError(f"unknown layout {layout!r}; choose auto, {', '.join(converters)}")
    return converters[layout](src, dst, overwrite=overwrite, allow_missing=allow_missing)
