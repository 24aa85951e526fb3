# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""What a training run needs besides MONAI's trainer: schedule, resumable state, checkpoints, progress, processes.

* :mod:`~l2gnet_monai.training.lr_scheduler`: the paper's poly schedule, resumable onto a longer run;
* :mod:`~l2gnet_monai.training.resume`: the random generators as checkpoint state, and ``--resume_from``;
* :mod:`~l2gnet_monai.training.checkpoint`: checkpoints that are never half-written;
* :mod:`~l2gnet_monai.training.best_model`: the best validation score as checkpoint state, kept by a resume;
* :mod:`~l2gnet_monai.training.validation`: validation that leaves the training's random generators alone;
* :mod:`~l2gnet_monai.training.codebook`: the codebook's statistics as epoch metrics;
* :mod:`~l2gnet_monai.training.progress`: a progress bar with the loss;
* :mod:`~l2gnet_monai.training.distributed`: device, main process and buffers of a ``torchrun`` job.

May import :mod:`l2gnet_monai.networks`, torch, MONAI and ignite.
"""

from __future__ import annotations

from l2gnet_monai._lazy import lazy_exports

_LAZY = {
    "PolynomialLR": "l2gnet_monai.training.lr_scheduler",
    "LATEST": "l2gnet_monai.training.resume",
    "RandomStates": "l2gnet_monai.training.resume",
    "resolve_resume_path": "l2gnet_monai.training.resume",
    "check_epoch_length": "l2gnet_monai.training.resume",
    "AtomicCheckpointSaver": "l2gnet_monai.training.checkpoint",
    "BestMetricState": "l2gnet_monai.training.best_model",
    "IsolatedValidationHandler": "l2gnet_monai.training.validation",
    "CodebookStatsHandler": "l2gnet_monai.training.codebook",
    "ProgressBar": "l2gnet_monai.training.progress",
    "is_main_process": "l2gnet_monai.training.distributed",
    "local_device": "l2gnet_monai.training.distributed",
    "sync_batchnorm": "l2gnet_monai.training.distributed",
    "BroadcastBuffers": "l2gnet_monai.training.distributed",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
