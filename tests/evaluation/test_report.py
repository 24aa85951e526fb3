"""The evaluation report written from collected cases (the bundle's own run is in tests/bundle/test_pictures.py)."""

from __future__ import annotations

import numpy as np

from l2gnet_monai.evaluation import EvaluationResults, compute_case_metrics
from l2gnet_monai.evaluation.report import REPORT_FILES, ReportBuilder
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


def test_cli_evaluate_writes_the_report_with_the_datasets_images(tmp_path, capsys) -> None:
    from l2gnet_monai.cli import main
    from tests.evaluation.test_any_dataset import _msd_with_predictions

    dataset, preds = _msd_with_predictions(tmp_path / "Task09_Toy", {"0": "background", "1": "atrium", "2": "scar"})
    out = tmp_path / "scores"
    assert main(["evaluate", str(preds), str(dataset), "--output_dir", str(out)]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    images = check_self_contained_page(out / "report.html")
    assert sorted(p.name for p in images) == ["boxplots.png", "case_0000.png", "case_0001.png"]
    text = (out / "report.html").read_text()
    assert "la_003" in text and "scar" in text
    assert main(["evaluate", str(preds), str(dataset), "--output_dir", str(tmp_path / "plain"), "--noreport"]) == 0
    assert not (tmp_path / "plain" / "report.html").exists()


def test_folder_collector_reads_each_cases_image_from_the_datalist(tmp_path) -> None:
    from tests.evaluation.test_any_dataset import _msd_with_predictions

    dataset, _ = _msd_with_predictions(tmp_path / "Task09_Toy", {"0": "background", "1": "atrium", "2": "scar"})
    builder = ReportBuilder(modality="MRI")
    collect = builder.folder_collector(str(dataset / "dataset.json"), "test")
    import nibabel as nib

    label_path = dataset / "labelsTs" / "la_003.nii.gz"
    label = np.asarray(nib.load(str(label_path)).dataobj)
    collect("la_003", label, label, np.diag([1.0, 1.0, 2.0, 1.0]), str(label_path))
    rows = builder.cases["la_003"]
    # the image of this toy dataset is its label: the displayed grey values follow the label's layout
    shown = rows[0]["grey"]
    assert shown.max() == 1.0 and shown.min() == 0.0
    np.testing.assert_array_equal(shown > 0, rows[0]["label"] > 0)


def test_missing_matplotlib_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from l2gnet_monai.cli import main
    from tests.evaluation.test_any_dataset import _msd_with_predictions

    dataset, preds = _msd_with_predictions(tmp_path / "Task09_Toy", {"0": "background", "1": "atrium", "2": "scar"})
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["evaluate", str(preds), str(dataset), "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "matplotlib" in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_box_plots_of_few_cases_show_every_case(tmp_path, monkeypatch) -> None:
    import matplotlib.axes

    points: list[int] = []
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        lines = original(self, *args, **kwargs)
        points.extend(len(line.get_xdata()) for line in lines if line.get_marker() == "o")
        return lines

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    names = {1: "tumour", 2: "vessel"}
    results = EvaluationResults(names, hd95_unit="mm")
    for i in range(4):
        image, label, pred = _case(i)
        results.per_case[f"case{i}"] = compute_case_metrics(pred, label, names)
    ReportBuilder(names).write(results, str(tmp_path), paper_table="none")
    assert points == [4, 4, 4, 4]  # Dice and HD95 of both classes: one dot per case
