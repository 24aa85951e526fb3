"""The packaged bundle served and trained by a real MONAI Label 0.8.5 server (``monaibundle`` sample app), offline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from l2gnet_monai.data.phantom import generate_phantom_case
from l2gnet_monai.planning.packaging import package_bundle
from tests.bundle import conftest as bundle_conftest
from tests.bundle.conftest import SMOKE, copy_bundle
from tests.monailabel_venv import clean_env, monailabel_venv, pip_install, venv_python

REPO = Path(__file__).resolve().parents[1]

READY_TIMEOUT_S = 900  # server start-up on a busy 2-core machine: generous
TRAIN_TIMEOUT_S = 1800
NAME = "l2gnet_segmentation"
SMOKE_SHAPE = (64, 64, 12)  # configs/smoke.json's phantom
SMOKE_SPACING = (6.0, 6.0, 12.0)

#: What MONAI Label logs when ``models/model.pt`` changed since it was loaded (``basic_infer.py``).
RELOAD_LINE = re.compile(r"Reload model from cache\.\s+Prev ts: ([0-9.e+-]+); Current ts: ([0-9.e+-]+)")

#: The session fixture of tests/bundle: a bundle copy trained for one smoke epoch (shared by the session).
trained_bundle = bundle_conftest.trained_bundle

# ------------------------------------------------------------------------------------------------------------
# helpers: the package in the venv, studies, reference predictions, the server
# ------------------------------------------------------------------------------------------------------------

#: What ``pip install <repo>`` needs from the checkout (copied, so that the build leaves nothing in the repository).
_PACKAGE_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "LICENSE", "README.md", "MANIFEST.in")


def install_package(venv: Path, work: Path) -> str:
    """``pip install --no-deps`` this checkout's ``l2gnet-monai`` into ``venv``, skipped when that exact source
    is installed already. Returns where the venv imports ``l2gnet_monai`` from (checked: inside the venv)."""
    source = work / "l2gnet-monai-src"
    for name in _PACKAGE_FILES:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "l2gnet_monai", source / "l2gnet_monai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    marker = venv / "l2gnet-monai.sha256"
    where = [str(venv_python(venv)), "-c", "import l2gnet_monai; print(l2gnet_monai.__file__)"]
    clean_cwd = work / "clean-cwd"
    clean_cwd.mkdir(exist_ok=True)
    located = subprocess.run(where, cwd=clean_cwd, env=clean_env(), capture_output=True, text=True, check=False)
    if not (marker.is_file() and marker.read_text() == digest.hexdigest() and located.returncode == 0):
        log = venv.parent / f"{venv.name}.build.log"
        pip_install(venv, ["--no-deps", "--force-reinstall", str(source)], log, "l2gnet-monai (this checkout)")
        marker.write_text(digest.hexdigest())
        located = subprocess.run(where, cwd=clean_cwd, env=clean_env(), capture_output=True, text=True, check=False)
    assert located.returncode == 0, located.stderr[-2000:]
    location = located.stdout.strip()
    assert Path(location).resolve().is_relative_to(venv.resolve()), f"l2gnet_monai imported from {location}"
    return location


def make_studies(studies: Path, num_cases: int = 5, labelled: int = 4) -> list[str]:
    """MONAI Label's local datastore: phantom CT volumes (smoke size) in ``studies/``, the first ``labelled`` of
    them with a final label in ``studies/labels/final/``. Returns the image ids."""
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    ids = []
    for case in range(num_cases):
        image, label, affine = generate_phantom_case(case, shape=SMOKE_SHAPE, spacing=SMOKE_SPACING, seed=3)
        image_id = f"case{case:02d}"
        nib.save(nib.Nifti1Image(image, affine), str(studies / f"{image_id}.nii.gz"))
        if case < labelled:
            nib.save(nib.Nifti1Image(label, affine), str(studies / "labels" / "final" / f"{image_id}.nii.gz"))
        ids.append(image_id)
    return ids


def reference_prediction(bundle: Path, weights: Path, image: Path) -> np.ndarray:
    """The label map the bundle's inference pipeline gives with ``weights``, computed here (not by the server):
    ``preprocessing``, ``inferer`` and ``postprocessing`` of ``inference.json`` without ``SaveImaged``."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, SaveImaged

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "cpu"
    network = parser.get_parsed_content("network_def")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))
    network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(image)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    post = parser.get_parsed_content("postprocessing")
    data = Compose([t for t in post.transforms if not isinstance(t, SaveImaged)])(data)
    return np.asarray(data["pred"])[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MonaiLabelServer:
    """``python -m monailabel.main start_server`` for the ``monaibundle`` app, offline, in its own process group."""

    def __init__(self, venv: Path, app: Path, studies: Path, model: str, work: Path) -> None:
        self.venv, self.app, self.studies, self.model = venv, app, studies, model
        self.cwd = work / "server-cwd"  # clean: MONAI Label reads a .env file from its current directory
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path = work / "server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Start and wait until ``GET /info/`` answers; fails at once if the server exits. Returns the seconds."""
        command = [str(venv_python(self.venv)), "-m", "monailabel.main", "start_server"]
        command += ["--app", str(self.app), "--studies", str(self.studies)]
        command += ["--conf", "models", self.model, "--conf", "zoo_source", "github"]  # no model-zoo download
        command += ["--conf", "sam2", "false", "--conf", "preload", "false"]  # no SAM2 checkpoint download
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"the MONAI Label server exited with {self.proc.returncode} during start-up")
            try:
                self.get("/info/", timeout=10)
                return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                time.sleep(1)
        raise AssertionError(f"the MONAI Label server did not answer within {timeout} s")

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 900) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}") from e

    def get(self, path: str, timeout: float = 60) -> Any:
        return json.loads(self.request("GET", path, timeout=timeout))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the server's process group (the server and a training subprocess), SIGKILL after
        ``timeout``; then checks that no process of the group is left. Touches no other process."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the server's pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_members(group):
                break
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the server, so that it does not stay behind as a zombie
                if not _group_members(group):
                    break
                time.sleep(0.5)
        self.proc.wait(timeout=30)
        assert not _group_members(group), f"processes of the server's group {group} survived: {_group_members(group)}"


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group ``group``, from ``/proc``."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            members.append(int(stat_file.parent.name))
    return members


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.rint(a).astype(int) == np.rint(b).astype(int)).mean())


def _run_checked(command: list[str], cwd: Path, timeout: float = 900) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-4000:]}"


def _infer(server: MonaiLabelServer, image_id: str, out: Path) -> tuple[nib.Nifti1Image, float]:
    started = time.monotonic()
    out.write_bytes(server.request("POST", f"/infer/{NAME}?image={image_id}&output=image"))
    elapsed = time.monotonic() - started
    return nib.load(str(out)), elapsed


def _wait_for_training(server: MonaiLabelServer, task_id: str, timeout: float = TRAIN_TIMEOUT_S) -> dict:
    """Poll ``GET /train/?all=true`` for the task ``task_id`` (plain ``GET /train/`` shows the last submitted one)."""
    deadline = time.monotonic() + timeout
    task: dict = {}
    while time.monotonic() < deadline:
        assert server.proc is not None and server.proc.poll() is None, "the server died during training"
        tasks = server.get("/train/?all=true")
        task = next((t for t in tasks if t.get("id") == task_id), {})
        if task and task.get("status") not in ("SUBMITTED", "RUNNING"):
            return task
        time.sleep(2)
    raise AssertionError(f"training did not finish within {timeout} s: {task}")


# ------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------


def test_train_json_copes_with_monailabel_overrides(trained_bundle: Path, tmp_path: Path) -> None:
    """``train.json`` with exactly what MONAI Label's ``BundleTrainTask`` overrides, run here (no server, no venv):
    ``bundle_root``, ``device`` as a plain string, ``train#trainer#max_epochs``, the datalists, and
    ``train#handlers`` with its ``CheckpointLoader`` in front of ours (raw config dicts). With the default
    ``val_interval`` (10), a one-epoch run must still validate, so that ``models/model.pt`` is updated."""
    from monai.bundle import ConfigWorkflow

    bundle = copy_bundle(tmp_path / NAME)
    model_pt = bundle / "models" / "model.pt"
    shutil.copy2(trained_bundle / "models" / "model.pt", model_pt)
    before = hashlib.sha256(model_pt.read_bytes()).hexdigest()
    settings = json.loads(SMOKE.read_text())
    settings.pop("val_interval")  # keep train.json's own
    small = tmp_path / "small.json"
    small.write_text(json.dumps(settings))
    ids = make_studies(tmp_path / "studies", num_cases=4, labelled=4)
    items = [
        {
            "image": str(tmp_path / "studies" / f"{i}.nii.gz"),
            "label": str(tmp_path / "studies/labels/final" / f"{i}.nii.gz"),
        }
        for i in ids
    ]
    handlers = json.loads((bundle / "configs" / "train.json").read_text())["train"]["handlers"]
    loader = {"_target_": "CheckpointLoader", "load_path": str(model_pt), "load_dict": {"model": "$@network"}}
    overrides = {
        "bundle_root": str(bundle),
        "train#trainer#max_epochs": 1,
        "train#dataset#data": items[:2],
        "device": "cpu",
        "train#handlers": [{**loader, "strict": False}, *handlers],
        "validate#dataset#data": items[2:],
    }
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(small)],
        meta_file=str(bundle / "configs" / "metadata.json"),
        workflow_type="train",
        **overrides,
    )
    workflow.initialize()
    parsed = workflow.parser.get_parsed_content
    assert parsed("val_interval") == 1 and parsed("amp") is False and parsed("device") == "cpu"
    epoch_length = parsed("train#trainer").state.epoch_length
    assert epoch_length == parsed("iterations_per_epoch") and parsed("lr_scheduler").total_iters == epoch_length
    assert type(parsed("train#handlers")[0]).__name__ == "CheckpointLoader"
    workflow.run()
    workflow.finalize()
    trainer = parsed("train#trainer")
    assert trainer.state.epoch == 1
    assert hashlib.sha256(model_pt.read_bytes()).hexdigest() != before, "models/model.pt was not updated"
    assert torch.load(model_pt, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_monailabel_serves_trains_and_reloads_the_packaged_bundle(trained_bundle: Path, tmp_path: Path) -> None:
    """From the zip to a served, trainable model in MONAI Label 0.8.5's ``monaibundle`` app."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    venv = monailabel_venv()
    timings["venv_s"] = time.monotonic() - started
    started = time.monotonic()
    install_package(venv, tmp_path)
    timings["install_l2gnet_monai_s"] = time.monotonic() - started
    python = str(venv_python(venv))
    cwd = tmp_path / "clean-cwd"
    cwd.mkdir(exist_ok=True)

    # the zip (smoke settings baked in, tiny trained weights), a fresh app, monai.bundle download into it
    zip_path = package_bundle(trained_bundle, tmp_path / "dist", overrides=[SMOKE])
    apps = tmp_path / "apps"
    _run_checked(
        [python, "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle", "--output", str(apps)], cwd
    )
    app = apps / "monaibundle"
    download = [python, "-m", "monai.bundle", "download", "--name", NAME, "--url", zip_path.as_uri()]
    _run_checked([*download, "--bundle_dir", str(app / "model")], cwd)
    bundle = app / "model" / NAME
    model_pt = bundle / "models" / "model.pt"
    assert model_pt.is_file(), "MONAI Label needs models/model.pt at start-up"
    old_weights = tmp_path / "model_before.pt"
    shutil.copy2(model_pt, old_weights)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())

    ids = make_studies(tmp_path / "studies")
    image_id = ids[-1]  # the unlabelled one
    image_path = tmp_path / "studies" / f"{image_id}.nii.gz"
    source = nib.load(str(image_path))
    reference_before = reference_prediction(bundle, old_weights, image_path)

    server = MonaiLabelServer(venv, app, tmp_path / "studies", NAME, tmp_path)
    try:
        timings["server_start_s"] = server.start()
        info = server.get("/info/")
        assert NAME in info["models"], f"/info/ models: {list(info['models'])}"
        assert NAME in info["trainers"], f"/info/ trainers: {list(info['trainers'])}"
        channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        expected_labels = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
        assert info["models"][NAME]["labels"] == expected_labels
        assert info["models"][NAME]["version"] == metadata["version"]

        def check_geometry(result: nib.Nifti1Image) -> np.ndarray:
            values = np.asarray(result.dataobj)
            assert result.shape == source.shape, f"prediction {result.shape} != input {source.shape}"
            np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
            assert np.array_equal(values, np.rint(values)), "not a label map"
            assert values.min() >= 0 and values.max() <= len(channel_def) - 1, np.unique(values)
            return values

        result, timings["infer_first_s"] = _infer(server, image_id, tmp_path / "pred_before.nii.gz")
        served_before = check_geometry(result)
        assert _agreement(served_before, reference_before) >= 0.995, "served prediction != the bundle's own"
        _, timings["infer_second_s"] = _infer(server, image_id, tmp_path / "pred_before2.nii.gz")

        stat_before = model_pt.stat()
        started = time.monotonic()
        body = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
        task = json.loads(server.request("POST", f"/train/{NAME}", body=body))
        finished = _wait_for_training(server, task["id"])
        timings["train_s"] = time.monotonic() - started
        assert finished["status"] == "DONE", "training failed:\n" + "\n".join(finished.get("details", []))
        assert model_pt.stat().st_mtime_ns != stat_before.st_mtime_ns, "models/model.pt was not rewritten"
        assert model_pt.read_bytes() != old_weights.read_bytes(), "models/model.pt did not change"
        new_sha = hashlib.sha256(model_pt.read_bytes()).hexdigest()
        assert server.get(f"/model/info/{NAME}")["checksum"] == f"SHA256:{new_sha}"

        reference_after = reference_prediction(bundle, model_pt, image_path)
        assert not RELOAD_LINE.findall(server.log())
        result, timings["infer_after_train_s"] = _infer(server, image_id, tmp_path / "pred_after.nii.gz")
        served_after = check_geometry(result)
        # the server noticed the new file and loaded it: its log names the old and the new mtime of model.pt
        reloads = RELOAD_LINE.findall(server.log())
        assert reloads == [(repr(stat_before.st_mtime), repr(model_pt.stat().st_mtime))], reloads
        assert _agreement(served_after, reference_after) >= 0.995, "the served prediction is not the new weights'"
        if _agreement(reference_before, reference_after) < 0.99:  # the new weights predict differently: visible
            assert _agreement(served_after, served_before) < 0.995
        assert "Checkpoint keys don't match" not in server.log()
        print(
            f"voxels changed by training: {int((served_after != served_before).sum())}; "
            f"reference agreement old/new weights: {_agreement(reference_before, reference_after):.4f}"
        )
    except AssertionError as error:
        pytest.fail(f"{error}\n--- MONAI Label server log ({server.log_path}), last lines ---\n{server.log_tail()}")
    finally:
        started = time.monotonic()
        server.stop()
        timings["server_stop_s"] = time.monotonic() - started
        print("MONAI Label timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
