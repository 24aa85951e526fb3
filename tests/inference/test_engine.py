"""TunedSliceInferer: precision choice, memory format, measured batch size, and the same answer as SliceInferer."""

from __future__ import annotations

import time

import pytest
import torch
from monai.inferers import SliceInferer

from l2gnet_monai.inference.engine import TunedSliceInferer, cpu_has_native_bf16, measure_batch_size, resolve_precision
from tests.networks.test_l2gnet import initialised_small_net


def _cpuinfo_flags() -> set[str]:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return initialised_small_net()


def test_auto_precision_follows_the_cpus_bf16_flags() -> None:
    if not _cpuinfo_flags():
        pytest.skip("no /proc/cpuinfo flags on this system")
    native = bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})
    assert cpu_has_native_bf16() == native
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if native else None)
    assert resolve_precision("fp32", "cpu") is None
    assert resolve_precision("bf16", "cpu") == torch.bfloat16 and resolve_precision("fp16", "cpu") == torch.float16


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="precision"):
        TunedSliceInferer(roi_size=(64, 64), precision="float16")
    with pytest.raises(ValueError, match="sw_batch_size"):
        TunedSliceInferer(roi_size=(64, 64), sw_batch_size=0)


def test_fp32_gives_slice_inferers_output_and_leaves_the_network_as_it_was(net) -> None:
    volume = torch.randn(1, 1, 64, 64, 7)
    with torch.no_grad():
        expected = SliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=3)(volume, net)
    parameters = {name: (p, p.data_ptr(), p._version) for name, p in net.named_parameters()}
    engine = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=4, precision="fp32")
    with torch.inference_mode():
        out = engine(volume, net)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 64, 64, 7)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the engine ran a channels_last copy: the caller's module keeps its layout, parameter objects and storage
    assert {name: (p, p.data_ptr(), p._version) for name, p in net.named_parameters()} == parameters
    assert net.encoder.conv1.weight.is_contiguous() and not net.encoder.conv1.weight.is_inference()
    net.train()
    try:  # a model validated with the engine goes on training
        net(torch.randn(2, 1, 64, 64)).mean().backward()
    finally:
        net.zero_grad()
        net.eval()


def test_bf16_autocast_agrees_with_fp32_and_batch_size_is_measured_once(net) -> None:
    volume = torch.randn(1, 1, 64, 64, 12)
    engine = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2, precision="bf16", max_batch_size=8)
    with torch.no_grad():
        reference = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=4, precision="fp32")(volume, net)
        out = engine(volume, net)
        choices = engine.batch_size_choices(net)
        engine(volume, net)
    assert out.dtype == torch.float32
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.999
    ((key, (batch_size, measured)),) = choices.items()
    assert key == ((64, 64), 1, "cpu", str(torch.bfloat16))
    assert set(measured) <= {1, 2, 4, 8} and 1 in measured and batch_size in measured
    assert engine.batch_size_choices(net) == choices and engine.sw_batch_size == 1, "no per-call state on the engine"


def test_measured_batch_size_stops_where_throughput_saturates() -> None:
    calls = []

    def saturating(batch: torch.Tensor) -> None:  # 20 ms per call up to 4 inputs, then 5 ms per input
        calls.append(batch.shape[0])
        time.sleep(0.02 * max(1.0, batch.shape[0] / 4))

    best, throughput = measure_batch_size(saturating, torch.zeros(1, 1, 4, 4), max_batch_size=64)
    assert best == 4
    assert sorted(throughput) == [1, 2, 4, 8, 16]  # stopped after two doublings without gain
    assert throughput[4] > 1.8 * throughput[1]
    assert measure_batch_size(saturating, torch.zeros(1, 1, 4, 4), max_batch_size=2)[0] == 2


def test_a_ddp_wrapped_network_runs_through_its_module_without_layout_change(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        network = initialised_small_net()
        wrapped = torch.nn.parallel.DistributedDataParallel(network)
        volume = torch.randn(1, 1, 64, 64, 5)
        with torch.no_grad():
            out = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32")(volume, wrapped)
            expected = SliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=2)(volume, network)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        assert network.encoder.conv1.weight.is_contiguous()
    finally:
        dist.destroy_process_group()


def test_validation_during_training_leaves_the_trained_module_as_it_was() -> None:
    from monai.engines import SupervisedEvaluator

    net = initialised_small_net().train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    parameters = {name: (p, p.data_ptr()) for name, p in net.named_parameters()}
    batch = [{"image": torch.randn(1, 1, 64, 64, 5), "label": torch.zeros(1, 1, 64, 64, 5)}]
    for _ in range(2):  # train, validate, train, validate: the engine copies the new weights each time
        optimizer.zero_grad()
        net(torch.randn(2, 1, 64, 64)).mean().backward()
        optimizer.step()
        engine = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32")
        evaluator = SupervisedEvaluator(
            device=torch.device("cpu"), val_data_loader=batch, epoch_length=1, network=net, inferer=engine
        )
        evaluator.run()
        net.train()  # what the trainer does after validation
        with torch.no_grad():  # the trained weights, slice by slice
            expected = torch.stack([net.eval()(batch[0]["image"][..., i])[0] for i in range(5)], dim=-1)
        torch.testing.assert_close(evaluator.state.output[0]["pred"], expected, atol=1e-5, rtol=1e-5)
        net.train()
    assert {name: (p, p.data_ptr()) for name, p in net.named_parameters()} == parameters
    assert all(p.is_contiguous() for p in net.parameters()), "the trained module keeps its memory format"
