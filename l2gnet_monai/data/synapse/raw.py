# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The BTCV "RawData" release (``synapse-raw``) converted to the MSD layout, labels mapped to the paper's 8 organs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.data.msd import (
    MSDWriter,
    check_same_grid,
    image_array,
    label_array,
    new_nifti,
    nifti_path,
    read_nifti,
    relative_path,
    source_folder,
)
from l2gnet_monai.data.synapse.protocol import (
    BTCV_LABELS,
    BTCV_TO_SYNAPSE,
    DESCRIPTION,
    REFERENCE,
    SOURCE_NOTE,
    SYNAPSE_LABELS,
    SYNAPSE_TEST_CASES,
    SYNAPSE_TRAIN_CASES,
    btcv_to_synapse,
    split_cases,
)

__all__ = ["locate_synapse_raw", "prepare_synapse_raw"]

logger = logging.getLogger(__name__)

_RAW_IMG = re.compile(r"^img(\d{4})\.nii(\.gz)?$")


def locate_synapse_raw(path: Path | str) -> Path | None:
    """The ``Training`` folder (holding ``img/`` and ``label/``) of a BTCV raw release under ``path``, or None.

    Args:
        path: ``<root>``, ``<root>/RawData`` or ``<root>/RawData/Training`` (``Abdomen/RawData`` is also tried).
    """
    path = Path(path)
    for cand in (path, path / "Training", path / "RawData" / "Training", path / "Abdomen" / "RawData" / "Training"):
        img_dir = cand / "img"
        if img_dir.is_dir() and any(_RAW_IMG.match(p.name) for p in img_dir.iterdir()):
            return cand
    return None


def prepare_synapse_raw(src: Path | str, dst: Path | str, overwrite: bool = False, allow_missing: bool = False) -> Path:
    """Convert the BTCV raw release (``RawData/Training/{img,label}``) to the MSD layout, TransUNet split.

    Cases present but outside the protocol's 30 are reported and skipped; ``RawData/Testing`` (no labels) is not
    used. HU values, spacing, orientation and the header are kept; labels are mapped by :data:`BTCV_TO_SYNAPSE`.

    Args:
        src: ``<root>``, ``<root>/RawData`` or ``<root>/RawData/Training``.
        dst: output folder.
        overwrite: replace a non-empty ``dst``.
        allow_missing: convert what exists when protocol cases are missing (otherwise an error lists them).

    Returns:
        ``dst`` (holding ``dataset.json``).

    Raises:
        DatasetError: layout not found, missing cases or labels, bad label values, image/label grid mismatch,
            unreadable files. Nothing is written then.
    """
    src = source_folder(src)
    root = locate_synapse_raw(src)
    if root is None:
        raise DatasetError(f"no BTCV raw release under {src}: expected RawData/Training/img/img0001.nii.gz, ...")
    found: dict[str, Path] = {}
    for p in sorted((root / "img").iterdir()):
        m = _RAW_IMG.match(p.name)
        if m:
            found[m.group(1)] = p
    protocol = set(SYNAPSE_TRAIN_CASES + SYNAPSE_TEST_CASES)
    skipped = sorted(set(found) - protocol)
    if skipped:
        logger.warning("skipping %d case(s) outside the TransUNet protocol: %s", len(skipped), ", ".join(skipped))
    train, test, missing = split_cases(found, found, allow_missing, str(root / "img"))
    plan = [(c, "training") for c in train] + [(c, "test") for c in test]
    # every label must exist before anything is converted
    labels = {c: nifti_path(root / "label" / f"label{c}") for c, _ in plan}
    for c, _ in plan:
        if not labels[c].is_file():
            raise DatasetError(f"case {c}: image {found[c]} has no label file {labels[c]}")

    logger.info("converting %d Synapse cases from %s", len(plan), root)
    with MSDWriter(dst, overwrite=overwrite, protect=[src, root]) as writer:
        for case, split in plan:
            img_data, img = read_nifti(found[case])
            lab_data, lab = read_nifti(labels[case])
            check_same_grid(found[case], img_data.shape, img.affine, labels[case], lab_data.shape, lab.affine)
            label = btcv_to_synapse(label_array(lab_data, labels[case], max_label=max(BTCV_LABELS)))
            writer.add_case(
                f"case{case}",
                split,
                new_nifti(image_array(img_data), img),
                new_nifti(label, img),
                info={
                    "source_image": relative_path(found[case], src),
                    "source_label": relative_path(labels[case], src),
                },
            )
        writer.write_datalist(
            name="Synapse",
            description=DESCRIPTION,
            reference=REFERENCE,
            modality="CT",
            labels=SYNAPSE_LABELS,
            source={
                "layout": "synapse-raw",
                "path": str(src.resolve()),
                "converter": "l2gnet_monai.data.synapse.prepare_synapse_raw",
                "split": SOURCE_NOTE,
                "spacing_known": True,
                "label_mapping": {f"{k} {BTCV_LABELS[k]}": BTCV_TO_SYNAPSE.get(k, 0) for k in sorted(BTCV_LABELS) if k},
                "skipped": [f"case{c}" for c in skipped],
                "missing": [f"case{c}" for c in missing],
            },
        )
    logger.info("wrote %s", Path(dst) / "dataset.json")
    return Path(dst)
