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
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence

import fire

from l2gnet_monai.data.errors import DatasetError, one_line
from l2gnet_monai.data.prepare import detect_layout, prepare_dataset

__all__ = ["L2GNetCLI", "main", "NEXT_STEPS", "PAPER_DATASETS"]

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

#: ``--dataset`` values of ``evaluate``, ``compare`` and ``table``: the classes of the paper's Table 1 and Table 2.
PAPER_DATASETS = ("synapse", "acdc")


def _paper_dataset(dataset: Any) -> str:
    """The ``--dataset`` value, lower-cased; a :class:`DatasetError` unless it is one of :data:`PAPER_DATASETS`."""
    key = str(dataset).strip().lower()
    if key not in PAPER_DATASETS:
        raise DatasetError(f"--dataset must be one of {', '.join(PAPER_DATASETS)}, got {dataset!r}")
    return key


def _class_names(dataset: str) -> dict[int, str]:
    from l2gnet_monai.evaluation.tables import ACDC_CLASSES, SYNAPSE_CLASSES

    return dict(SYNAPSE_CLASSES if dataset == "synapse" else ACDC_CLASSES)


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file's object (an empty dict for a JSON list, e.g. a plain datalist); one line on bad JSON."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON: {one_line(err)}") from err
    return content if isinstance(content, dict) else {}


def _parse_classes(classes: Any) -> dict[int, str]:
    """``--classes``: ``{index: name}``, names for 1, 2, ... (a list or a comma-separated string), or a dataset.json."""
    if isinstance(classes, str) and classes.strip().endswith(".json"):
        from l2gnet_monai.data.datalist import dataset_labels

        return dataset_labels(Path(classes.strip()).expanduser())
    if isinstance(classes, str) and classes.strip().startswith("{"):
        try:
            classes = json.loads(classes)
        except json.JSONDecodeError as err:
            raise DatasetError(f"--classes {classes!r} is not a JSON object of index: name ({one_line(err)})") from err
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if isinstance(classes, Mapping):
        try:
            return {int(k): str(v) for k, v in classes.items()}
        except (TypeError, ValueError) as err:
            raise DatasetError(f"--classes: the keys of {dict(classes)!r} must be class indices (integers)") from err
    if isinstance(classes, (list, tuple)) and classes:
        names = [str(c) for c in classes]
        start = 0 if names[0].lower() == "background" else 1
        return {start + i: n for i, n in enumerate(names)}
    raise DatasetError(f"--classes: expected {{index: name}} or names separated by commas, got {classes!r}")


def _read_summary(path: Path) -> dict[str, Any]:
    """A ``summary.json`` written by the bundle's evaluation or by ``evaluate``, checked for the table's fields."""
    if not path.is_file():
        raise FileNotFoundError(f"summary file {path} does not exist")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON: {one_line(err)}") from err
    if not isinstance(summary, Mapping):
        raise DatasetError(f"{path} must hold a JSON object (a summary.json of an evaluation)")
    missing = [k for k in ("mean_dsc", "mean_hd95", "per_class") if k not in summary]
    if missing or not isinstance(summary.get("per_class"), Mapping):
        raise DatasetError(
            f"{path} is not an evaluation summary: it lacks {', '.join(missing) or 'a per_class mapping'} "
            "(expected the summary.json written by the bundle's evaluation or by `l2gnet-monai evaluate`)"
        )
    return dict(summary)


class L2GNetCLI:
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
    bundle/) and install-bundle (unpack such a zip safely), see docs/distribution.md.

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

    def evaluate(
        self,
        pred_dir: str,
        labels: str,
        dataset: Optional[str] = None,
        output_dir: Optional[str] = None,
        hd95_in_mm: bool = False,
        split: str = "test",
        hd95_method: str = "medpy",
        classes: Any = None,
        name: Optional[str] = None,
        report: bool = True,
    ) -> None:
        """Score predicted label maps against the ground truth, per case and class, on whole volumes; print the table.

        Every ground-truth volume is paired by case name with a NIfTI file found (recursively) under PRED_DIR:
        labelsTs/case0001.nii.gz goes with case0001_seg.nii.gz (as the bundle's inference writes it),
        case0001.nii.gz or 0001_pred.nii.gz. Predictions must be label maps (0 background, 1..N the classes) in
        the ground truth's voxel grid. Per case and class, Dice and HD95 are computed on the whole 3-D volume
        with TransUNet's conventions (empty prediction: 0, 0; empty ground truth only: 1, 0), averaged over
        cases, then over classes. Writes metrics_per_case.csv (case, class, dice, hd95) and summary.json to
        OUTPUT_DIR. Prints the paper's Table 1 (Synapse) or Table 2 (ACDC) with our row below when the classes
        are the paper's (by name), otherwise a per-class table; the header gives the HD95 unit.

        Classes, in order of precedence: --classes; --dataset synapse (1 spleen, 2 right kidney, 3 left kidney,
        4 gallbladder, 5 liver, 6 stomach, 7 aorta, 8 pancreas) or acdc (1 RV, 2 Myo, 3 LV); the "labels" of
        LABELS' dataset.json (any Medical Segmentation Decathlon dataset); otherwise (a folder of labels, a JSON
        datalist without "labels") classes 1..K named "class k", K the largest value in the ground truth.

        Examples:
            l2gnet-monai evaluate bundle/eval/inference ~/data/synapse_msd
            l2gnet-monai evaluate preds/ ~/data/Task02_Heart --split validation --name "nnU-Net 2d"
            l2gnet-monai evaluate preds/ ~/data/acdc_msd/labelsTs --dataset acdc --output_dir results/ --hd95_in_mm
            l2gnet-monai evaluate preds/ my_labels/ --classes "{1: liver, 2: tumour}"

        Args:
            pred_dir: folder of predicted label maps (.nii or .nii.gz, searched recursively).
            labels: the ground truth: a dataset folder in the Medical Segmentation Decathlon layout (its
                dataset.json's SPLIT list is scored, "test" by default), a dataset.json file, or a folder of
                ground-truth NIfTI files.
            dataset: synapse or acdc: score the paper's classes and print that table (needed only for a folder
                of labels without a dataset.json; a dataset whose classes are the paper's gets the table anyway).
            output_dir: where to write metrics_per_case.csv and summary.json (default: PRED_DIR).
            hd95_in_mm: report HD95 in millimetres from the ground truth's voxel spacing. The default,
                --nohd95_in_mm, reports voxels as the paper's protocol (medpy's hd95 without spacing) does.
                TransUNet's preprocessed Synapse release has no spacing (1 mm written), so both agree there.
            split: the dataset.json list to score when LABELS is a dataset: test (default), validation or training.
            hd95_method: medpy (the protocol's definition, default) or monai (MONAI's HausdorffDistanceMetric).
            classes: the classes to score: "{1: liver, 2: tumour}" (index: name), "liver,tumour" (1, 2, ...), or a
                dataset.json whose "labels" to use.
            name: the row label: what was scored (default "ours"); recorded in summary.json as "method".
            report: also write report.html (and its pictures in report_files/) to OUTPUT_DIR: the tables, box plots
                of Dice and HD95 per class, and per case the slices with most foreground and with the worst class,
                as image, ground truth, prediction and error map (the image read from the dataset.json's "image"
                entries; without one the overlays are drawn on black). --noreport skips it.
        """
        from l2gnet_monai.evaluation.folders import evaluate_folders
        from l2gnet_monai.evaluation.tables import format_report

        if dataset is not None and classes is not None:
            raise DatasetError("give either --dataset (the paper's classes) or --classes, not both")
        key = None if dataset is None else _paper_dataset(dataset)
        pred_path = Path(str(pred_dir)).expanduser()
        labels_path = Path(str(labels)).expanduser()
        if labels_path.is_dir() and (labels_path / "dataset.json").is_file():
            labels_path = labels_path / "dataset.json"
        if not labels_path.exists():
            raise FileNotFoundError(f"ground truth {labels_path} does not exist")
        if key is not None:
            class_names = _class_names(key)
        elif classes is not None:
            class_names = _parse_classes(classes)
        elif labels_path.is_file() and "labels" in _read_json_object(labels_path):
            from l2gnet_monai.data.datalist import dataset_labels

            class_names = dataset_labels(labels_path)
        else:
            class_names = None  # inferred from the ground truth
        out_dir = pred_path if output_dir is None else Path(str(output_dir)).expanduser()
        builder = on_case = None
        if report:
            from l2gnet_monai.data.datalist import dataset_modality
            from l2gnet_monai.evaluation.report import ReportBuilder
            from l2gnet_monai.visualize.overlays import require_matplotlib

            require_matplotlib()  # before any work: a missing dependency is a one-line error
            modality = dataset_modality(labels_path) if labels_path.is_file() else ("MRI" if key == "acdc" else "CT")
            builder = ReportBuilder(class_names, modality=modality, window=(-125.0, 275.0))
            datalist = str(labels_path) if labels_path.is_file() else None
            on_case = builder.folder_collector(datalist, datalist_key=str(split))
        try:
            results = evaluate_folders(
                str(pred_path),
                str(labels_path),
                class_names,
                output_dir=str(out_dir),
                use_spacing=bool(hd95_in_mm),
                hd95_method=str(hd95_method),
                datalist_key=str(split),
                method=None if name is None else str(name),
                on_case=on_case,
            )
        except ValueError as err:  # shape mismatch, label values out of range, bad datalist: the user's input
            raise DatasetError(one_line(err)) from err
        print(format_report(results.summary(), key or "auto"))
        print(f"wrote {out_dir / 'metrics_per_case.csv'} and {out_dir / 'summary.json'}")
        if builder is not None:
            print(f"wrote {builder.write(results, str(out_dir), key or 'auto')} (open it in a browser)")

    def explain(
        self,
        bundle_dir: str,
        image: str,
        output_dir: str = "explain",
        slice: Optional[int] = None,
        overrides: Any = None,
        bins: int = 4,
    ) -> None:
        """Draw what a trained bundle's L2GNet bottleneck does with one slice of a volume: four PNGs.

        The volume goes through the bundle's preprocessing (configs/inference.json, e.g. RAS orientation, intensity
        normalisation, resizing); the slice is the one with most predicted foreground unless --slice is given.
        Written to OUTPUT_DIR:
          code_map.png    image, prediction, and the code of each bottleneck position over the image
          bins.png        per reference, the image partitioned by the bin each position sends most mass to
          sources.png     per reference, the largest bins and where they draw their mass from (plan column)
          code_usage.png  how many positions use each code, with the perplexity
        docs/interpretability.md explains how to read them.

        Examples:
            l2gnet-monai explain bundle bundle/data/phantom/imagesTr/phantom_0020.nii.gz
            l2gnet-monai explain my_bundle ct.nii.gz --slice 40 --output_dir pictures/

        Args:
            bundle_dir: the trained bundle (configs/inference.json, models/model.pt).
            image: the volume to explain.
            output_dir: where to write the PNGs (created if needed).
            slice: the slice of the preprocessed volume, across the axis the model was trained to slice (axial for
                the paper's data; default: most predicted foreground).
            overrides: config override files merged over configs/inference.json, comma-separated; not needed for a
                bundle trained with this version (its models/plan.json holds the classes and network settings).
            bins: bins per reference in sources.png.
        """
        from l2gnet_monai.visualize.explain import explain_volume

        items = overrides.split(",") if isinstance(overrides, str) else list(overrides or [])  # fire splits "a,b"
        files = [str(Path(str(p).strip()).expanduser()) for p in items if str(p).strip()]
        try:
            paths = explain_volume(
                Path(str(bundle_dir)).expanduser(),
                str(Path(str(image)).expanduser()),
                str(Path(str(output_dir)).expanduser()),
                slice_index=None if slice is None else int(slice),
                overrides=files,
                num_bins=int(bins),
            )
        except ValueError as err:  # a checkpoint that does not fit, a slice outside the volume
            raise DatasetError(one_line(err)) from err
        print(f"slice {paths.pop('slice')}:")
        for path in paths.values():
            print(f"  {path}")

    def compare(self, summary_json: str, dataset: str, name: Optional[str] = None) -> None:
        """Print our scores from a summary.json beside the paper's published rows (Table 1 or Table 2).

        SUMMARY_JSON is written by the bundle's evaluation (bundle/eval/summary.json) or by `evaluate`. Its
        classes are matched to the paper's columns by name (e.g. "left kidney" -> KL, "Myo" -> Myo DSC).
        The note below the table gives the number of cases and the HD95 unit of our row; the paper's HD95
        values are in voxels (medpy's hd95 without spacing).

        Example:
            l2gnet-monai compare bundle/eval/summary.json --dataset synapse

        Args:
            summary_json: the summary.json file.
            dataset: synapse (Table 1: mean DSC, mean HD95, 8 organ DSCs) or acdc (Table 2: mean DSC, mean HD95,
                RV/Myo/LV DSC and HD95).
            name: the name of our row (default: the summary's "method", i.e. the network that was scored).
        """
        from l2gnet_monai.evaluation.tables import format_comparison

        key = _paper_dataset(dataset)
        path = Path(str(summary_json)).expanduser()
        summary = _read_summary(path)
        try:
            table = format_comparison(summary, key, None if name is None else str(name))
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path} does not fit the {key} table: {one_line(err)}") from err
        print(table)

    def table(self, dataset: str) -> None:
        """Print the paper's published rows: Table 1 (synapse) or Table 2 (acdc).

        DSC in percent; HD95 as published (voxels: the protocol calls medpy's hd95 without spacing).
        Synapse columns: DSC, HD, Aorta, GB (gallbladder), KL/KR (left/right kidney), Liver, PC (pancreas),
        SP (spleen), SM (stomach). ACDC columns: DSC, HD, then DSC and HD95 of RV, Myo and LV.

        Example:
            l2gnet-monai table --dataset acdc

        Args:
            dataset: synapse or acdc.
        """
        from l2gnet_monai.evaluation.tables import format_comparison

        print(format_comparison(None, _paper_dataset(dataset)))

    def package_bundle(
        self,
        bundle_dir: str = "bundle",
        output_dir: str = "dist",
        name: Optional[str] = None,
        overrides: Any = None,
        include_model: bool = True,
    ) -> None:
        """Build the bundle's distributable zip, DIST/<name>_v<version>.zip, in the MONAI model zoo's form.

        The zip holds one folder <name>/ with configs/ (all of the bundle's configs), docs/, LICENSE and, when
        the bundle has been trained, models/model.pt (checked to load with weights_only=True and to fit the
        packaged network). Entries are sorted and dated 1980-01-01, so the same bundle gives the same bytes.
        The zip carries no code: where it runs, l2gnet-monai must be installed (see docs/distribution.md).

        --overrides merges config override files into the packaged train.json and inference.json (keys that only
        the other config uses are harmless; nested keys whose parent a config lacks are skipped for it), so a
        distributed bundle can carry e.g. small CPU settings. evaluate.json and multi_gpu_train.json stay
        overrides of train.json and are packaged unchanged.

        Examples:
            l2gnet-monai package-bundle
            l2gnet-monai package-bundle --overrides configs/smoke.json --output_dir /tmp/dist
            l2gnet-monai package-bundle --noinclude_model --name my_l2gnet

        Next, install it (offline, from the file):
            python -m monai.bundle download --name l2gnet_segmentation \\
                --url file:///abs/path/dist/l2gnet_segmentation_v0.1.0.zip --bundle_dir DIR
        or: l2gnet-monai install-bundle dist/l2gnet_segmentation_v0.1.0.zip DIR

        Args:
            bundle_dir: the bundle folder (with configs/metadata.json, inference.json, train.json).
            output_dir: where to write the zip (created if needed; a zip of the same name is replaced).
            name: the bundle folder in the zip, i.e. the model name in MONAI Label (default: metadata.json's
                name, l2gnet_segmentation).
            overrides: override files, comma-separated (JSON or YAML, merged in order).
            include_model: put models/model.pt in the zip when it exists (--noinclude_model: configs only).
        """
        from l2gnet_monai.planning.packaging import package_bundle

        path = package_bundle(
            bundle_dir=Path(str(bundle_dir)).expanduser(),
            output_dir=Path(str(output_dir)).expanduser(),
            name=None if name is None else str(name),
            overrides=overrides,
            include_model=bool(include_model),
        )
        print(path)
        bundle_name = path.name.rsplit("_v", 1)[0]
        print(
            "install it with:\n  python -m monai.bundle download --name "
            f"{bundle_name} --url {shlex.quote(path.resolve().as_uri())} --bundle_dir DIR",
            file=sys.stderr,
        )

    def install_bundle(self, archive: str, bundle_dir: str, overwrite: bool = False) -> None:
        """Extract a bundle zip into BUNDLE_DIR/<name>/, refusing unsafe archives before writing anything.

        For machines without `python -m monai.bundle download`. Every entry is checked first: one that would
        land outside BUNDLE_DIR (a '..' component, an absolute path), a link or special file, entries outside a
        single top-level folder, or no <name>/configs/metadata.json stops the command with nothing written.
        The bundle appears under its final name only when completely extracted.

        Example (MONAI Label's monaibundle app serves the folders of <app>/model):
            l2gnet-monai install-bundle dist/l2gnet_segmentation_v0.1.0.zip apps/monaibundle/model

        Args:
            archive: the bundle zip.
            bundle_dir: the folder to install into (created if needed).
            overwrite: replace BUNDLE_DIR/<name> if it exists.
        """
        from l2gnet_monai.planning.install import install_bundle

        print(install_bundle(Path(str(archive)).expanduser(), Path(str(bundle_dir)).expanduser(), bool(overwrite)))


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
