# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The runs of a study: every (variant, fold) trained and evaluated by the bundle itself, resumably.

A study folder holds::

    STUDY/splits.json                      the cross-validation split every run uses (written first)
    STUDY/study.json                       what the study runs: dataset, bundle, overrides, variants, folds
    STUDY/runs/VARIANT/fold_K/model.pt     a run's weights and plan (the bundle's --models_dir STUDY/runs/VARIANT)
    STUDY/runs/VARIANT/fold_K/eval/        its evaluation on the fold's held-out cases (summary.json, per-case CSV)
    STUDY/runs/VARIANT/fold_K/run.json     its status, commands, wall time and peak memory
    STUDY/slurm/runs.txt, study.sbatch     with --slurm: one command line per run, and a job array that runs them

Each run is two ordinary bundle commands (``python -m monai.bundle run training`` and ``run evaluating`` with the
variant's override file and ``--fold K``), so a study is what a user could type by hand. A finished run (its
evaluation newer than its weights) is skipped; a training that stopped is resumed from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2gnet_monai.data.errors import DatasetError
from l2gnet_monai.planning.folds import SPLITS_FILE, ensure_splits

__all__ = ["VARIANTS_DIR", "StudyRun", "Study", "find_variants", "variant_description"]

logger = logging.getLogger(__name__)

#: Where the named variants live (override files of the bundle), relative to a source checkout's root.
VARIANTS_DIR = "configs/variants"

_NO_DATASET = ("", "phantom", "none", "null")


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [str(int(value))]
    return [str(v).strip() for v in value]


def find_variants(variants: Any, variants_dir: str | os.PathLike = VARIANTS_DIR) -> dict[str, Path]:
    """The override file of each variant: a name of ``variants_dir`` (``no_mapper`` is ``no_mapper.json``) or a path.

    Args:
        variants: comma-separated names or paths, or a sequence of them.
        variants_dir: the folder of the named variants.

    Raises:
        DatasetError: a variant that is neither, naming the variants there are.
    """
    found: dict[str, Path] = {}
    folder = Path(variants_dir)
    for name in _names(variants):
        path = Path(name) if name.endswith(".json") else folder / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
            raise DatasetError(
                f"variants: no variant {name!r} ({path} does not exist); the variants of {str(folder)!r} are {known}."
            )
        found[path.stem] = path.resolve()
    if not found:
        raise DatasetError("variants: name at least one variant (e.g. --variants l2gnet,no_mapper).")
    return found


def variant_description(path: str | os.PathLike) -> str:
    """The ``"variant"`` text of an override file: what the variant changes, in a sentence."""
    with open(path) as f:
        return str(json.load(f).get("variant", Path(path).stem))


@dataclass(frozen=True)
class StudyRun:
    """One (variant, fold) of a study.

    Args:
        variant: the variant's name.
        variant_file: its override file.
        fold: the cross-validation fold; ``None``: trained on every training case and evaluated on the test list
            (the paper's protocol).
    """

    variant: str
    variant_file: Path
    fold: int | None

    def folder(self, study_dir: str | os.PathLike) -> Path:
        """``STUDY/runs/VARIANT/fold_K`` (``STUDY/runs/VARIANT/full`` without a fold): the run's weights,
        evaluation and ``run.json``."""
        return Path(study_dir) / "runs" / self.variant / ("full" if self.fold is None else f"fold_{self.fold}")


def _wait_with_usage(command: Sequence[str], log: Path, env: Mapping[str, str]) -> tuple[int, float, float]:
    """Run ``command`` with its output in ``log``; its exit status, wall seconds and peak resident memory (MiB)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=dict(env))
        _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone (Linux: ru_maxrss in KiB)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


class Study:
    """Train and evaluate every variant on every fold of one dataset, or write the runs for a SLURM job array.

    Args:
        dataset: a dataset folder in the Decathlon layout (or its ``dataset.json``); ``"phantom"`` for the bundle's
            synthetic CT (generated into ``study_dir/data``).
        study_dir: the study's folder (created).
        variants: variant names (``configs/variants/NAME.json``) or override files.
        folds: fold numbers, ``"all"`` for ``range(num_folds)``, or ``"none"``: no cross-validation, one run per
            variant trained on every training case and evaluated on the dataset's test list (the paper's protocol).
        num_folds: folds of the split.
        bundle_dir: the bundle (its ``configs/``).
        overrides: override files applied before each variant's (e.g. ``configs/cpu.json``).
        variants_dir: the folder of the named variants.
        python: the interpreter that runs the bundle.
    """

    def __init__(
        self,
        dataset: str | os.PathLike,
        study_dir: str | os.PathLike,
        variants: Any,
        folds: Any = "all",
        num_folds: int = 5,
        bundle_dir: str | os.PathLike = "bundle",
        overrides: Any = None,
        variants_dir: str | os.PathLike = VARIANTS_DIR,
        python: str = sys.executable,
    ) -> None:
        self.dataset = None if str(dataset).strip().lower() in _NO_DATASET else str(Path(dataset).resolve())
        self.study_dir = Path(study_dir).resolve()
        self.bundle_dir = Path(bundle_dir).resolve()
        if not (self.bundle_dir / "configs" / "train.json").is_file():
            raise DatasetError(f"bundle_dir: {str(self.bundle_dir)!r} has no configs/train.json.")
        self.variants = find_variants(variants, variants_dir)
        self.num_folds = int(num_folds)
        key = str(folds).strip().lower()
        selected: list[int] = []
        if key != "none":
            selected = list(range(self.num_folds)) if key == "all" else [int(f) for f in _names(folds)]
            outside = [f for f in selected if not 0 <= f < self.num_folds]
            if outside or not selected:
                raise DatasetError(
                    f"folds: {outside or folds} are not folds of {self.num_folds} (0 ... {self.num_folds - 1})."
                )
        self.folds: list[int | None] = list(selected) if selected else [None]
        self.overrides = [Path(p).resolve() for p in _names(overrides or [])]
        missing = [str(p) for p in self.overrides if not p.is_file()]
        if missing:
            raise DatasetError(f"overrides: {missing} do not exist.")
        self.python = python

    @property
    def runs(self) -> list[StudyRun]:
        """Every (variant, fold), variant by variant."""
        return [StudyRun(name, path, fold) for name, path in self.variants.items() for fold in self.folds]

    @property
    def splits_file(self) -> Path:
        return self.study_dir / SPLITS_FILE

    def _common(self, run: StudyRun) -> list[str]:
        args = ["--bundle_root", str(self.bundle_dir)]
        if run.fold is None:
            args += ["--models_dir", str(run.folder(self.study_dir))]
        else:
            args += [
                "--fold",
                str(run.fold),
                "--num_folds",
                str(self.num_folds),
                "--splits_file",
                str(self.splits_file),
            ]
            args += ["--models_dir", str(self.study_dir / "runs" / run.variant)]
            # a fold validates on, and is scored on, the cases it held out, whatever an override's protocol says
            args += ["--validation_split", "validation", "--evaluation_split", "auto"]
        if self.dataset is not None:
            args += ["--dataset_dir", self.dataset]
        else:
            args += ["--phantom_dir", str(self.study_dir / "data" / "phantom")]
        return args

    def _config_files(self, *names: str, run: StudyRun) -> str:
        files = [str(self.bundle_dir / "configs" / f"{n}.json") for n in names]
        return str(files + [str(p) for p in self.overrides] + [str(run.variant_file)])

    def train_command(self, run: StudyRun, resume: bool = False) -> list[str]:
        """The bundle's training of ``run`` (resumed from its latest checkpoint with ``resume``)."""
        command = [self.python, "-m", "monai.bundle", "run", "training"]
        command += ["--meta_file", str(self.bundle_dir / "configs" / "metadata.json")]
        command += ["--config_file", self._config_files("train", run=run), *self._common(run)]
        command += ["--output_dir", str(run.folder(self.study_dir) / "logs")]
        return command + (["--resume_from", "latest"] if resume else [])

    def evaluate_command(self, run: StudyRun) -> list[str]:
        """The bundle's evaluation of ``run`` on its fold's held-out cases."""
        command = [self.python, "-m", "monai.bundle", "run", "evaluating"]
        command += ["--meta_file", str(self.bundle_dir / "configs" / "metadata.json")]
        command += ["--config_file", self._config_files("train", "evaluate", run=run), *self._common(run)]
        return command + ["--output_dir", str(run.folder(self.study_dir) / "eval")]

    def state(self, run: StudyRun) -> str:
        """``"done"`` (evaluated since its weights were written), ``"trained"``, ``"stopped"`` (resumable) or
        ``"new"``."""
        folder = run.folder(self.study_dir)
        model, summary = folder / "model.pt", folder / "eval" / "summary.json"
        if (folder / "checkpoint_final.pt").is_file() and model.is_file():
            if summary.is_file() and summary.stat().st_mtime_ns >= model.stat().st_mtime_ns:
                return "done"
            return "trained"
        return "stopped" if (folder / "checkpoint_latest.pt").is_file() else "new"

    def prepare(self) -> Path:
        """Write ``study.json`` and the split (``splits.json``) every run uses, before any run starts.

        Returns:
            The path of ``splits.json``.
        """
        from monai.bundle import ConfigParser

        self.study_dir.mkdir(parents=True, exist_ok=True)
        first = self.runs[0]
        parser = ConfigParser()
        parser.read_config([str(self.bundle_dir / "configs" / "train.json"), *map(str, self.overrides)])
        arguments = self._common(first)
        for key, value in zip(arguments[::2], arguments[1::2]):
            parser[key.lstrip("-")] = value
        datalist = parser.get_parsed_content("datalist_file")
        if first.fold is not None:
            ensure_splits(self.splits_file, datalist, self.num_folds, int(parser.get_parsed_content("split_seed")))
        settings = {
            "dataset": self.dataset or "phantom",
            "datalist": datalist,
            "bundle_dir": str(self.bundle_dir),
            "overrides": [str(p) for p in self.overrides],
            "variants": {
                name: {"file": str(path), "description": variant_description(path)}
                for name, path in self.variants.items()
            },
            "folds": ["none" if f is None else f for f in self.folds],
            "num_folds": self.num_folds,
        }
        (self.study_dir / "study.json").write_text(json.dumps(settings, indent=2) + "\n")
        return self.splits_file

    def execute(self, run: StudyRun) -> dict[str, Any]:
        """Train (or resume) and evaluate ``run`` unless it is done; ``run.json`` records what happened.

        Returns:
            The run's record: ``status`` (``"done"`` or ``"failed"``), seconds and peak MiB of each step run now
            (steps skipped keep their earlier numbers), and the log files.
        """
        folder = run.folder(self.study_dir)
        folder.mkdir(parents=True, exist_ok=True)
        record_file = folder / "run.json"
        record: dict[str, Any] = json.loads(record_file.read_text()) if record_file.is_file() else {}
        record.update({"variant": run.variant, "fold": run.fold, "variant_file": str(run.variant_file)})
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        state = self.state(run)
        steps = []
        if state in ("new", "stopped"):
            steps.append(("train", self.train_command(run, resume=state == "stopped")))
        if state != "done":
            steps.append(("evaluate", self.evaluate_command(run)))
        for step, command in steps:
            logger.info("study: %s fold %d: %s", run.variant, run.fold, step)
            log = folder / f"{step}.log"
            code, seconds, peak = _wait_with_usage(command, log, env)
            record[step] = {
                "command": shlex.join(command),
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak, 1),
                "log": str(log),
                "exit_status": code,
            }
            if code != 0:
                record["status"] = "failed"
                tail = log.read_text(errors="replace").splitlines()[-5:]
                logger.error(
                    "study: %s fold %d: %s failed (exit %d); %s:\n%s",
                    run.variant,
                    run.fold,
                    step,
                    code,
                    log,
                    "\n".join(tail),
                )
                break
        else:
            record["status"] = "done"
        record_file.write_text(json.dumps(record, indent=2) + "\n")
        return record

    def slurm_commands(self, program: Sequence[str], report: bool = False) -> list[str]:
        """One command line per run: this study restricted to one variant and one fold."""
        lines = []
        for run in self.runs:
            args = [*program, "study", self.dataset or "phantom", "--output", str(self.study_dir)]
            fold = "none" if run.fold is None else str(run.fold)
            args += ["--variants", str(run.variant_file), "--folds", fold, "--num_folds", str(self.num_folds)]
            args += ["--bundle_dir", str(self.bundle_dir), "--report", str(report)]
            if self.overrides:
                args += ["--overrides", ",".join(str(p) for p in self.overrides)]
            lines.append(shlex.join(args))
        return lines

    def write_slurm(self, program: Sequence[str]) -> Path:
        """``slurm/runs.txt`` (a command per run) and ``slurm/study.sbatch`` (a job array over its lines).

        Submit with ``sbatch STUDY/slurm/study.sbatch`` after adding your cluster's resources (partition, GPUs,
        time); once every task has finished, run the study command again to write the report (finished runs are
        skipped).

        Returns:
            The path of ``study.sbatch``.
        """
        folder = self.study_dir / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        lines = self.slurm_commands(program)
        (folder / "runs.txt").write_text("\n".join(lines) + "\n")
        script = folder / "study.sbatch"
        script.write_text(
            "#!/bin/bash\n"
            "#SBATCH --job-name=l2gnet-study\n"
            f"#SBATCH --array=0-{len(lines) - 1}\n"
            f"#SBATCH --output={folder}/%A_%a.log\n"
            "# add your cluster's resources, e.g.:\n"
            "# #SBATCH --gres=gpu:1\n# #SBATCH --cpus-per-task=8\n# #SBATCH --time=24:00:00\n"
            "set -euo pipefail\n"
            f'line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(folder / "runs.txt"))})\n'
            'eval "$line"\n'
        )
        return script
