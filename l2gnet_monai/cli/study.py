# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``study``: the paper's ablations and baselines, cross-validated on one dataset, in one resumable command."""

# no ``from __future__ import annotations``: python-fire prints the annotations of these methods in their help
import sys
from typing import Any

from l2gnet_monai.data.errors import DatasetError

__all__ = ["StudyCommands"]


class StudyCommands:
    """The study command (a method of :class:`~l2gnet_monai.cli.L2GNetCLI`)."""

    def study(
        self,
        dataset: str = "phantom",
        output: str = "study",
        variants: Any = "l2gnet,no_mapper",
        folds: Any = "all",
        num_folds: int = 5,
        overrides: Any = None,
        bundle_dir: str = "bundle",
        variants_dir: str = "configs/variants",
        slurm: bool = False,
        report: bool = True,
        reference: Any = None,
    ) -> None:
        """Train and evaluate every variant on every fold of DATASET with the bundle, then write the study's report.

        Each (variant, fold) is an ordinary bundle training (python -m monai.bundle run training with the variant's
        override file and --fold K) and an evaluation on the fold's held-out cases, run one after the other. All
        runs use one stored split, OUTPUT/splits.json. Finished runs are skipped and stopped trainings resumed, so
        the same command continues a study. With --slurm nothing is trained: the runs are written as a SLURM job
        array (OUTPUT/slurm/study.sbatch over OUTPUT/slurm/runs.txt, one command line per run); submit it, and run
        this command again afterwards for the report. The exit status is 1 when a run failed (its log is named).

        Written to OUTPUT: report.html (the paper's table form with mean ± SD over folds, each variant against the
        reference case by case with a 95% bootstrap interval and a Wilcoxon p-value, parameters, FLOPs, time,
        memory and codebook use, box plots and Dice against parameters), study.csv (a row per run), results.json,
        and runs/VARIANT/fold_K/ (weights, plan, evaluation, logs). Variants: docs/ablation.md.

        Examples:
            l2gnet-monai study phantom --variants l2gnet,no_mapper --folds 0,1 --overrides configs/smoke.json
            l2gnet-monai study ~/data/synapse_msd --variants l2gnet,no_mapper,transunet,flexible_unet --slurm

        Args:
            dataset: a dataset in the Decathlon layout (folder or dataset.json), or 'phantom'.
            output: the study's folder.
            variants: names in VARIANTS_DIR (l2gnet, no_mapper, no_quantizer, codebook_256, q2, ...) or override
                files, comma-separated.
            folds: 'all' or fold numbers, comma-separated; 'none': no cross-validation, each variant trained on every
                training case and scored on the dataset's test list (the paper's protocol).
            num_folds: folds of the split (when OUTPUT/splits.json exists, it must have as many).
            overrides: override files applied before each variant's (e.g. configs/cpu.json), comma-separated.
            bundle_dir: the bundle.
            variants_dir: the folder of the named variants.
            slurm: write the runs as a SLURM job array instead of running them.
            report: write the report after the runs (--noreport: only run).
            reference: the variant the others are compared with (default: l2gnet, else the first).
        """
        from l2gnet_monai.study.report import write_study_report
        from l2gnet_monai.study.runs import Study

        study = Study(
            dataset, output, variants, folds=folds, num_folds=int(num_folds), bundle_dir=bundle_dir,
            overrides=overrides, variants_dir=variants_dir,
        )  # fmt: skip
        study.prepare()
        if slurm:
            script = study.write_slurm([sys.executable, "-m", "l2gnet_monai"])
            print(f"{len(study.runs)} runs written; submit them with: sbatch {script}")
            return
        failed = [r for r in study.runs if study.execute(r).get("status") != "done"]
        if report:
            paths = write_study_report(study.study_dir, None if reference is None else str(reference))
            print(paths["html"])
        if failed:
            names = ", ".join(f"{r.variant} fold {r.fold} ({r.folder(study.study_dir)})" for r in failed)
            raise DatasetError(f"study: {len(failed)} run(s) failed: {names}; their train.log/evaluate.log say why.")
