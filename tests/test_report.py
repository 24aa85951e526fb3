"""The evaluation report written from collected cases (the bundle's own run is in tests/bundle/test_pictures.py)."""

from __future__ import annotations

import numpy as np

from l2gnet_monai.evaluation import EvaluationResults, compute_case_metrics
from l2gnet_monai.report import REPORT_FILES, ReportBuilder
from tests.bundle.test_pictures import check_self_contained_page


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.zeros((32, 24, 5), dtype=np.int64)
    label[4:20, 3:12, 1:4] = 1
    label[20:28, 10:20, 2:5] = 2
    pred = label.copy()
    pred[rng.random(label.shape) < 0.05] = 0
    image = rng.normal(40, 30, label.shape)
    return image, label, pred


def test_report_is_self_contained_and_replaces_the_previous_one(tmp_path) -> None:
    names = {1: "tumour", 2: "vessel"}
    results = EvaluationResults(names, hd95_unit="mm", method="my net")
    builder = ReportBuilder(names, modality="CT", window=(-125, 275))
    for i in range(3):
        image, label, pred = _case(i)
        results.per_case[f"case{i}"] = compute_case_metrics(pred, label, names)
        builder.add_case(f"case{i}", pred, label, image)
    assert all(len(rows) in (1, 2) and rows[0]["grey"].shape == (24, 32) for rows in builder.cases.values())
    builder.class_code_counts = np.array([[5, 0, 1], [0, 3, 3], [1, 1, 0]])
    (tmp_path / REPORT_FILES).mkdir()
    (tmp_path / REPORT_FILES / "case_0099.png").write_bytes(b"stale")
    page = builder.write(results, str(tmp_path), paper_table="auto")
    images = check_self_contained_page(tmp_path / "report.html")
    assert page == str(tmp_path / "report.html")
    assert sorted(p.name for p in images) == sorted(p.name for p in (tmp_path / REPORT_FILES).iterdir())
    assert {p.name for p in images} == {"boxplots.png", "codes_per_class.png", *(f"case_000{i}.png" for i in range(3))}
    text = page and (tmp_path / "report.html").read_text()
    assert "Scores per class" in text and "tumour" in text and "Table 1" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", REPORT_FILES]
