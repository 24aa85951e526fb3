"""Pictures of the bundle's workflows: the evaluation report, inference previews, the explain command."""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import torch

from tests.bundle.conftest import config_files, run_cli, run_workflow

PNG = b"\x89PNG\r\n\x1a\n"


class _References(HTMLParser):
    """Every URL a page refers to (img/src, link/href, script/src, a/href, ...), and its tag names."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [value for key, value in attrs if key in ("src", "href", "data") and value]


def check_self_contained_page(page: Path) -> list[Path]:
    """Parse ``page``; assert it refers only to existing files inside its folder; return the images."""
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert "html" in parser.tags and "table" in parser.tags
    assert "script" not in parser.tags
    folder = page.parent.resolve()
    images = []
    for url in parser.urls:
        parsed = urlparse(url)
        assert not parsed.scheme and not parsed.netloc, f"{page} refers to {url} outside its folder"
        target = (folder / parsed.path).resolve()
        assert target.is_relative_to(folder), f"{page} refers to {url} outside its folder"
        assert target.is_file(), f"{page} refers to {url}, which does not exist"
        images.append(target)
    return images


def test_evaluation_writes_a_self_contained_report(trained_bundle: Path) -> None:
    run_workflow(config_files(trained_bundle, "train", "evaluate"), "train")
    page = trained_bundle / "eval" / "report.html"
    images = check_self_contained_page(page)
    names = sorted(p.name for p in images)
    assert names == ["boxplots.png", "case_0000.png", "case_0001.png", "codes_per_class.png"]
    for image in images:
        assert image.read_bytes()[:8] == PNG
    text = page.read_text(encoding="utf-8")
    assert "Table 1 (Synapse)" in text and "82.23" in text  # the phantom has the paper's Synapse classes
    assert not [p for p in os.listdir(page.parent) if p.startswith(".report")]  # no staging folder left


def test_evaluation_report_can_be_switched_off(trained_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    handler = "validate#handlers#3#report"
    run_workflow(config_files(trained_bundle, "train", "evaluate"), "train", output_dir=str(out), **{handler: False})
    assert (out / "summary.json").is_file() and not (out / "report.html").exists()


def test_explain_command_draws_a_smoke_trained_bundle(trained_bundle: Path, tmp_path: Path) -> None:
    image = sorted((trained_bundle / "data" / "phantom_smoke" / "imagesTr").glob("*.nii.gz"))[0]
    out = tmp_path / "pictures"
    args = ["-m", "l2gnet_monai", "explain", str(trained_bundle), str(image), "--output_dir", str(out)]
    result = run_cli(args, cwd=tmp_path)  # no override: the plan beside model.pt describes the network
    assert result.returncode == 0, result.stderr
    assert "axial slice" in result.stdout and "codes in use, perplexity" in result.stdout
    assert "\nslice " in result.stdout
    names = ["bins.png", "code_map.png", "code_usage.png", "sources.png", "summary.txt"]
    assert sorted(p.name for p in out.iterdir()) == names
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == PNG
    assert "codes in use" in (out / "summary.txt").read_text()
    # the same slice given explicitly; then the errors a user meets first, as one line each
    again = run_cli([*args, "--slice", "3"], cwd=tmp_path)
    assert again.returncode == 0 and "\nslice 3:" in again.stdout, again.stderr
    outside = run_cli([*args, "--slice", "99"], cwd=tmp_path)
    assert outside.returncode == 1 and "--slice 99 is outside" in outside.stderr
    assert "Traceback" not in outside.stderr
    # weights without their plan: the default network does not fit them, and the message says what they hold
    planless = shutil.copytree(trained_bundle, tmp_path / "planless", ignore=shutil.ignore_patterns("data", "eval"))
    (planless / "models" / "plan.json").unlink()
    weights = torch.load(planless / "models" / "model.pt", weights_only=True)["model"]
    torch.save(weights, planless / "models" / "model.pt")  # a plain state dict: weights from elsewhere
    mismatch = run_cli([*args[:3], str(planless), *args[4:]], cwd=tmp_path)
    assert mismatch.returncode == 1 and "does not fit" in mismatch.stderr and "resnet18" in mismatch.stderr
    assert "Traceback" not in mismatch.stderr


def test_inference_previews_are_off_by_default_and_one_png_per_volume_when_on(trained_bundle: Path, tmp_path) -> None:
    default = run_workflow(config_files(trained_bundle, "inference"), "infer", output_dir=str(tmp_path / "plain"))
    volumes = default.parser.get_parsed_content("datalist")
    assert volumes and not list((tmp_path / "plain").glob("*.png"))
    run_workflow(config_files(trained_bundle, "inference"), "infer", output_dir=str(tmp_path / "on"), preview=True)
    previews = sorted(p.name for p in (tmp_path / "on").glob("*.png"))
    expected = sorted(Path(v["image"]).name.replace(".nii.gz", "_preview.png") for v in volumes)
    assert previews == expected
    assert all((tmp_path / "on" / p).read_bytes()[:8] == PNG for p in previews)
    assert len(list((tmp_path / "on").glob("*.nii.gz"))) == len(volumes)  # the predictions are still written


def test_validation_writes_overlays_and_the_codebook_histogram_to_tensorboard(trained_bundle: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overlays_per_run, histograms = [], []
    for events in (trained_bundle / "eval").glob("events.out.tfevents.*"):  # one file per run of an engine
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "histograms": 0})
        accumulator.Reload()
        overlays = [t for t in accumulator.Tags()["images"] if t.startswith("validation/") and "| errors" in t]
        if overlays:
            overlays_per_run.append(overlays)
        histograms += accumulator.Tags()["histograms"]
    assert overlays_per_run and all(len(tags) == 2 for tags in overlays_per_run)  # num_images cases per run
    assert "validation/codebook_usage" in histograms


def test_explain_help_renders_every_argument_whole(tmp_path: Path) -> None:
    result = run_cli(["-m", "l2gnet_monai", "explain", "--help"], cwd=tmp_path, extra_env={"PAGER": "cat"})
    text = result.stdout + result.stderr
    assert "Type: Optional[int]" in text and "Optional['" not in text
    assert "Without it, the slice with most predicted foreground." in text
    assert "summary.txt" in text and "radiologists" in text
