# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Fixtures: fake dataset releases in their real layouts (see :mod:`tests.data.fake_datasets`), and their conversions.

The session-scoped fixtures are shared: tests must not modify them (copy them or build a small one instead).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from l2gnet_monai.data.acdc import prepare_acdc
from l2gnet_monai.data.synapse import prepare_synapse_raw, prepare_synapse_transunet
from tests.data.fake_datasets import make_acdc, make_synapse_raw, make_synapse_transunet


@pytest.fixture(scope="session")
def synapse_raw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete fake BTCV raw release (30 labelled cases): ``<root>/RawData/Training/{img,label}``."""
    return make_synapse_raw(tmp_path_factory.mktemp("synapse_raw"))


@pytest.fixture(scope="session")
def synapse_transunet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete fake TransUNet Synapse release (18 npz cases, 12 h5 volumes, lists_Synapse)."""
    pytest.importorskip("h5py")
    return make_synapse_transunet(tmp_path_factory.mktemp("synapse_transunet"))


@pytest.fixture(scope="session")
def acdc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete fake ACDC release: ``training/patient001..100`` and ``testing/patient101..102``."""
    return make_acdc(tmp_path_factory.mktemp("acdc"))


@pytest.fixture(scope="session")
def synapse_raw_msd(synapse_raw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synapse_raw_root`` converted to the MSD layout."""
    return prepare_synapse_raw(synapse_raw_root, tmp_path_factory.mktemp("out") / "synapse_raw_msd")


@pytest.fixture(scope="session")
def synapse_transunet_msd(synapse_transunet_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synapse_transunet_root`` converted to the MSD layout."""
    return prepare_synapse_transunet(synapse_transunet_root, tmp_path_factory.mktemp("out") / "synapse_tu_msd")


@pytest.fixture(scope="session")
def acdc_msd(acdc_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``acdc_root`` converted to the MSD layout."""
    return prepare_acdc(acdc_root, tmp_path_factory.mktemp("out") / "acdc_msd")
