# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""ReusingCheckpointLoader: a server's requests do not read the checkpoint its network already holds."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from ignite.engine import Engine
from torch import nn

from l2gnet_monai.planning import ReusingCheckpointLoader


def _counting_loads(monkeypatch) -> list:
    loads = []
    original = torch.load

    def counting(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return loads


def test_the_same_file_is_loaded_once_into_the_same_unchanged_network(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    saved, network = nn.Linear(3, 2), nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    torch.save(saved.state_dict(), path)
    loads = _counting_loads(monkeypatch)
    engine = Engine(lambda e, b: None)
    for _ in range(3):  # three requests, each with a new loader (a new ConfigWorkflow) and the server's network
        ReusingCheckpointLoader(load_path=str(path), load_dict={"model": network})(engine)
    assert len(loads) == 1
    assert torch.equal(network.weight, saved.weight)

    with torch.no_grad():  # the weights changed since (e.g. fine-tuned in place): loaded again
        network.weight.add_(1.0)
    ReusingCheckpointLoader(load_path=str(path), load_dict={"model": network})(engine)
    assert len(loads) == 2 and torch.equal(network.weight, saved.weight)

    with torch.no_grad():  # the file rewritten (a new training): loaded again
        saved.weight.mul_(2.0)
    torch.save(saved.state_dict(), path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    ReusingCheckpointLoader(load_path=str(path), load_dict={"model": network})(engine)
    assert len(loads) == 3 and torch.equal(network.weight, saved.weight)

    ReusingCheckpointLoader(load_path=str(path), load_dict={"model": nn.Linear(3, 2)})(engine)  # another network
    assert len(loads) == 4
