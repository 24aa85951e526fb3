# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Studies: the paper's ablations and baselines as variants of the bundle, cross-validated, compared and reported.

* :mod:`~l2gnet_monai.study.runs`: every (variant, fold) trained and evaluated by the bundle's own commands,
  resumably, or written as a SLURM job array;
* :mod:`~l2gnet_monai.study.statistics`: mean ± SD over folds, paired bootstrap intervals, Wilcoxon tests;
* :mod:`~l2gnet_monai.study.report`: ``report.html``, ``study.csv`` and ``results.json``.

May import :mod:`l2gnet_monai.data`, :mod:`l2gnet_monai.planning` (splits, plans), :mod:`l2gnet_monai.networks`
(parameters and FLOPs), :mod:`l2gnet_monai.evaluation` (the report's style) and :mod:`l2gnet_monai.visualize`
(figures).
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "VARIANTS_DIR": "l2gnet_monai.study.runs",
    "Study": "l2gnet_monai.study.runs",
    "StudyRun": "l2gnet_monai.study.runs",
    "find_variants": "l2gnet_monai.study.runs",
    "variant_description": "l2gnet_monai.study.runs",
    "mean_sd": "l2gnet_monai.study.statistics",
    "paired_bootstrap_ci": "l2gnet_monai.study.statistics",
    "wilcoxon_p": "l2gnet_monai.study.statistics",
    "paired_comparison": "l2gnet_monai.study.statistics",
    "collect_study": "l2gnet_monai.study.report",
    "paired_comparisons": "l2gnet_monai.study.report",
    "write_study_report": "l2gnet_monai.study.report",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
