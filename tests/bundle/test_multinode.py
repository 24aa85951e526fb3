"""``multi_gpu_train.json`` across two "nodes": two torchrun agents meeting through the c10d rendezvous (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.bundle.conftest import REPO, config_files, copy_bundle
from tests.bundle.test_datasets_and_bad_input import _free_port


def test_two_nodes_through_the_c10d_rendezvous_train_identical_models(trained_bundle: Path, tmp_path) -> None:
    """The documented multi-node command, node ranks 0 and 1 with one process each on localhost: both ranks end
    with the same weights and codebook, and only the global rank 0 writes checkpoints and TensorBoard logs."""
    bundle = copy_bundle(tmp_path / "l2gnet_segmentation")
    # test-only: every rank saves the final state of its own network copy
    dump = tmp_path / "dump_each_rank.json"
    save = f"$torch.save(@network.module.state_dict(), '{tmp_path}/rank' + os.environ['RANK'] + '.pt')"
    dump.write_text(json.dumps({"run": ["$@train#trainer.run()", save]}))
    files = ",".join(f"'{f}'" for f in [*config_files(bundle, "train", "multi_gpu_train"), str(dump)])
    endpoint = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    nodes = []
    for node_rank in (0, 1):
        args = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
        args += ["--node_rank", str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint]
        args += ["--rdzv_id", "l2gnet-test", "--max_restarts", "0"]
        args += ["-m", "monai.bundle", "run", "--config_file", f"[{files}]"]
        args += ["--phantom_dir", str(trained_bundle / "data" / "phantom_smoke")]
        with open(tmp_path / f"node{node_rank}.log", "w") as log:
            nodes.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [process.wait(timeout=300) for process in nodes]
    finally:
        for process in nodes:
            if process.poll() is None:
                process.kill()
    logs = "\n".join((tmp_path / f"node{r}.log").read_text()[-3000:] for r in (0, 1))
    assert codes == [0, 0], logs

    states = [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    assert {"quantizer.embedding.weight", "quantizer.ema_w", "quantizer.ema_cluster_size"} <= set(states[0])
    different = [key for key in states[0] if not torch.equal(states[0][key], states[1][key])]
    assert not different, f"ranks differ in {different}"

    written = sorted(p.name for p in (bundle / "models").iterdir() if p.name != ".gitkeep")
    expected = ["checkpoint_epoch=1.pt", "checkpoint_final.pt", "checkpoint_latest.pt", "metadata.json", "model.pt"]
    assert written == [*expected, "plan.json"]
    events = list((bundle / "eval").glob("events.out.tfevents.*"))
    writers = {name.name.split(".")[-2] for name in events}  # the writing process's id is in the file name
    # training stats, validation stats, validation overlays: three writers, all in one process
    assert len(events) == 3 and len(writers) == 1, [e.name for e in events]
