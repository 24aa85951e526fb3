# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The packaged bundle on a real MONAI Label 0.8.5 server, loaded by 1, 2, 4 and 8 concurrent ``/infer`` clients.

Server settings (``--servers``, default the first three): ``default`` (one process, as ``monailabel
start_server`` starts it), ``workers2`` (two uvicorn worker processes behind the port: ``python -m uvicorn
monailabel.app:app --workers 2 --timeout-worker-healthcheck ...``, since ``start_server --workers 2`` keeps killing
its workers on a busy machine, see ``MonaiLabelServer``), ``concurrency2`` (``MONAI_LABEL_INFER_CONCURRENCY=2``:
inference in a thread pool of 2), ``passive`` and ``workers2-passive`` (``OMP_WAIT_POLICY=PASSIVE``, as
docs/monailabel.md starts the server). For each, the script starts the server on a loopback port with the smoke
bundle trained to segment (``tests/monailabel_server.py``, as the CI load test ``tests/test_monailabel_load.py``
does), warms it up with sequential requests over the studies (the reference results), then per number of clients
sends ``--requests`` requests in all (each client one after the other) and prints, per setting and number of
clients: requests/s (requests over the wall time of the level), p50 and p95 latency, the peak resident memory of
the server's process group (summed over its processes, sampled every 0.1 s) and whether every result equals the
sequential result for its study. The bundle is served eagerly unless ``--compile auto`` (its default setting,
which compiles in the background after 30 s of inference, mid-run).

    python bench/monailabel_load.py [--servers default,workers2,concurrency2] [--requests 24] [--bundle DIR]
        [--compile false|auto] [--json FILE]

Needs the MONAI Label venv of ``tests/monailabel_venv.py`` (built on first use, 2-19 min) and about 3 min per
setting on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the server helpers live with the tests that use them (tests/monailabel_server.py); ``python bench/x.py`` puts
# bench/, not the repository root, on sys.path
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from _common import contention_warning, cpu_pressure, format_table, write_json  # noqa: E402

from tests.bundle.conftest import SMOKE  # noqa: E402
from tests.monailabel_server import (  # noqa: E402
    NAME,
    LoadClients,
    MonaiLabelServer,
    PeakRss,
    install_package,
    make_studies,
    package_app,
    segmenting_bundle,
)
from tests.monailabel_venv import monailabel_venv  # noqa: E402

#: The server settings compared: keyword arguments of :class:`MonaiLabelServer`.
SERVERS = {
    "default": {},
    "workers2": {"uvicorn_workers": 2},
    "concurrency2": {"env": {"MONAI_LABEL_INFER_CONCURRENCY": "2"}},
    "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},  # OpenMP threads sleep instead of spinning when idle
    "workers2-passive": {"uvicorn_workers": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (linear interpolation, as ``numpy.percentile``)."""
    return float(np.percentile(values, q))


def measure(server: MonaiLabelServer, clients: LoadClients, ids: list[str], levels: list[int], requests: int) -> dict:
    """Warm-up and reference (sequential requests), then each number of clients in ``levels``."""
    reference = clients.sequential(ids)
    # with several worker processes, which one answers is the kernel's choice: a few more rounds reach them all
    repeats = [clients.sequential(ids) for _ in range(3)]
    stable = all(np.array_equal(r[i], reference[i]) for r in repeats for i in ids)
    rows = []
    idle_mib = server.rss_mib()
    for n in levels:
        with PeakRss(server) as peak:
            started = time.monotonic()
            results = clients.concurrent(ids, n, max(1, requests // n))
            wall = time.monotonic() - started
        latencies = [r.end - r.start for r in results]
        rows.append(
            {
                "clients": n,
                "requests": len(results),
                "requests_per_s": len(results) / wall,
                "p50_s": percentile(latencies, 50),
                "p95_s": percentile(latencies, 95),
                "peak_rss_mib": peak.mib,
                "equal": all(np.array_equal(r.values, reference[r.image_id]) for r in results),
                "pressure": cpu_pressure(),
            }
        )
        print(f"  {n} clients: {rows[-1]}", flush=True)
    return {"idle_rss_mib": idle_mib, "sequential_stable": stable, "levels": rows, "end_rss_mib": server.rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--servers",
        default="default,workers2,concurrency2",
        help=f"comma-separated, of {', '.join(SERVERS)}; one may come again (interleaving against drift)",
    )
    parser.add_argument("--levels", default="1,2,4,8", help="numbers of concurrent clients")
    parser.add_argument("--requests", type=int, default=24, help="requests per number of clients")
    parser.add_argument("--studies", type=int, default=4, help="phantom studies the clients ask for in turn")
    parser.add_argument("--epochs", type=int, default=20, help="smoke training of the served bundle")
    parser.add_argument("--bundle", default="", help="serve this trained smoke bundle instead of training one")
    parser.add_argument(
        "--compile",
        default="false",
        choices=["false", "auto"],
        help="the served bundle's compile setting: false (eager, default here: the same network at every level) or "
        "auto (the bundle's default: compiles in the background after 30 s of eager inference, mid-run)",
    )
    parser.add_argument("--json", default="", help="write the raw numbers here")
    args = parser.parse_args()
    servers = args.servers.split(",")
    levels = [int(n) for n in args.levels.split(",")]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown --servers {sorted(unknown)}; known: {sorted(SERVERS)}")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip(),
        "cpu_cores": os.cpu_count(),
        "compile": args.compile,
        "load_average_start": os.getloadavg(),
        "cpu_pressure_start": cpu_pressure(),
    }
    with tempfile.TemporaryDirectory(prefix="monailabel-load-") as tmp:
        work = Path(tmp)
        trained = Path(args.bundle) if args.bundle else segmenting_bundle(work / "trained" / NAME, epochs=args.epochs)
        venv = monailabel_venv()
        install_package(venv, work)
        overrides = [SMOKE]
        if args.compile == "false":
            overrides.append(work / "eager.json")
            overrides[-1].write_text(json.dumps({"compile": False}))
        app, _ = package_app(venv, trained, overrides, work)
        ids = make_studies(work / "studies", num_cases=args.studies, labelled=0)
        results = {}
        for index, name in enumerate(servers):
            server = MonaiLabelServer(venv, app, work / "studies", NAME, work / str(index), **SERVERS[name])
            print(f"{name}: {SERVERS[name]}", flush=True)
            name = name if name not in results else f"{name} ({index + 1}.)"  # a setting measured again
            try:
                start_s = server.start()
                results[name] = {
                    "start_s": start_s,
                    **measure(server, LoadClients(server, work / name), ids, levels, args.requests),
                }
            finally:
                server.stop()
    info["load_average_end"] = os.getloadavg()
    info["cpu_pressure_end"] = cpu_pressure()

    rows = []
    for name, result in results.items():
        for level in result["levels"]:
            rows.append(
                [
                    name,
                    level["clients"],
                    level["requests"],
                    level["requests_per_s"],
                    level["p50_s"],
                    level["p95_s"],
                    level["peak_rss_mib"],
                    "yes" if level["equal"] and result["sequential_stable"] else "NO",
                ]
            )
    headers = ["server", "clients", "requests", "requests/s", "p50 s", "p95 s", "peak RSS MiB", "= sequential"]
    print()
    print(format_table(headers, rows))
    print()
    for name, result in results.items():
        print(
            f"{name}: start {result['start_s']:.1f} s, RSS idle {result['idle_rss_mib']:.0f} MiB, "
            f"after the levels {result['end_rss_mib']:.0f} MiB"
        )
    print(f"date {info['date']}, commit {info['commit']}, {info['cpu_cores']} cores, compile {args.compile}")
    print(f"load average start {info['load_average_start']}, end {info['load_average_end']}")
    pressures = [info["cpu_pressure_start"], info["cpu_pressure_end"]]
    pressures += [level["pressure"] for r in results.values() for level in r["levels"]]
    warning = contention_warning(pressures)
    if warning:
        print(warning)
    write_json(args.json, {"machine": info, "results": results})


if __name__ == "__main__":
    main()
