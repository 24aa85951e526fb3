# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``prepare`` and ``detect``: the paper's dataset downloads converted to the folder layout the bundle reads."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from l2gnet_monai.data.prepare import detect_layout, prepare_dataset

__all__ = ["DatasetCommands", "NEXT_STEPS", "PROG"]

PROG = "l2gnet-monai"


def _next_steps(override: str) -> str:
    train = f"['bundle/configs/train.json','configs/{override}.json']"
    evaluate = f"['bundle/configs/train.json','bundle/configs/evaluate.json','configs/{override}.json']"
    return (
        "from the repository root (training wants a GPU):\n"
        f'  python -m monai.bundle run training --config_file "{train}" --dataset_dir {{dst}}\n'
        "then score bundle/models/model.pt on the test split and print the paper's table:\n"
        f'  python -m monai.bundle run evaluating --config_file "{evaluate}" --dataset_dir {{dst}}\n'
        f"  {PROG} compare bundle/eval/summary.json --dataset {override}"
    )


#: What to run after ``prepare``, by dataset; ``{dst}`` is replaced by the (shell-quoted) output folder.
NEXT_STEPS = {"synapse": _next_steps("synapse"), "acdc": _next_steps("acdc")}


class DatasetCommands:
    """The commands that prepare datasets (methods of :class:`~l2gnet_monai.cli.L2GNetCLI`)."""

    def prepare(
        self,
        src: str,
        dst: str,
        layout: str = "auto",
        overwrite: bool = False,
        allow_missing: bool = False,
    ) -> None:
        """Convert a Synapse or ACDC download into the MSD folder the bundle reads (dataset.json + NIfTI volumes).

        Layouts: synapse-raw (BTCV RawData/Training/{img,label}), synapse-transunet (TransUNet's train_npz/ and
        test_vol_h5/), acdc (official training/ and testing/ patient folders); auto-detected by default.

        Output: DST/dataset.json with the lists "training", "validation" and "test", and the volumes in
        DST/imagesTr + DST/labelsTr (training and validation) and DST/imagesTs + DST/labelsTs (test, labels
        included for evaluation). Synapse follows the TransUNet split (18 training / 12 test cases, no validation)
        with the 13 BTCV labels mapped to the paper's 8 organs; ACDC follows the SSL4MIS split (70 / 10 / 20
        patients, ED and ES frames from Info.cfg: 140 / 20 / 40 volumes). NIfTI spacing, orientation and headers
        are kept. DST appears only when everything succeeded: on bad input nothing is written and one line names
        the file at fault.

        Examples:
            l2gnet-monai prepare /data/Abdomen /data/synapse_msd
            l2gnet-monai prepare /data/Synapse /data/synapse_msd --layout synapse-transunet
            l2gnet-monai prepare /data/ACDC/database /data/acdc_msd --overwrite

        Next, from the repository root, train the bundle on DST and evaluate it on the test split
        (configs/acdc.json for ACDC):
            python -m monai.bundle run training \\
                --config_file "['bundle/configs/train.json','configs/synapse.json']" --dataset_dir DST
            python -m monai.bundle run evaluating --config_file \\
                "['bundle/configs/train.json','bundle/configs/evaluate.json','configs/synapse.json']" --dataset_dir DST

        Args:
            src: the downloaded dataset folder. For synapse-raw the folder holding RawData/ (or RawData/ itself,
                or RawData/Training/); for synapse-transunet the folder holding train_npz/ and test_vol_h5/ (and
                optionally lists/lists_Synapse/); for acdc the folder holding training/ and testing/, or a folder
                of patientNNN/ folders.
            dst: the output folder; it must not exist or must be empty, unless --overwrite is given.
            layout: auto (detect it, as the detect command does), synapse-raw, synapse-transunet or acdc.
            overwrite: replace DST if it exists and is not empty.
            allow_missing: for partial downloads, convert the protocol cases that exist instead of stopping
                with the list of missing ones.
        """
        src_path, dst_path = Path(str(src)).expanduser(), Path(str(dst)).expanduser()
        if layout == "auto":
            layout = detect_layout(src_path)
            print(f"detected layout: {layout}", file=sys.stderr)
        out = prepare_dataset(src_path, dst_path, layout=layout, overwrite=overwrite, allow_missing=allow_missing)
        with open(out / "dataset.json") as f:
            info = json.load(f)
        counts = ", ".join(f"{len(info[k])} {k}" for k in ("training", "validation", "test"))
        print(f"wrote {out / 'dataset.json'} ({info['name']}: {counts})")
        key = "acdc" if layout == "acdc" else "synapse"
        print("next, train the bundle on it " + NEXT_STEPS[key].format(dst=shlex.quote(str(Path(out).absolute()))))

    def detect(self, src: str) -> None:
        """Print the layout of a dataset folder: synapse-raw, synapse-transunet, acdc or msd.

        Looks for: synapse-raw (RawData/Training/img/img*.nii.gz with label/), synapse-transunet
        (train_npz/case*_slice*.npz and/or test_vol_h5/case*.npy.h5), acdc (training/ or testing/ or a flat
        folder of patientNNN/ folders with Info.cfg and patientNNN_frameNN.nii.gz) and msd (an already-converted
        folder: dataset.json with imagesTr/). Exits with status 1 and says what it found when none matches.

        Example:
            l2gnet-monai detect /data/Abdomen          # -> synapse-raw
        Next: l2gnet-monai prepare SRC DST

        Args:
            src: the folder to inspect.
        """
        print(detect_layout(Path(str(src)).expanduser()))
