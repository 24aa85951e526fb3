# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Command-line interface: ``l2gnet-monai COMMAND ...`` or ``python -m l2gnet_monai COMMAND ...``.

Built on `python-fire <https://github.com/google/python-fire>`_: every public method of :class:`L2GNetCLI` is a
command, its docstring is the command's ``--help`` and its keyword arguments are the ``--flags``. To add a
command, add a method to the class of its group (:mod:`~l2gnet_monai.cli.datasets`,
:mod:`~l2gnet_monai.cli.scores`, :mod:`~l2gnet_monai.cli.bundles`). Errors caused by the user's input
(:class:`~l2gnet_monai.data.errors.DatasetError`, a missing optional dependency) print one line on stderr and exit
with status 1, without a traceback.

May import every other part of the package, but loads torch only inside the commands that need it (``import
l2gnet_monai.cli`` stays fast, and the OpenMP wait policy is set before torch loads).
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import fire

from l2gnet_monai.cli.arguments import PAPER_DATASETS
from l2gnet_monai.cli.bundles import BundleCommands
from l2gnet_monai.cli.datasets import NEXT_STEPS, PROG, DatasetCommands
from l2gnet_monai.cli.scores import ScoreCommands
from l2gnet_monai.cli.study import StudyCommands
from l2gnet_monai.data.errors import DatasetError

__all__ = ["L2GNetCLI", "main", "NEXT_STEPS", "PAPER_DATASETS", "PROG"]


class L2GNetCLI(DatasetCommands, ScoreCommands, BundleCommands, StudyCommands):
    """L2GNet for MONAI: prepare the paper's datasets (Synapse CT, ACDC MRI), score results, distribute the bundle.

    Typical use, from the repository root: convert a download into the folder layout the MONAI bundle reads,
    train on it, evaluate on the test split and compare with the paper's table:

        l2gnet-monai detect ~/data/Abdomen
        l2gnet-monai prepare ~/data/Abdomen ~/data/synapse_msd
        python -m monai.bundle run training \\
            --config_file "['bundle/configs/train.json','configs/synapse.json']" --dataset_dir ~/data/synapse_msd
        python -m monai.bundle run evaluating \\
            --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json','configs/synapse.json']" \\
            --dataset_dir ~/data/synapse_msd
        l2gnet-monai compare bundle/eval/summary.json --dataset synapse

    Commands: prepare and detect (datasets), evaluate (score a folder of predicted label maps), compare (our
    summary.json beside the paper's rows) and table (the paper's rows), see docs/datasets.md; explain (pictures of
    the bottleneck's codes and transport plans), see docs/interpretability.md; package-bundle (a versioned zip of
    bundle/) and install-bundle (unpack such a zip safely), see docs/distribution.md; study (ablations and
    baselines, cross-validated, with a report), see docs/ablation.md.

    Source layouts recognised by `prepare` and `detect`:
      synapse-raw        BTCV "RawData" release: RawData/Training/img/img0001.nii.gz, RawData/Training/label/...
      synapse-transunet  TransUNet's preprocessed release: train_npz/case0005_slice000.npz,
                         test_vol_h5/case0001.npy.h5
      acdc               official ACDC release: training/patient001/Info.cfg, patient001_frame01.nii.gz,
                         patient001_frame01_gt.nii.gz, ...; testing/patient101/...
      msd                an already-converted folder (dataset.json with imagesTr/): nothing to prepare

    Run `l2gnet-monai COMMAND --help` for the details of a command.
    """


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
