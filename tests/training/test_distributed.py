"""L2GNet under DistributedDataParallel (gloo, 2 CPU processes), and where each process of a job runs."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from l2gnet_monai.losses import L2GNetLoss
from l2gnet_monai.training.distributed import is_main_process, local_device, sync_batchnorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_process_group(rank: int, world_size: int, port: int, train, args: tuple, results: dict) -> None:
    """``results[rank] = train(rank, world_size, *args)`` inside a gloo process group, then exit at once.

    The process leaves with ``os._exit`` after a barrier instead of tearing the group down: freeing a
    ``DistributedDataParallel`` reducer and its gloo group at exit can deadlock in torch (the destructor joins a
    gloo worker thread with the GIL held while that thread waits for the GIL to free a tensor; seen as a test
    hung for minutes). The results are already with the parent's manager by then.
    """
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    results[rank] = train(rank, world_size, *args)
    dist.barrier()
    os._exit(0)


def _run_on_two_processes(train, *args) -> dict:
    """Run ``train`` (a module-level function) on 2 gloo processes; returns ``{rank: result}``."""
    world_size = 2
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_in_process_group, args=(world_size, _free_port(), train, args, results), nprocs=world_size)
        return dict(results)


def _train_and_compare(rank: int, world_size: int) -> dict:
    from tests.networks.test_l2gnet import _synthetic_batch, small_net

    torch.manual_seed(0)  # same initial weights on both ranks, as a bundle's seed gives
    net = small_net()
    # without DDP's buffer broadcast, only the quantizer's own synchronisation keeps the codebooks equal
    ddp = torch.nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)
    loss_fn = L2GNetLoss(network=ddp)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    torch.manual_seed(100 + rank)  # different data (and sampling randomness) on each rank
    image, label = _synthetic_batch(2)
    image = image + 0.1 * rank
    terms = []
    for step in range(4):
        if step == 2:  # force restarts: identical dead codes everywhere, replacement vectors from rank 0
            net.quantizer.ema_cluster_size.data[:8] = 0.0
        optimizer.zero_grad()
        loss = loss_fn(ddp(image), label)
        loss.backward()
        optimizer.step()
        terms.append(dict(loss_fn.last_terms))
    gathered = {}
    for name, tensor in [
        ("codebook", net.quantizer.embedding.weight),
        ("ema_w", net.quantizer.ema_w),
        ("references", net.mapper.references.detach()),
        ("conv1", net.encoder.conv1.weight.detach()),
    ]:
        copies = [torch.zeros_like(tensor) for _ in range(world_size)]
        dist.all_gather(copies, tensor.contiguous())
        gathered[name] = all(torch.equal(copies[0], c) for c in copies[1:])
    return {"synced": gathered, "terms": terms, "restarted": net.quantizer.restarted_codes}


def test_ddp_training_keeps_codebooks_identical_and_passes_the_quantization_loss() -> None:
    results = _run_on_two_processes(_train_and_compare)
    for rank in range(2):
        assert all(results[rank]["synced"].values()), results[rank]["synced"]
        assert all("quantization" in t for t in results[rank]["terms"][1:])
    # rank 0 decided the restart of step 2; both applied the same 8 codes
    assert results[0]["restarted"] == results[1]["restarted"]


def test_the_device_follows_local_rank_not_the_global_rank(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("RANK", "5")  # second node of a 2 x 4-GPU job
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == torch.device("cuda:1")
    monkeypatch.setenv("LOCAL_RANK", "4")
    with pytest.raises(ValueError, match="LOCAL_RANK: 4 names a GPU this node does not have"):
        local_device()
    monkeypatch.delenv("LOCAL_RANK")
    assert local_device() == torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == torch.device("cpu")


def test_only_rank_zero_is_the_main_process(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "3")
    assert is_main_process(), "a single process (no WORLD_SIZE) always writes its outputs"
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_sync_batchnorm_converts_on_request_and_refuses_the_cpu() -> None:
    from tests.networks.test_l2gnet import small_net

    net = small_net()
    batch_norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert batch_norms > 0
    assert sync_batchnorm(net, False, "cpu") is net
    with pytest.raises(ValueError, match="sync_batchnorm: torch's SyncBatchNorm runs on CUDA devices only"):
        sync_batchnorm(net, True, torch.device("cpu"))
    converted = sync_batchnorm(net, True, "cuda:0")  # conversion itself needs no GPU
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == batch_norms
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())


def _train_backbone(rank: int, world_size: int, backbone: str) -> dict:
    from tests.networks.test_l2gnet import _synthetic_batch, small_net

    torch.manual_seed(0)
    net = small_net(backbone=backbone)
    ddp = torch.nn.parallel.DistributedDataParallel(net)  # as the bundle: no find_unused_parameters
    loss_fn = L2GNetLoss(network=ddp)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    torch.manual_seed(100 + rank)
    image, label = _synthetic_batch(2)
    image = image + 0.1 * rank
    without_gradient: list[str] = []
    losses = []
    for step in range(2):  # DDP reports parameters that got no gradient at the next iteration
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(ddp(image), label)
        loss.backward()
        if step == 0:
            without_gradient = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
        optimizer.step()
        losses.append(float(loss))
    encoder_weights = torch.cat([p.detach().flatten() for p in net.encoder.parameters()])
    copies = [torch.zeros_like(encoder_weights) for _ in range(world_size)]
    dist.all_gather(copies, encoder_weights)
    return {
        "without_gradient": without_gradient,
        "losses": losses,
        "synced": torch.equal(copies[0], copies[1]),
        "encoder_parameters": sum(p.numel() for p in net.encoder.parameters()),
    }


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet-b0"])
def test_every_backbone_family_trains_under_ddp_with_every_parameter_used(backbone: str) -> None:
    """One family per kind of encoder L2GNet builds (torchvision-layout ResNets, MONAI's EfficientNets)."""
    results = _run_on_two_processes(_train_backbone, backbone)
    for rank in range(2):
        assert results[rank]["without_gradient"] == [], results[rank]["without_gradient"]
        assert all(math.isfinite(v) for v in results[rank]["losses"])
        assert results[rank]["synced"]


def test_the_backbone_families_tested_are_all_that_monai_registers() -> None:
    """A new FLEXUNET_BACKBONE family in a later MONAI must get a test above (and support in build_encoder)."""
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    families = {entry["type"].__name__ for entry in FLEXUNET_BACKBONE.register_dict.values()}
    assert families <= {"ResNetEncoder", "EfficientNetEncoder"}, families


def _broadcast_after_local_updates(rank: int, world_size: int) -> dict:
    from l2gnet_monai.training.distributed import BroadcastBuffers
    from tests.networks.test_l2gnet import _synthetic_batch, small_net

    torch.manual_seed(0)
    net = small_net()
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    torch.manual_seed(100 + rank)
    image, _ = _synthetic_batch(2)
    ddp(image + rank)  # a training pass: each rank's batch norms update from its own slices
    before = net.encoder.bn1.running_mean.clone()
    BroadcastBuffers(ddp)()
    after = net.encoder.bn1.running_mean
    copies = [torch.zeros_like(after) for _ in range(world_size)]
    dist.all_gather(copies, after)
    return {"differed": not torch.equal(before, copies[0]) or rank == 0, "equal": torch.equal(copies[0], copies[1])}


def test_validation_starts_from_rank_zeros_batch_norm_statistics() -> None:
    results = _run_on_two_processes(_broadcast_after_local_updates)
    assert results[1]["differed"], "the test needs rank-local statistics to start from"
    assert results[0]["equal"] and results[1]["equal"]
