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


def _one_case_engine(tmp_path, **handler_args) -> tuple[Engine, PaperMetricsHandler]:
    label = np.zeros((8, 8, 4), np.int64)
    label[2:6, 2:6, 1:3] = 1
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(label), 2).permute(3, 0, 1, 2).float()
    outputs = [{"pred": _channel_first(one_hot), "label": _channel_first(label[None])}]
    handler = PaperMetricsHandler({0: "background", 1: "liver"}, str(tmp_path), dataset=None, **handler_args)
    engine = Engine(lambda e, batch: outputs)
    handler.attach(engine)
    return engine, handler


@pytest.mark.parametrize("setting, dtype", [("bf16", "bfloat16"), ("fp32", "float32")])
def test_summary_and_report_say_how_the_evaluation_ran(tmp_path, setting: str, dtype: str) -> None:
    import hashlib

    import monai

    import l2gnet_monai
    from l2gnet_monai.inference import TunedSliceInferer

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights of the evaluated model")
    plan = {"modality": "MRI", "slice_axis": 0, "network": {"_target_": "l2gnet_monai.networks.L2GNet"}}
    inferer = TunedSliceInferer(roi_size=(8, 8), precision=setting, compile="auto")
    run_info = {"device": "cpu", "inferer": inferer, "checkpoint": str(checkpoint), "plan": plan}
    engine, _ = _one_case_engine(tmp_path / "eval", run_info=run_info)
    engine.run([0], max_epochs=1)
    run = json.loads((tmp_path / "eval" / "summary.json").read_text())["run"]
    assert run["precision"] == dtype and run["precision_setting"] == setting  # resolved, not the setting alone
    assert run["compile"] == "auto" and run["device"].startswith("cpu (")
    assert (run["torch"], run["monai"], run["l2gnet_monai"]) == (
        torch.__version__,
        monai.__version__,
        l2gnet_monai.__version__,
    )
    assert run["checkpoint_sha256"] == hashlib.sha256(b"weights of the evaluated model").hexdigest()
    assert run["plan"] == plan
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "How it ran" in page and f"<td>{dtype}</td>" in page and run["checkpoint_sha256"] in page


def test_without_run_info_the_engine_s_inferer_and_device_are_recorded(tmp_path) -> None:
    engine, _ = _one_case_engine(tmp_path, report=False)
    engine.run([0], max_epochs=1)
    run = json.loads((tmp_path / "summary.json").read_text())["run"]
    assert run["precision"] == "float32" and run["checkpoint_sha256"] is None and run["plan"] is None


def test_unknown_run_info_keys_and_a_missing_checkpoint_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"run_info has unknown keys \['ckpt'\]"):
        PaperMetricsHandler({1: "liver"}, str(tmp_path), run_info={"ckpt": "model.pt"}, report=False)
    engine, _ = _one_case_engine(tmp_path, run_info={"checkpoint": str(tmp_path / "gone.pt")}, report=False)
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        engine.run([0], max_epochs=1)
    assert not (tmp_path / "summary.json").exists()
