# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Cost of ``check_datalist`` in ``initialize`` on the phantom (24 volumes of 160 x 160 x 48, 48 files).

Three variants in interleaved rounds, medians and ratios:

* ``headers``: ``check_integrity=False`` (headers only, no voxel read);
* ``decode``: headers plus decoding every file once (what finding truncated files needs anyway);
* ``full``: the bundle's check: decode once, NaN/Inf in images, label values against the classes, affines.

``full / decode`` is the price of the voxel checks themselves.

    OMP_WAIT_POLICY=PASSIVE python bench/check_datalist.py [--rounds 7] [--phantom_dir /tmp/phantom]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import nibabel as nib
import numpy as np

from l2gnet_monai.data import check_datalist, dataset_labels, ensure_phantom_dataset, load_split


def _decode_only(items: list[dict]) -> None:
    for item in items:
        for key in ("image", "label"):
            np.asanyarray(nib.load(item[key]).dataobj)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--phantom_dir", default="/tmp/l2gnet_bench_phantom")
    args = parser.parse_args()
    datalist = ensure_phantom_dataset(
        args.phantom_dir, num_training=20, num_validation=4, shape=(160, 160, 48), spacing=(2.5, 2.5, 5.0), seed=0
    )
    classes = dataset_labels(datalist)
    items = load_split(datalist, "training") + load_split(datalist, "validation")
    variants = {
        "headers": lambda: check_datalist(items, "bench", check_integrity=False),
        "decode": lambda: (check_datalist(items, "bench", check_integrity=False), _decode_only(items)),
        "full": lambda: check_datalist(items, "bench", class_names=classes, warn_empty_labels=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    warnings.simplefilter("ignore")
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    full = statistics.median(times["full"])
    print(f"{len(items)} cases ({2 * len(items)} files), {args.rounds} interleaved rounds")
    for name, values in times.items():
        median = statistics.median(values)
        per_case = 1000 * median / len(items)
        print(f"{name:8s} median {median:.3f} s, {per_case:.1f} ms/case, full/this {full / median:.2f}")


if __name__ == "__main__":
    main()
