# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``explain``, ``package-bundle`` and ``install-bundle``: a trained bundle's pictures and its distribution."""

# no ``from __future__ import annotations``: python-fire prints the annotations of these methods in their help, and
# prints a string annotation as "Optional['Optional[int]']"
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

from l2gnet_monai.data.errors import DatasetError, one_line

__all__ = ["BundleCommands"]


class BundleCommands:
    """The commands that use a trained bundle (methods of :class:`~l2gnet_monai.cli.L2GNetCLI`)."""

    def explain(
        self,
        bundle_dir: str,
        image: str,
        output_dir: str = "explain",
        slice: int = None,  # type: ignore[assignment]  # fire prints Optional[int] (Optional[int] reads Optional[Optional])
        overrides: Any = None,
        bins: int = 4,
    ) -> None:
        """Draw what a trained bundle's L2GNet bottleneck does with one slice of a volume: four PNGs and a summary.

        The volume goes through the bundle's preprocessing (configs/inference.json, e.g. RAS orientation, intensity
        normalisation, resizing) and is cut across the axis the model was trained to slice (the plan's: sagittal,
        coronal or axial); the slice is the one with most predicted foreground unless --slice is given. Every
        picture shows the slice as radiologists read it, at its true proportions, and names its plane.
        Written to OUTPUT_DIR:
          code_map.png    image, prediction, the code of each bottleneck position and the transport-plan partition,
                          all at the image's resolution
          bins.png        per reference, the partition of the plan beside that of the plan without the positional
                          prior term (the image's content alone)
          sources.png     per reference, the largest bins: where the plan draws their mass from, relative to
                          the prior alone (what the image's content changes)
          code_usage.png  how many positions use each code, with the perplexity
          summary.txt     codes in use, perplexity, codes per class and a warning when the codebook has collapsed
        docs/interpretability.md explains how to read them.

        Examples:
            l2gnet-monai explain bundle bundle/data/phantom/imagesTr/phantom_0020.nii.gz
            l2gnet-monai explain my_bundle ct.nii.gz --slice 40 --output_dir pictures/

        Args:
            bundle_dir: the trained bundle (configs/inference.json, models/model.pt).
            image: the volume to explain.
            output_dir: where to write the PNGs (created if needed).
            slice: the index of the slice in the preprocessed volume, across the axis the model was trained to slice
                (axial for the paper's data). Without it, the slice with most predicted foreground.
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
        print(paths.pop("summary_text"))
        print(f"slice {paths.pop('slice')}:")
        for path in paths.values():
            print(f"  {path}")

    def package_bundle(
        self,
        bundle_dir: str = "bundle",
        output_dir: str = "dist",
        name: Optional[str] = None,
        overrides: Any = None,
        include_model: bool = True,
        folds: Any = None,
        test_time_flips: bool = False,
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
            l2gnet-monai package-bundle --folds all --test_time_flips   # the cross-validation's ensemble

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
            folds: 'all' or fold numbers (0,1,2): package the ensemble of these trained folds (models/fold_K/model.pt)
                as the zip's models/model.pt, served by MONAI Label like one model (docs/bundle.md, cross-validation).
            test_time_flips: the packaged model also averages its predictions over mirrored slices.
        """
        from l2gnet_monai.planning.packaging import package_bundle

        path = package_bundle(
            bundle_dir=Path(str(bundle_dir)).expanduser(),
            output_dir=Path(str(output_dir)).expanduser(),
            name=None if name is None else str(name),
            overrides=overrides,
            include_model=bool(include_model),
            folds=folds,
            test_time_flips=bool(test_time_flips),
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
