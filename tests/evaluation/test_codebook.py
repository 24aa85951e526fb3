"""Codebook health over an evaluation: the numbers against a hand-computed histogram, and summary.json's entry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from l2gnet_monai.evaluation import codebook_health
from tests.evaluation.test_handler import _one_case_engine
from tests.networks.test_l2gnet import small_net


def test_codebook_health_against_a_hand_computed_histogram() -> None:
    # 3 classes x 4 codes; code 3 is never used; background and liver are both dominated by code 0
    counts = np.array([[6, 2, 0, 0], [3, 0, 1, 0], [0, 0, 5, 0]])
    health = codebook_health(counts, {1: "liver", 2: "spleen"})
    assert health["codebook_size"] == 4 and health["codes_used"] == 3 and health["usage"] == 0.75
    overall = np.array([9, 2, 6]) / 17
    assert health["perplexity"] == pytest.approx(math.exp(-(overall * np.log(overall)).sum()))
    background = health["per_class"]["background"]
    assert background["pixels"] == 8 and background["codes_used"] == 2
    assert background["dominant_code"] == 0 and background["dominant_share"] == pytest.approx(0.75)
    assert background["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert health["per_class"]["liver"]["dominant_share"] == pytest.approx(0.75)
    assert health["per_class"]["spleen"] == {
        "pixels": 5,
        "codes_used": 1,
        "perplexity": pytest.approx(1.0),
        "dominant_code": 2,
        "dominant_share": 1.0,
    }
    assert health["shared_dominant_codes"] == {"0": ["background", "liver"]}
    # position counts, where given, decide the overall numbers; classes never predicted are left out
    health = codebook_health(np.array([[4, 0], [0, 0]]), code_counts=np.array([1, 1]))
    assert health["codes_used"] == 2 and health["perplexity"] == pytest.approx(2.0)
    assert list(health["per_class"]) == ["background"]


@pytest.mark.parametrize("codebook_size", [32, 0])
def test_summary_json_records_the_codebook_of_networks_with_a_quantizer(tmp_path, codebook_size: int) -> None:
    torch.manual_seed(0)
    network = small_net(out_channels=2, codebook_size=codebook_size).eval()
    engine, _ = _one_case_engine(tmp_path, report=False)
    outputs = engine._process_function(engine, None)

    def step(engine: Engine, batch) -> list:
        with torch.no_grad():
            network(torch.randn(2, 1, 32, 32))
        return outputs

    engine._process_function = step
    engine.network = network
    engine.run([0], max_epochs=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    if codebook_size == 0:
        assert "codebook" not in summary
        return
    codebook = summary["codebook"]
    assert codebook["codebook_size"] == 32 and 1 <= codebook["codes_used"] <= 2 * 2 * 2
    pixels = sum(c["pixels"] for c in codebook["per_class"].values())
    assert pixels == 2 * 32 * 32
    assert set(codebook["per_class"]) <= {"background", "liver"}
