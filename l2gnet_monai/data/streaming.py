# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Folders streamed case by case: voxels checked as each case is loaded, a bad case skipped and listed.

Inference and evaluation check every file's header before the first output
(:func:`~l2gnet_monai.data.datalist.check_datalist` with ``check_integrity=False``), and each volume's voxels
only when the loader decodes it for the network, so a volume is decoded once and the first output is written
while later volumes are still unread:

1. :class:`CheckVoxelsd`, right after ``LoadImaged`` in the preprocessing, refuses NaN or infinite intensities
   and undeclared label values (:mod:`~l2gnet_monai.data.volume_checks`);
2. :class:`CheckedDataset` turns such a refusal, or a file that turns out truncated or corrupt when decoded,
   into a *bad case*: named in the log and skipped (``on_bad_case="skip"``), or the end of the run (``"stop"``);
3. :class:`CheckedDataLoader` hands the engine the good cases only and keeps the bad ones in ``bad_cases``;
   :meth:`CheckedDataLoader.raise_for_bad_cases`, the workflow's last step, lists them and makes the run fail.

A skipped case produces no output at all: the engine never sees it, so no half-written file is left behind.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Callable

import monai
import numpy as np
import torch
from monai.data import DataLoader, Dataset, list_data_collate
from monai.transforms import MapTransform
from monai.utils import version_geq

from l2gnet_monai.data.errors import DatasetError, one_line
from l2gnet_monai.data.volume_checks import ClassNames, check_image_voxels, check_label_voxels, declared_classes

__all__ = ["BAD_CASE_ACTIONS", "CheckVoxelsd", "CheckedDataset", "CheckedDataLoader"]

logger = logging.getLogger(__name__)

#: What a bad case does: ``"skip"`` it (named, listed at the end, the run fails) or ``"stop"`` the run at once.
BAD_CASE_ACTIONS = ("skip", "stop")

#: The key of the marker that :class:`CheckedDataset` returns in place of a bad case.
_BAD_CASE = "_l2gnet_bad_case"


class CheckVoxelsd(MapTransform):
    """Check the voxels of loaded volumes: images finite, labels holding only the declared classes.

    Placed right after ``LoadImaged`` (``volume_preprocessing(..., voxel_check=...)``), before the intensity
    normalisation would clip an infinite value into the CT window. One or two passes over each array
    (``min``/``max``), closer looks only when something is wrong.

    Args:
        keys: the keys to check (those absent from a case are skipped).
        label_key: the key holding a label map; every other key holds an image.
        class_names: the declared classes, ``{index: name}`` with the background or their number;
            ``None`` skips the label-value check.

    Raises:
        DatasetError: from ``__call__``, naming the file and what is wrong with it.
    """

    def __init__(
        self, keys: str | Sequence[str], label_key: str = "label", class_names: ClassNames | None = None
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.label_key = label_key
        self.classes = None if class_names is None else declared_classes(class_names)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            meta = getattr(value, "meta", {})
            path = str(meta.get("filename_or_obj", key))
            voxels = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if key != self.label_key:
                check_image_voxels(voxels, path, str(key))
            elif self.classes is not None:
                check_label_voxels(voxels, path, str(key), self.classes)
        return d


def _bad_case_problem(error: BaseException) -> str | None:
    """What makes a case bad, from an exception raised while loading it; ``None``: not the data's fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatasetError):
            return one_line(current)
        if isinstance(current, (OSError, EOFError, zlib.error)):
            return f"truncated or corrupt ({one_line(current)}); copy or convert the file again"
        current = current.__cause__ or current.__context__
    return None


class CheckedDataset(Dataset):
    """MONAI's ``Dataset`` whose cases that fail their checks while being loaded are skipped or stop the run.

    A case whose transform raises a :class:`~l2gnet_monai.data.errors.DatasetError` (:class:`CheckVoxelsd`) or
    whose file cannot be decoded (truncated, corrupt) is *bad*: it is logged with its files and, with
    ``on_bad_case="skip"``, replaced by a marker that :class:`CheckedDataLoader` drops; with ``"stop"`` the
    error is raised. Any other exception (a bug, not the data) is raised as it is.

    Args:
        data: the cases, ``[{"image": path, ...}, ...]``.
        transform: the preprocessing (with a :class:`CheckVoxelsd` after its loader).
        on_bad_case: ``"skip"`` or ``"stop"`` (:data:`BAD_CASE_ACTIONS`).

    Raises:
        ValueError: ``on_bad_case`` is not one of :data:`BAD_CASE_ACTIONS`.
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, on_bad_case: str = "skip") -> None:
        if on_bad_case not in BAD_CASE_ACTIONS:
            raise ValueError(f"on_bad_case must be one of {BAD_CASE_ACTIONS}, got {on_bad_case!r}.")
        super().__init__(data, transform)
        self.on_bad_case = on_bad_case

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as error:
            problem = _bad_case_problem(error)
            if problem is None:
                raise
            item = self.data[index]
            files = [os.fspath(v) for v in item.values() if isinstance(v, (str, os.PathLike))]
            message = problem if any(f in problem for f in files) else f"{', '.join(map(repr, files))}: {problem}"
            if self.on_bad_case == "stop":
                raise DatasetError(f"{message} (on_bad_case is 'stop')") from error
            logger.error("Skipped case %d: %s", index, message)
            return {_BAD_CASE: message}


def _collate_checked(batch: list[Any]) -> tuple[Any, list[str]]:
    """``(the good cases collated, or None, [what is wrong with each bad case])``."""
    bad = [item[_BAD_CASE] for item in batch if isinstance(item, Mapping) and _BAD_CASE in item]
    good = [item for item in batch if not (isinstance(item, Mapping) and _BAD_CASE in item)]
    return (list_data_collate(good) if good else None), bad


class CheckedDataLoader:
    """The batches of a :class:`CheckedDataset` without its bad cases, which it keeps in :attr:`bad_cases`.

    An iterable for MONAI's engines (``val_data_loader``), around MONAI's ``DataLoader``. It has no length, on
    purpose: the engine counts the cases it is given (``epoch_length`` is found at the end), as it cannot know
    in advance how many turn out bad. With a single case no worker process is started (``num_workers=0``): a
    worker cannot load ahead of one case, and starting it costs more than the load.

    Args:
        dataset: the cases.
        batch_size: cases per batch.
        num_workers: loader processes when there are two cases or more.
        kwargs: further arguments of MONAI's ``DataLoader`` (not ``collate_fn``).

    Attributes:
        bad_cases: what was wrong with each case skipped in the last pass, one message naming its file each.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, num_workers: int = 0, **kwargs: Any) -> None:
        self.dataset = dataset
        self.num_cases = len(dataset)
        workers = num_workers if self.num_cases > 1 else 0
        self.loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate_checked, **kwargs
        )
        self.bad_cases: list[str] = []

    @property
    def epoch_length(self) -> int | None:
        """The engine's ``epoch_length`` for this loader: ``None`` (found when the cases run out) on MONAI >= 1.5.

        MONAI 1.4 requires an ``epoch_length`` for a loader that is not a torch ``DataLoader``: there it is the number
        of batches of all cases, and a skipped case ends the pass one batch early (with ignite's warning that the data
        ran out).
        """
        if version_geq(monai.__version__, "1.5"):
            return None
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.bad_cases = []
        for good, bad in self.loader:
            self.bad_cases.extend(bad)
            if good is not None:
                yield good

    def raise_for_bad_cases(self, name: str = "datalist") -> None:
        """Fail when cases were skipped, listing them (the workflow's last step, so that the run exits non-zero).

        Args:
            name: what the cases are, for the message (the config key).

        Raises:
            DatasetError: one or more cases were skipped; the message names each with what was wrong.
        """
        if not self.bad_cases:
            return
        listed = "; ".join(self.bad_cases)
        logger.error("%s: %d of %d cases skipped: %s", name, len(self.bad_cases), self.num_cases, listed)
        raise DatasetError(
            f"{name}: {len(self.bad_cases)} of {self.num_cases} cases were skipped (no output written for them): "
            f"{listed}. The other cases were processed; fix or remove the files named and run again."
        )
