"""A real MONAI Label 0.8.5 server for the packaged bundle, for the tests and ``bench/monailabel_load.py``.

The server runs the ``monaibundle`` sample app from the venv of :mod:`tests.monailabel_venv`, offline, on a free
loopback port, in its own process group (so that it, its worker processes and a training subprocess can be measured
and stopped together, and nothing else): :func:`install_package` puts this checkout into the venv,
:func:`package_app` makes an app from a trained bundle, :func:`make_studies` writes phantom studies,
:class:`MonaiLabelServer` starts, queries, measures and stops the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import nibabel as nib
import numpy as np
import torch

from l2gnet_monai.data.phantom import generate_phantom_case
from l2gnet_monai.planning.packaging import package_bundle
from tests.bundle.conftest import config_files, copy_bundle, run_workflow
from tests.monailabel_venv import clean_env, pip_install, venv_python

__all__ = [
    "NAME",
    "RELOAD_LINE",
    "LoadClients",
    "MonaiLabelServer",
    "PeakRss",
    "Result",
    "agreement",
    "group_members",
    "group_rss_mib",
    "infer_study",
    "install_package",
    "make_studies",
    "package_app",
    "reference_prediction",
    "run_checked",
    "segmenting_bundle",
    "wait_for_training",
]

REPO = Path(__file__).resolve().parents[1]

READY_TIMEOUT_S = 900  # server start-up on a busy 2-core machine: generous
TRAIN_TIMEOUT_S = 1800
NAME = "l2gnet_segmentation"
SMOKE_SHAPE = (64, 64, 12)  # configs/smoke.json's phantom
SMOKE_SPACING = (6.0, 6.0, 12.0)

#: What MONAI Label logs when ``models/model.pt`` changed since it was loaded (``basic_infer.py``).
RELOAD_LINE = re.compile(r"Reload model from cache\.\s+Prev ts: ([0-9.e+-]+); Current ts: ([0-9.e+-]+)")

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

    def __init__(
        self,
        venv: Path,
        app: Path,
        studies: Path,
        model: str,
        work: Path,
        options: Sequence[str] = (),
        env: dict[str, str] | None = None,
        uvicorn_workers: int = 0,
    ) -> None:
        """
        Args:
            venv: the MONAI Label venv (:func:`tests.monailabel_venv.monailabel_venv`).
            app: the ``monaibundle`` app folder (:func:`package_app`).
            studies: the local datastore (:func:`make_studies`).
            model: the bundle's name in ``app/model``.
            work: where the server's clean current directory and its log go.
            options: more ``start_server`` options, e.g. ``("--workers", "2")``.
            env: more environment variables, e.g. ``{"MONAI_LABEL_INFER_CONCURRENCY": "2"}``.
            uvicorn_workers: ``N > 0`` serves the same app from ``N`` processes by ``python -m uvicorn
                monailabel.app:app --workers N`` with a worker health-check timeout as long as the start-up's:
                ``start_server --workers N`` cannot set it, and uvicorn (0.55) kills and restarts every worker
                that has not answered within its default 5 s, which a worker still importing torch on a busy
                2-core machine has not (docs/monailabel.md, section 9).
        """
        self.venv, self.app, self.studies, self.model = venv, app, studies, model
        self.options, self.env, self.uvicorn_workers = list(options), dict(env or {}), uvicorn_workers
        self.cwd = work / "server-cwd"  # clean: MONAI Label reads a .env file from its current directory
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path = work / "server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Start and wait until ``GET /info/`` answers; fails at once if the server exits. Returns the seconds."""
        conf = {"models": self.model, "zoo_source": "github"}  # no model-zoo download
        conf.update(sam2="false", preload="false")  # no SAM2 checkpoint download
        env = {**clean_env(), **self.env}
        if self.uvicorn_workers:
            # what ``start_server`` does, less its ``uvicorn.run``: MONAI Label's settings in the environment
            # (``start_server_init_settings``), the app folder importable
            env.update(MONAI_LABEL_APP_DIR=str(self.app), MONAI_LABEL_STUDIES=str(self.studies))
            env.update(MONAI_LABEL_APP_CONF=json.dumps(conf), MONAI_LABEL_SERVER_PORT=str(self.port))
            env["PYTHONPATH"] = str(self.app)
            command = [str(venv_python(self.venv)), "-m", "uvicorn", "monailabel.app:app"]
            command += ["--workers", str(self.uvicorn_workers), "--timeout-worker-healthcheck", str(int(timeout))]
        else:
            command = [str(venv_python(self.venv)), "-m", "monailabel.main", "start_server"]
            command += ["--app", str(self.app), "--studies", str(self.studies)]
            command += [arg for key, value in conf.items() for arg in ("--conf", key, value)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *self.options]
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
        """The body of the answer to ``method path`` (JSON ``body``); an HTTP error fails with its message."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}") from e

    def get(self, path: str, timeout: float = 60) -> Any:
        """``GET path``, decoded from JSON."""
        return json.loads(self.request("GET", path, timeout=timeout))

    def rss_mib(self) -> float:
        """Resident memory of the server's process group (server, uvicorn workers, training), MiB."""
        assert self.proc is not None, "the server has not been started"
        return group_rss_mib(self.proc.pid)

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of :meth:`log`."""
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the server's process group (the server and a training subprocess), SIGKILL after
        ``timeout``; then checks that no process of the group is left. Touches no other process."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the server's pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not group_members(group):
                break
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the server, so that it does not stay behind as a zombie
                if not group_members(group):
                    break
                time.sleep(0.5)
        self.proc.wait(timeout=30)
        assert not group_members(group), f"processes of the server's group {group} survived: {group_members(group)}"


def group_members(group: int) -> list[int]:
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


def group_rss_mib(group: int) -> float:
    """The summed ``VmRSS`` of the live processes of process group ``group``, MiB (shared pages count in each)."""
    total_kib = 0
    for pid in group_members(group):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # the process ended meanwhile
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kib += int(found.group(1)) if found else 0
    return total_kib / 1024.0


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of voxels where two label maps agree."""
    return float((np.rint(a).astype(int) == np.rint(b).astype(int)).mean())


def run_checked(command: list[str], cwd: Path, timeout: float = 900) -> None:
    """Run ``command`` in the clean environment; a failure shows the end of its output."""
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-4000:]}"


def infer_study(server: MonaiLabelServer, image_id: str, out: Path) -> tuple[nib.Nifti1Image, float]:
    """``POST /infer`` of the bundle for the study ``image_id``; the label map (saved to ``out``) and the seconds."""
    started = time.monotonic()
    out.write_bytes(server.request("POST", f"/infer/{NAME}?image={image_id}&output=image"))
    elapsed = time.monotonic() - started
    return nib.load(str(out)), elapsed


def wait_for_training(server: MonaiLabelServer, task_id: str, timeout: float = TRAIN_TIMEOUT_S) -> dict:
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


def package_app(
    venv: Path, trained_bundle: Path, overrides: Sequence[Path], work: Path, **package_options: Any
) -> tuple[Path, Path]:
    """The packaged bundle in a fresh ``monaibundle`` app, as a user makes it: ``package_bundle`` (with
    ``overrides`` baked in, and ``package_options`` such as ``folds="all"``), ``monailabel apps --download``, then
    ``monai.bundle download`` of the zip into the app. Returns the app folder and the bundle folder inside it (which
    has ``models/model.pt``)."""
    python = str(venv_python(venv))
    cwd = work / "clean-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    zip_path = package_bundle(trained_bundle, work / "dist", overrides=list(overrides), **package_options)
    apps = work / "apps"
    run_checked(
        [python, "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle", "--output", str(apps)], cwd
    )
    app = apps / "monaibundle"
    download = [python, "-m", "monai.bundle", "download", "--name", NAME, "--url", zip_path.as_uri()]
    run_checked([*download, "--bundle_dir", str(app / "model")], cwd)
    bundle = app / "model" / NAME
    assert (bundle / "models" / "model.pt").is_file(), "MONAI Label needs models/model.pt at start-up"
    return app, bundle


class Result(NamedTuple):
    """One ``/infer`` request: the study, the label map, when it was sent and answered (``time.monotonic``)."""

    image_id: str
    values: np.ndarray
    start: float
    end: float


class LoadClients:
    """``/infer`` requests of the bundle for one study each, from several client threads (``urllib``)."""

    def __init__(self, server: MonaiLabelServer, work: Path, timeout: float = 300) -> None:
        """
        Args:
            server: a started server.
            work: a folder for the returned NIfTI files (one per request).
            timeout: seconds one request may take.
        """
        self.server, self.work, self.timeout = server, work, timeout
        self.work.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._lock = threading.Lock()

    def infer(self, image_id: str) -> Result:
        """One request: the label map of ``image_id`` and its start and end."""
        with self._lock:
            self._count += 1
            out = self.work / f"pred{self._count:05d}.nii.gz"
        start = time.monotonic()
        body = self.server.request("POST", f"/infer/{NAME}?image={image_id}&output=image", timeout=self.timeout)
        end = time.monotonic()
        out.write_bytes(body)
        values = np.asarray(nib.load(str(out)).dataobj)
        out.unlink()
        return Result(image_id, values, start, end)

    def sequential(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """One request per study, one after the other: the reference results of the weights being served."""
        return {image_id: self.infer(image_id).values for image_id in ids}

    def concurrent(
        self, ids: Sequence[str], clients: int, per_client: int, midway: Callable[[], None] | None = None
    ) -> list[Result]:
        """``clients`` threads, each sending ``per_client`` requests one after the other; client ``c``'s ``k``-th
        request asks for ``ids[(c + k) % len(ids)]``. ``midway()`` runs (in this thread) once half of all requests
        have been answered. Returns every request's :class:`Result`; a failed request raises here."""
        total, answered = clients * per_client, [0]
        half = threading.Event()

        def client(c: int) -> list[Result]:
            results = []
            for k in range(per_client):
                results.append(self.infer(ids[(c + k) % len(ids)]))
                with self._lock:
                    answered[0] += 1
                    if 2 * answered[0] >= total:
                        half.set()
            return results

        with ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
            futures = [pool.submit(client, c) for c in range(clients)]
            if midway is not None:
                while not half.wait(timeout=1):
                    if all(f.done() for f in futures):
                        break  # a client failed: its error is raised below
                midway()
            return [result for future in futures for result in future.result()]


class PeakRss:
    """Context manager: samples :meth:`MonaiLabelServer.rss_mib` every ``interval`` seconds in a thread while the
    enclosed block runs; the highest sample (MiB) is ``self.mib``."""

    def __init__(self, server: MonaiLabelServer, interval: float = 0.1) -> None:
        self.server, self.interval = server, interval
        self.mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.mib = max(self.mib, self.server.rss_mib())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, self.server.rss_mib())


def segmenting_bundle(destination: Path, epochs: int = 20) -> Path:
    """A copy of the bundle trained with the smoke settings for ``epochs`` epochs (validated once, at the end),
    enough to segment the smoke phantom: unlike the one-epoch bundle of ``tests/bundle``, whose label maps are all
    background, its predictions show whether a server ran the weights it should have, and which ones."""
    bundle = copy_bundle(destination)
    run_workflow(config_files(bundle, "train"), "train", max_epochs=epochs, val_interval=epochs)
    return bundle
