"""The packaged bundle under load on a real MONAI Label 0.8.5 server: 8 concurrent ``/infer`` clients over several
studies, a ``/train`` in the middle and the model reload after it (issue 17; the numbers per number of clients:
``bench/monailabel_load.py``, docs/benchmarks.md "MONAI Label under load")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bundle.conftest import SMOKE
from tests.monailabel_server import (
    NAME,
    RELOAD_LINE,
    LoadClients,
    MonaiLabelServer,
    install_package,
    make_studies,
    package_app,
    segmenting_bundle,
    wait_for_training,
)
from tests.monailabel_venv import monailabel_venv

#: Served eagerly: with the bundle's ``compile: "auto"`` the engine compiles the network in the background once it has
#: run 30 s, which a loaded machine reaches during this test and a quiet one does not; Inductor then adds about
#: 300 MiB to the server once (docs/monailabel.md, section 9), which would make the memory bound a matter of speed.
EAGER = {"compile": False}
CLIENTS = 8
STUDIES = 4  # served concurrently; 4 more, labelled, are the training data of the /train
REQUESTS_PER_CLIENT = 3  # in each concurrent phase: during the training and after it
#: How much the resident memory of the server's process group may grow from the warm server before the load to the
#: server after it (the training subprocess gone): the network loaded after the training, what the allocator keeps.
#: Measured: +34 and +24 MiB of 1.4 GiB (docs/monailabel.md, section 9).
MEMORY_BOUND_MIB = 128


@pytest.mark.slow
def test_monailabel_serves_concurrent_clients_through_a_training(tmp_path: Path) -> None:
    """8 concurrent clients over 4 studies, a ``/train`` submitted when half of their requests are answered, then
    8 clients again once the new weights are served. Every request succeeds; each result equals the sequential
    result of the same study with the weights being served (requests sent before the ``/train``: the old weights';
    later ones, while it runs: the old or the new weights'; after it: the new weights', loaded once); the
    server's memory grows by at most ``MEMORY_BOUND_MIB``."""
    timings: dict[str, float] = {}
    rss: dict[str, float] = {}
    started = time.monotonic()
    trained = segmenting_bundle(tmp_path / "trained" / NAME)
    timings["bundle_training_s"] = time.monotonic() - started
    venv = monailabel_venv()
    install_package(venv, tmp_path)
    eager = tmp_path / "eager.json"
    eager.write_text(json.dumps(EAGER))
    app, _ = package_app(venv, trained, [SMOKE, eager], tmp_path)
    ids = make_studies(tmp_path / "studies", num_cases=4 + STUDIES, labelled=4)[4:]
    # as docs/monailabel.md starts it: OpenMP spin-waiting makes inference on MONAI Label's event loop 8x slower
    # on a busy machine
    server = MonaiLabelServer(venv, app, tmp_path / "studies", NAME, tmp_path, env={"OMP_WAIT_POLICY": "PASSIVE"})
    clients = LoadClients(server, tmp_path / "preds")
    try:
        timings["server_start_s"] = server.start()
        started = time.monotonic()
        old = clients.sequential(ids)  # also the warm-up: network loaded, batch size measured
        timings["sequential_old_s"] = time.monotonic() - started
        assert all(np.count_nonzero(old[i]) for i in ids), "the served model segments nothing: a vacuous test"
        rss["warm"] = server.rss_mib()

        task: dict = {}

        def submit_training() -> None:
            submitted = time.monotonic()
            body = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
            task.update(json.loads(server.request("POST", f"/train/{NAME}", body=body)), submitted=submitted)

        started = time.monotonic()
        during = clients.concurrent(ids, CLIENTS, REQUESTS_PER_CLIENT, midway=submit_training)
        timings["concurrent_with_training_s"] = time.monotonic() - started
        finished = wait_for_training(server, task["id"])
        timings["training_done_after_s"] = time.monotonic() - task["submitted"]
        rss["trained"] = server.rss_mib()
        assert finished["status"] == "DONE", "training failed:\n" + "\n".join(finished.get("details", []))

        new = clients.sequential(ids)
        changed = [i for i in ids if not np.array_equal(old[i], new[i])]
        assert changed, "the new weights predict what the old ones did: the reload is not visible"
        started = time.monotonic()
        after = clients.concurrent(ids, CLIENTS, REQUESTS_PER_CLIENT)
        timings["concurrent_after_s"] = time.monotonic() - started
        rss["after"] = server.rss_mib()

        assert len(during) == len(after) == CLIENTS * REQUESTS_PER_CLIENT
        for result in during:
            same_old = np.array_equal(result.values, old[result.image_id])
            if result.start < task["submitted"]:
                assert same_old, f"{result.image_id}: != the old weights' sequential result"
            else:
                assert same_old or np.array_equal(result.values, new[result.image_id]), result.image_id
        for result in after:
            assert np.array_equal(result.values, new[result.image_id]), f"{result.image_id}: != the new weights'"
        reloads = RELOAD_LINE.findall(server.log())
        assert len(reloads) == 1, f"the model should be loaded again once, after the training: {reloads}"
        assert rss["after"] - rss["warm"] <= MEMORY_BOUND_MIB, f"RSS (MiB) {rss}"
        latencies = sorted(r.end - r.start for r in after)
        print(
            f"studies changed by the training: {len(changed)}/{len(ids)}; served during the training: "
            f"{sum(np.array_equal(r.values, old[r.image_id]) for r in during)} old, "
            f"{sum(np.array_equal(r.values, new[r.image_id]) for r in during)} new (of {len(during)}); "
            f"RSS (MiB) {json.dumps({k: round(v) for k, v in rss.items()})}; after the training: "
            f"{len(after) / timings['concurrent_after_s']:.2f} requests/s, p50 {latencies[len(latencies) // 2]:.2f} s"
        )
    except AssertionError as error:
        pytest.fail(f"{error}\n--- MONAI Label server log ({server.log_path}), last lines ---\n{server.log_tail()}")
    finally:
        server.stop()
        print("MONAI Label load timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
        print("MONAI Label server RSS (MiB):", json.dumps({k: round(v) for k, v in rss.items()}))
