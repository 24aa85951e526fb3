"""The evaluation handler: paper-form scores of an evaluator's outputs, written as CSV and JSON and printed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from l2gnet_monai.evaluation.handler import PaperMetricsHandler


def _channel_first(values, spacing=(2.0, 1.0, 3.0), name: str = "case_0001.nii.gz") -> MetaTensor:
    """A (C, H, W, D) MetaTensor with an anisotropic affine and a file name, as LoadImaged and Invertd give."""
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.as_tensor(values), affine=affine, meta={"filename_or_obj": f"/data/{name}"})


def test_paper_metrics_from_one_hot_outputs_write_csv_json_and_print_the_table(tmp_path, capsys) -> None:
    label = np.zeros((8, 8, 4), np.int64)
    label[2:6, 2:6, 1:3] = 1
    prediction = label.copy()
    prediction[2:6, 2:4, 1:3] = 0  # half of class 1 missed
    one_hot = lambda x: torch.nn.functional.one_hot(torch.as_tensor(x), 3).permute(3, 0, 1, 2).float()  # noqa: E731
    outputs = [{"pred": _channel_first(one_hot(prediction)), "label": _channel_first(label[None])}]
    handler = PaperMetricsHandler({0: "background", 1: "liver", 2: "spleen"}, str(tmp_path), dataset=None)
    engine = Engine(lambda e, batch: outputs)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["per_class"]["liver"]["dsc"] == pytest.approx(2 * 16 / (16 + 32))
    assert summary["per_class"]["spleen"]["dsc"] == 0.0  # empty prediction (and label): scores 0, as TransUNet
    assert summary["hd95_unit"] == "mm" and engine.state.metrics["mean_dsc"] == pytest.approx(summary["mean_dsc"])
    rows = (tmp_path / "metrics_per_case.csv").read_text().splitlines()
    assert rows[0] == "case,class,dice,hd95" and rows[1].startswith("case_0001.nii.gz,liver,")
    assert "mean DSC" in capsys.readouterr().out
