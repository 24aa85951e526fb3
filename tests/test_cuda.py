"""What only a GPU can check: AMP training, the inference engine's choices on CUDA, TorchScript on the device.

Every test here is marked ``cuda`` and skips without a CUDA device; ``bench/gpu_check.sh`` runs them with
``pytest -m cuda`` on a GPU machine and records the outcome.
"""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SliceInferer
from monai.losses import DiceCELoss

from l2gnet_monai.inference.engine import TunedSliceInferer, resolve_precision
from tests.networks.test_l2gnet import _synthetic_batch, initialised_small_net, small_net

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_precision_on_this_gpu() -> None:
    major, _ = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if major >= 8 else torch.float16
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected


def test_amp_training_steps_are_finite_and_learn() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    image, label = (t.to(device) for t in _synthetic_batch())
    net = small_net().to(device)
    dtype = resolve_precision("auto", device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses = []
    for _ in range(40):
        net.train()
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=dtype):
            loss = loss_fn(net(image), label) + net.pop_quantization_loss()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_engine_on_cuda_agrees_with_fp32_slice_inferer_and_leaves_cudnn_flags_alone() -> None:
    device = torch.device("cuda")
    net = initialised_small_net(device=device)
    volume = torch.rand(1, 1, 64, 64, 16, device=device)
    previous = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False
        with torch.no_grad():
            reference = SliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=4)(volume, net)
            engine = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2)
            out = engine(volume, net)
        assert not torch.backends.cudnn.benchmark, "cudnn.benchmark is the caller's (the bundle's) choice"
        assert out.dtype == torch.float32 and out.is_cuda
        assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.999
        ((batch_size, measured),) = engine.batch_size_choices(net).values()
        assert batch_size in measured
        assert net.encoder.conv1.weight.is_contiguous(), "the caller's module keeps its memory format"
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mapper_transport_stays_float32_under_cuda_autocast(dtype: torch.dtype) -> None:
    net = initialised_small_net(None, "cuda")
    x = torch.randn(2, 1, 64, 64, device="cuda") * 100
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        out = net(x)
    with torch.no_grad():
        reference = net(x)
    assert torch.isfinite(out).all()
    assert (out.argmax(1) == reference.argmax(1)).float().mean() > 0.99


def test_torchscript_model_runs_on_the_gpu(tmp_path) -> None:
    net = initialised_small_net(None, "cuda")
    x = torch.randn(2, 1, 64, 64, device="cuda")
    with torch.no_grad():
        torch.jit.script(net).save(str(tmp_path / "model.ts"))
        loaded = torch.jit.load(str(tmp_path / "model.ts"), map_location="cuda")
        torch.testing.assert_close(loaded(x), net(x), atol=1e-4, rtol=1e-4)


def test_compiled_engine_on_cuda_agrees_with_eager() -> None:
    from l2gnet_monai.inference.compilation import compiler_available

    device = torch.device("cuda")
    available, reason = compiler_available(device)
    if not available:
        pytest.skip(reason)
    net = initialised_small_net(device=device)
    volume = torch.rand(1, 1, 64, 64, 7, device=device)  # 7 slices in batches of 4: the last one is padded
    with torch.no_grad():
        eager = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=4)(volume, net)
        engine = TunedSliceInferer(roi_size=(64, 64), spatial_dim=2, sw_batch_size=4, compile=True)
        out = engine(volume, net)
    assert engine.compiled(net) is not None and engine.compiled(net).compilations == 1
    assert out.is_cuda and (out.argmax(1) == eager.argmax(1)).float().mean() >= 0.999
