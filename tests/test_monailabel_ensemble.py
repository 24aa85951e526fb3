"""A packaged ensemble of cross-validation folds served by a real MONAI Label 0.8.5 server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2gnet_monai.planning import checkpoint_plan
from tests.bundle.conftest import SMOKE, config_files, copy_bundle, run_workflow
from tests.monailabel_server import (
    NAME,
    MonaiLabelServer,
    infer_study,
    install_package,
    make_studies,
    package_app,
    reference_prediction,
)
from tests.monailabel_venv import monailabel_venv

pytestmark = pytest.mark.slow


def test_monai_label_serves_the_folds_ensemble(tmp_path: Path) -> None:
    venv = monailabel_venv()
    install_package(venv, tmp_path)
    bundle = copy_bundle(tmp_path / "trained" / NAME)
    for fold in (0, 1):  # 6 smoke epochs each: label maps that are not all background
        run_workflow(config_files(bundle, "train"), "train", fold=fold, num_folds=2, max_epochs=6, val_interval=6)
    app, served = package_app(venv, bundle, [SMOKE], tmp_path, folds="all")
    plan = checkpoint_plan(served / "models" / "model.pt")
    assert plan["network"]["_target_"].endswith("FoldEnsemble") and plan["ensemble"]["folds"] == [0, 1]

    studies = tmp_path / "studies"
    ids = make_studies(studies, num_cases=2, labelled=0)
    server = MonaiLabelServer(venv, app, studies, NAME, tmp_path, env={"OMP_WAIT_POLICY": "PASSIVE"})
    server.start()
    try:
        assert NAME in server.get("/info/")["models"], server.log_tail()
        for image_id in ids:
            result, _ = infer_study(server, image_id, tmp_path / f"{image_id}_seg.nii.gz")
            expected = reference_prediction(served, served / "models" / "model.pt", studies / f"{image_id}.nii.gz")
            labels = np.asarray(result.dataobj)
            assert labels.shape == expected.shape, server.log_tail()
            assert (labels == expected).mean() > 0.999, f"{image_id}: {(labels == expected).mean():.4f}"
    finally:
        server.stop()
