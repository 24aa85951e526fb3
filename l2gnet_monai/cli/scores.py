# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``evaluate``, ``compare`` and ``table``: scores of predicted label maps, beside the paper's tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from l2gnet_monai.cli.arguments import (
    paper_class_names,
    paper_dataset,
    parse_classes,
    read_json_object,
    read_summary,
)
from l2gnet_monai.data.errors import DatasetError, one_line

__all__ = ["ScoreCommands"]


class ScoreCommands:
    """The commands that score and compare results (methods of :class:`~l2gnet_monai.cli.L2GNetCLI`)."""

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
                of Dice and HD95 per class, and per case the slices (across the volume's lowest-resolution axis, as
                radiologists read them) with most foreground and with the largest error area, as image, ground
                truth, prediction and error map (the image read from the dataset.json's "image" entries; without one
                the overlays are drawn on black). --noreport skips it.
        """
        from l2gnet_monai.evaluation.folders import evaluate_folders
        from l2gnet_monai.evaluation.tables import format_report

        if dataset is not None and classes is not None:
            raise DatasetError("give either --dataset (the paper's classes) or --classes, not both")
        key = None if dataset is None else paper_dataset(dataset)
        pred_path = Path(str(pred_dir)).expanduser()
        labels_path = Path(str(labels)).expanduser()
        if labels_path.is_dir() and (labels_path / "dataset.json").is_file():
            labels_path = labels_path / "dataset.json"
        if not labels_path.exists():
            raise FileNotFoundError(f"ground truth {labels_path} does not exist")
        if key is not None:
            class_names = paper_class_names(key)
        elif classes is not None:
            class_names = parse_classes(classes)
        elif labels_path.is_file() and "labels" in read_json_object(labels_path):
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
            # no plan: each volume is pictured across its own lowest-resolution axis, as a plan would slice it
            builder = ReportBuilder(class_names, modality=modality, window=(-125.0, 275.0), slice_axis=None)
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

        key = paper_dataset(dataset)
        path = Path(str(summary_json)).expanduser()
        summary = read_summary(path)
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

        print(format_comparison(None, paper_dataset(dataset)))
