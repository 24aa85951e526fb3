# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Command-line interface: ``l2gnet-monai COMMAND ...`` or ``python -m l2gnet_monai COMMAND ...``.

Built on `python-fire <https://github.com/google/python-fire>`_: every public method of :class:`L2GNetCLI` is a
command, its docstring is the command's ``--help`` and its keyword arguments are the ``--flags``. To add a
command, add a method. Errors caused by the user's input (:class:`~l2gnet_monai.data.msd.DatasetError`, a missing
optional dependency) print one line on stderr and exit with status 1, without a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import fire

from l2gnet_monai.data.msd import DatasetError, detect_layout, prepare_dataset

__all__ = ["L2GNetCLI", "main", "NEXT_STEPS"]

PROG = "l2gnet-monai"

#: What to run after ``prepare``, by layout; ``{dst}`` is replaced by the output folder.
NEXT_STEPS = {
    "synapse": (
        "python -m monai.bundle run training "
        "--config_file \"['bundle/configs/train.json','configs/synapse.json']\" --dataset_dir {dst}"
    ),
    "acdc": (
        "python -m monai.bundle run training "
        "--config_file \"['bundle/configs/train.json','configs/acdc.json']\" --dataset_dir {dst}"
    ),
}


class L2GNetCLI:
    """L2GNet for MONAI: prepare the paper's datasets (Synapse multi-organ CT, ACDC cardiac MRI) for the bundle.

    Typical use: convert a download into the folder layout the MONAI bundle reads, then train on it:

        l2gnet-monai detect ~/data/Abdomen
        l2gnet-monai prepare ~/data/Abdomen ~/data/synapse_msd
        python -m monai.bundle run training \\
            --config_file "['bundle/configs/train.json','configs/synapse.json']" --dataset_dir ~/data/synapse_msd

    Source layouts recognised by `prepare` and `detect`:
      synapse-raw        BTCV "RawData" release: RawData/Training/img/img0001.nii.gz, RawData/Training/label/...
      synapse-transunet  TransUNet's preprocessed release: train_npz/case0005_slice000.npz,
                         test_vol_h5/case0001.npy.h5
      acdc               official ACDC release: training/patient001/Info.cfg, patient001_frame01.nii.gz,
                         patient001_frame01_gt.nii.gz, ...; testing/patient101/...
      msd                an already-converted folder (dataset.json with imagesTr/): nothing to prepare

    Run `l2gnet-monai COMMAND --help` for the details of a command.
    """

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

        Next, train the bundle on DST (configs/acdc.json for ACDC):
            python -m monai.bundle run training \\
                --config_file "['bundle/configs/train.json','configs/synapse.json']" --dataset_dir DST

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
        print("next, train the bundle on it:\n  " + NEXT_STEPS[key].format(dst=out))

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on bad input).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        fire.Fire(L2GNetCLI(), command=args, name=PROG)
    except (DatasetError, ImportError, FileNotFoundError, FileExistsError, PermissionError) as err:
        message = " ".join(str(err).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    return 0
