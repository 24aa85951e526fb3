"""Bundle distribution: the zip (layout, reproducibility, overrides, validation), ``monai.bundle download`` of it,
the message without l2gnet-monai installed, and safe extraction (path traversal)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import l2gnet_monai
from l2gnet_monai.cli import main
from l2gnet_monai.data.phantom import generate_phantom_case
from l2gnet_monai.planning import packaging
from l2gnet_monai.planning.install import install_bundle
from l2gnet_monai.planning.packaging import BundleError, package_bundle
from tests.bundle import conftest as bundle_conftest
from tests.bundle.conftest import REPO, SMOKE, copy_bundle

#: The session fixture of tests/bundle (one smoke training per test session, shared).
trained_bundle = bundle_conftest.trained_bundle

NAME = "l2gnet_segmentation"
VERSION = json.loads((REPO / "bundle" / "configs" / "metadata.json").read_text())["version"]
ZIP_NAME = f"{NAME}_v{VERSION}.zip"
PIP_HINT = f'pip install "l2gnet-monai=={l2gnet_monai.__version__}"'

#: Runs ``python -m <module> ARGS`` with ``l2gnet_monai`` unimportable, as on a machine without the package.
BLOCKED_RUNNER = textwrap.dedent(
    """
    import runpy
    import sys

    class BlockL2GNet:
        def find_spec(self, name, path=None, target=None):
            if name == "l2gnet_monai" or name.startswith("l2gnet_monai."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, BlockL2GNet())
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    """
)


def _python(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python ARGS`` in a subprocess from ``cwd``, without the repository on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_case(path: Path, case: int) -> Path:
    """One smoke-sized phantom CT volume as NIfTI."""
    image, _, affine = generate_phantom_case(case, shape=(64, 64, 12), spacing=(6.0, 6.0, 12.0), seed=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), str(path))
    return path


@pytest.fixture
def untrained_bundle(tmp_path: Path) -> Path:
    return copy_bundle(tmp_path / "src" / NAME)


# ------------------------------------------------------------------------------------------------------------
# the zip
# ------------------------------------------------------------------------------------------------------------


def test_zip_has_the_zoo_layout_and_is_reproducible(trained_bundle: Path, tmp_path: Path) -> None:
    first = package_bundle(trained_bundle, tmp_path / "a", overrides=[SMOKE])
    second = package_bundle(trained_bundle, tmp_path / "b", overrides=str(SMOKE))
    assert first.name == ZIP_NAME
    assert _sha256(first) == _sha256(second), "the same bundle must give the same bytes"
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {name.split("/")[0] for name in names} == {NAME}
    expected = {
        f"{NAME}/LICENSE",
        f"{NAME}/models/model.pt",
        f"{NAME}/docs/README.md",
        *(f"{NAME}/configs/{p.name}" for p in (trained_bundle / "configs").iterdir()),
    }
    files = {info.filename for info in infos if not info.is_dir()}
    assert expected <= files
    assert not [n for n in files if "/data/" in n or "/eval/" in n or n.endswith("checkpoint_final.pt")]
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert stat.S_IMODE(info.external_attr >> 16) == (0o755 if info.is_dir() else 0o644)
    entries = _entries(first)
    assert entries[f"{NAME}/models/model.pt"] == (trained_bundle / "models" / "model.pt").read_bytes()
    # evaluate.json / multi_gpu_train.json stay overrides of train.json: packaged unchanged
    for name in ("evaluate.json", "multi_gpu_train.json"):
        assert entries[f"{NAME}/configs/{name}"] == (trained_bundle / "configs" / name).read_bytes()
    # the packaged metadata is the trained model's (its classes, its own scores), never the repository's phantom scores
    packaged = json.loads(entries[f"{NAME}/configs/metadata.json"])
    trained = json.loads((trained_bundle / "models" / "metadata.json").read_text())
    assert packaged == trained and "phantom_validation_mean_dice_cpu_settings" not in packaged["eval_metrics"]
    assert json.loads(entries[f"{NAME}/models/plan.json"]) == json.loads(
        (trained_bundle / "models" / "plan.json").read_text()
    )


def test_overrides_are_merged_into_train_and_inference(untrained_bundle: Path, tmp_path: Path) -> None:
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps({"num_workers": 1, "train#dataloader#num_workers": 0, "sw_batch_size": 4}))
    plain = _entries(package_bundle(untrained_bundle, tmp_path / "plain"))
    for name in ("train.json", "inference.json"):  # without overrides: the files as they are
        assert plain[f"{NAME}/configs/{name}"] == (untrained_bundle / "configs" / name).read_bytes()
    merged = _entries(package_bundle(untrained_bundle, tmp_path / "merged", overrides=f"{SMOKE},{cpu}"))
    train = json.loads(merged[f"{NAME}/configs/train.json"])
    inference = json.loads(merged[f"{NAME}/configs/inference.json"])
    for config in (train, inference):
        assert config["backbone"] == "resnet18" and config["network_def"]["codebook_size"] == 64
        assert config["network_def"]["backbone"] == "@backbone"
        assert config["network_def"]["spatial_dims"] == 2  # nested keys replace one argument only
        assert config["slice_size"] == [64, 64] and config["num_workers"] == 1  # the later file wins
        assert (
            config["requirements"]
            == json.loads((untrained_bundle / "configs" / "train.json").read_text())["requirements"]
        )
    assert train["max_epochs"] == 1 and train["train"]["dataloader"]["num_workers"] == 0
    assert inference["input_dir"] == "@phantom_dir" and inference["sw_batch_size"] == 4
    assert "train" not in inference  # a nested key of the other config is skipped, not invented


def test_no_model_when_not_trained_or_not_wanted(trained_bundle: Path, untrained_bundle: Path, tmp_path) -> None:
    assert not [n for n in _entries(package_bundle(untrained_bundle, tmp_path / "a")) if "/models/" in n]
    without = package_bundle(trained_bundle, tmp_path / "b", overrides=[SMOKE], include_model=False)
    assert not [n for n in _entries(without) if "/models/" in n]


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("no bundle", "is not a folder"),
        ("no configs", "has no configs/ folder"),
        ("no metadata", "metadata.json"),
        ("no inference", "inference.json"),
        ("bad train json", "train.json"),
        ("no version", "version"),
        ("bad override", "nothere.json"),
        ("bad name", "../evil"),
    ],
)
def test_bad_bundle_stops_with_the_file_named_and_writes_nothing(
    untrained_bundle: Path, tmp_path: Path, breakage: str, fragment: str
) -> None:
    configs = untrained_bundle / "configs"
    kwargs: dict = {}
    if breakage == "no bundle":
        shutil.rmtree(untrained_bundle)
    elif breakage == "no configs":
        shutil.rmtree(configs)
    elif breakage == "no metadata":
        (configs / "metadata.json").unlink()
    elif breakage == "no inference":
        (configs / "inference.json").unlink()
    elif breakage == "bad train json":
        (configs / "train.json").write_text('{"imports": [')
    elif breakage == "no version":
        meta = json.loads((configs / "metadata.json").read_text())
        del meta["version"]
        (configs / "metadata.json").write_text(json.dumps(meta))
    elif breakage == "bad override":
        kwargs["overrides"] = str(tmp_path / "nothere.json")
    elif breakage == "bad name":
        kwargs["name"] = "../evil"
    output = tmp_path / "dist"
    with pytest.raises((FileNotFoundError, BundleError)) as error:
        package_bundle(untrained_bundle, output, **kwargs)
    assert fragment in str(error.value)
    assert not output.exists() or not list(output.iterdir())


def test_weights_that_do_not_fit_or_do_not_load_safely_are_refused(untrained_bundle: Path, tmp_path) -> None:
    model = untrained_bundle / "models" / "model.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, model)
    with pytest.raises(BundleError, match="does not fit"):
        package_bundle(untrained_bundle, tmp_path / "dist", overrides=[SMOKE])
    torch.save({"model": {}, "epoch": np.float64(1.0)}, model)  # numpy scalars: weights_only=True refuses them
    with pytest.raises(BundleError, match="weights_only=True"):
        package_bundle(untrained_bundle, tmp_path / "dist", overrides=[SMOKE])
    assert not (tmp_path / "dist").exists()


def test_a_failed_write_leaves_no_partial_zip_and_keeps_the_old_one(
    untrained_bundle: Path, tmp_path: Path, monkeypatch
) -> None:
    output = tmp_path / "dist"
    good = package_bundle(untrained_bundle, output)
    before = good.read_bytes()

    def broken(path: Path, files: dict) -> None:
        path.write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(packaging, "_write_zip", broken)
    with pytest.raises(OSError, match="disk full"):
        package_bundle(untrained_bundle, output, overrides=[SMOKE])
    assert [p.name for p in output.iterdir()] == [ZIP_NAME]
    assert good.read_bytes() == before


def test_command_line(untrained_bundle: Path, tmp_path: Path, capsys) -> None:
    args = ["package-bundle", "--bundle_dir", str(untrained_bundle), "--output_dir", str(tmp_path / "dist")]
    assert main([*args, "--overrides", str(SMOKE), "--name", "my_l2gnet"]) == 0
    out, err = capsys.readouterr()
    zip_path = Path(out.strip().splitlines()[-1])
    assert zip_path == tmp_path / "dist" / f"my_l2gnet_v{VERSION}.zip" and zip_path.is_file()
    assert "python -m monai.bundle download --name my_l2gnet --url file://" in err
    assert main(["install-bundle", str(zip_path), str(tmp_path / "installed")]) == 0
    assert (tmp_path / "installed" / "my_l2gnet" / "configs" / "train.json").is_file()
    capsys.readouterr()
    assert main(["install-bundle", str(zip_path), str(tmp_path / "installed")]) == 1  # already there
    assert "--overwrite" in capsys.readouterr().err
    assert main(["install-bundle", str(zip_path), str(tmp_path / "installed"), "--overwrite"]) == 0
    assert main(["package-bundle", "--bundle_dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("l2gnet-monai: error: bundle_dir:") and "Traceback" not in err


# ------------------------------------------------------------------------------------------------------------
# the package requirement: declared, versioned, and the first thing every entry point resolves
# ------------------------------------------------------------------------------------------------------------


def test_configs_require_the_installed_package_first() -> None:
    configs = REPO / "bundle" / "configs"
    meta = json.loads((configs / "metadata.json").read_text())
    assert meta["required_packages_version"]["l2gnet-monai"] == l2gnet_monai.__version__
    for name in ("train.json", "inference.json"):
        config = json.loads((configs / name).read_text())
        required = config["required_package"]
        assert required["_target_"] == "monai.utils.optional_import" and required["module"] == "l2gnet_monai"
        assert required["version"] == l2gnet_monai.__version__ and PIP_HINT in required["descriptor"]
        assert config["requirements"] == "$@required_package[0].__version__"
        assert next(iter(config["network_def"].items())) == ("_requires_", "@requirements")
    for name in ("train.json", "inference.json", "evaluate.json", "multi_gpu_train.json"):
        assert json.loads((configs / name).read_text())["initialize"][0] == "@requirements", name


def test_our_checkpoint_loads_are_weights_only() -> None:
    """Every ``torch.load`` in the package passes ``weights_only=True`` (MONAI's CheckpointLoader already does)."""
    offenders = []
    for path in sorted((REPO / "l2gnet_monai").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if keywords.get("weights_only") != "True":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------------------------
# monai.bundle download --url file://... and running the downloaded bundle
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_downloaded_zip_runs_inference_and_says_what_to_install_without_the_package(
    trained_bundle: Path, tmp_path: Path
) -> None:
    zip_path = package_bundle(trained_bundle, tmp_path / "dist", overrides=[SMOKE])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    download = _python(
        ["-m", "monai.bundle", "download", "--name", NAME, "--url", zip_path.as_uri(), "--bundle_dir", "downloaded"],
        cwd=elsewhere,
    )
    assert download.returncode == 0, download.stderr[-3000:]
    bundle = elsewhere / "downloaded" / NAME
    assert (bundle / "models" / "model.pt").read_bytes() == (trained_bundle / "models" / "model.pt").read_bytes()

    # our own installer gives the same tree
    installed = install_bundle(zip_path, tmp_path / "installed")
    ours = {p.relative_to(installed): p.read_bytes() for p in installed.rglob("*") if p.is_file()}
    theirs = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert ours == theirs

    # happy path: inference from the downloaded bundle, run from another directory
    inputs = tmp_path / "inputs"
    source = _write_case(inputs / "case_a.nii.gz", 11)
    inference = str(bundle / "configs" / "inference.json")
    result = _python(["-m", "monai.bundle", "run", "--config_file", inference, "--input_dir", str(inputs)], elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    written = nib.load(bundle / "eval" / "inference" / "case_a_seg.nii.gz")
    assert written.shape == nib.load(source).shape
    np.testing.assert_allclose(written.affine, nib.load(source).affine, atol=1e-5)
    assert 0 <= np.asanyarray(written.dataobj).max() <= 8

    # without l2gnet-monai: every entry point stops first with what to install
    runner = tmp_path / "without_l2gnet.py"
    runner.write_text(BLOCKED_RUNNER)
    sanity = _python([str(runner), "l2gnet_monai"], cwd=elsewhere)
    assert sanity.returncode != 0 and "No module named 'l2gnet_monai'" in sanity.stderr
    meta = str(bundle / "configs" / "metadata.json")
    calls = {
        "inference": ["run", "--config_file", inference, "--input_dir", str(inputs)],
        "training": ["run", "--config_file", str(bundle / "configs" / "train.json")],
        "evaluation": ["run", "--config_file", f"['{bundle}/configs/train.json','{bundle}/configs/evaluate.json']"],
        "verify_net_in_out (no initialize)": ["verify_net_in_out", "network_def", "--meta_file", meta]
        + ["--config_file", inference],
    }
    for what, args in calls.items():
        blocked = _python([str(runner), "monai.bundle", *args], cwd=elsewhere)
        assert blocked.returncode != 0, what
        errors = [line for line in blocked.stderr.splitlines() if line.startswith("monai.utils.module.OptionalImport")]
        assert errors, f"{what}: no OptionalImportError:\n{blocked.stderr[-3000:]}"
        assert "l2gnet-monai" in errors[0] and PIP_HINT in errors[0], errors[0]
        assert "NameError" not in blocked.stderr, what


# ------------------------------------------------------------------------------------------------------------
# path traversal and other unsafe archives: refused before anything is written
# ------------------------------------------------------------------------------------------------------------


def _crafted_zip(path: Path, entries: list[tuple[str, bytes, int]]) -> Path:
    """A zip with raw entry names and modes (``mode`` 0: a plain file), as an attacker would write it."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (mode or (stat.S_IFREG | 0o644)) << 16
            archive.writestr(info, data)
    return path


GOOD = [(f"{NAME}/configs/metadata.json", b"{}", 0), (f"{NAME}/configs/inference.json", b"{}", 0)]


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([*GOOD, (f"{NAME}/../../escaped.txt", b"x", 0)], "outside"),
        ([*GOOD, ("../escaped.txt", b"x", 0)], "outside"),
        ([*GOOD, ("/tmp/l2gnet_absolute_escape.txt", b"x", 0)], "outside"),
        ([*GOOD, ("C:/escape.txt", b"x", 0)], "outside"),
        ([*GOOD, (f"{NAME}\\..\\..\\escaped.txt", b"x", 0)], "outside"),
        ([*GOOD, (f"{NAME}/models/model.pt", b"/etc/passwd", stat.S_IFLNK | 0o777)], "link"),
        ([*GOOD, (f"{NAME}/configs/fifo", b"", stat.S_IFIFO | 0o644)], "special"),
        ([*GOOD, ("other/configs/x.json", b"{}", 0)], "one top-level"),
        ([(f"{NAME}/configs/train.json", b"{}", 0)], "metadata.json"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, entries: list, fragment: str, capsys
) -> None:
    archive = _crafted_zip(tmp_path / "evil.zip", entries)
    target = tmp_path / "sandbox" / "model"
    with pytest.raises(BundleError, match=fragment):
        install_bundle(archive, target)
    assert not (tmp_path / "sandbox").exists(), "nothing may be written, not even the target folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]
    assert not Path("/tmp/l2gnet_absolute_escape.txt").exists()
    assert main(["install-bundle", str(archive), str(target)]) == 1
    assert capsys.readouterr().err.startswith("l2gnet-monai: error: archive:")
    assert not (tmp_path / "sandbox").exists()


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "bundle.zip"
    fake.write_text("not a zip")
    with pytest.raises(BundleError, match="not a zip"):
        install_bundle(fake, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        install_bundle(tmp_path / "missing.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
