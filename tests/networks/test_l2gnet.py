"""L2GNet end to end: the paper's configuration, shapes, training outputs, gradients, export, overfitting."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric

from l2gnet_monai import L2GNet
from l2gnet_monai.networks.encoders import ResNetStages
from tests.networks.test_encoders import torchvision_resnet_state_dict


def small_net(**kwargs) -> L2GNet:
    options = {
        "backbone": "resnet18",
        "out_channels": 3,
        "codebook_size": 32,
        "codebook_dim": 64,
        "num_anchors": 16,
        "reference_grid": 2,
        "decoder_channels": (32, 16, 16, 8),
    }
    options.update(kwargs)
    return L2GNet(**options)


def initialised_small_net(seed: int | None = 0, device: str | torch.device = "cpu", **kwargs) -> L2GNet:
    """:func:`small_net` on ``device`` after one training-mode pass on 4 random images (which initialises the
    codebook from data), returned in eval mode; ``seed`` seeds torch first (``None``: the current state)."""
    if seed is not None:
        torch.manual_seed(seed)
    net = small_net(**kwargs).to(device)
    net.train()
    net(torch.randn(4, 1, 64, 64, device=device))
    return net.eval()


def test_defaults_are_the_papers_configuration() -> None:
    net = L2GNet(spatial_dims=2, in_channels=1, out_channels=9)
    assert isinstance(net.encoder, ResNetStages) and net.encoder.model_name == "resnet50"
    assert net.encoder.layer4 is None  # the bottleneck sits after layer3, stride 16, 1024 channels
    assert net.quantizer.embedding.weight.shape == (512, 1024)
    assert net.mapper.num_references == 4 and net.mapper.sinkhorn_iterations == 10
    assert len(net.pre_bottleneck) == 2 and len(net.post_bottleneck) == 2
    assert len(net.decoder.blocks) == 4
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 224, 224)).shape == (1, 9, 224, 224)


@pytest.mark.parametrize("size", [(64, 64), (50, 70), (17, 33)])
def test_any_input_size_gives_logits_of_that_size(size) -> None:
    net = small_net().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, *size)).shape == (2, 3, *size)


def test_3d_network() -> None:
    net = small_net(spatial_dims=3, in_channels=2, decoder_channels=(16, 8, 8, 4)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 32, 40, 24)).shape == (1, 3, 32, 40, 24)


def test_full_mapper_mode_and_other_backbones() -> None:
    for net in (small_net(mapper_mode="full", reference_grid=4), small_net(backbone="efficientnet-b0")):
        net.eval()
        with torch.no_grad():
            assert net(torch.randn(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_eval_forward_is_deterministic_and_returns_only_logits() -> None:
    net = small_net()
    net.train()
    net(torch.randn(2, 1, 64, 64))
    net.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        first, second = net(x), net(x)
    assert isinstance(first, torch.Tensor)
    assert torch.equal(first, second)
    assert net.quantization_loss is None or net.quantization_loss.requires_grad  # eval does not overwrite it


def test_training_forward_records_quantization_loss_and_codebook_stats() -> None:
    net = small_net().train()
    net(torch.randn(2, 1, 64, 64))  # initialises the codebook with these very vectors: zero loss
    out = net(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    loss = net.pop_quantization_loss()
    assert loss is not None and loss.ndim == 0 and loss.requires_grad and loss.item() > 0
    assert net.pop_quantization_loss() is None
    assert set(net.codebook_stats) == {"perplexity", "usage", "restarted_codes"}
    assert 1 <= float(net.codebook_stats["perplexity"]) <= 32


def test_gradients_reach_references_anchors_encoder_and_the_codebook_moves() -> None:
    torch.manual_seed(0)
    net = small_net().train()
    x = torch.randn(2, 1, 64, 64)
    net(x)  # the first batch initialises the codebook
    codebook = net.quantizer.embedding.weight.clone()
    loss = net(x).logsumexp(1).mean() + net.pop_quantization_loss()
    loss.backward()
    for name in (
        "mapper.references",
        "mapper.embedding.anchors",
        "encoder.conv1.weight",
        "encoder.layer3.0.conv1.weight",
    ):
        grad = net.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert not net.quantizer.embedding.weight.requires_grad
    assert not torch.equal(net.quantizer.embedding.weight, codebook), "the EMA update must move the codebook"


def test_pretrained_encoder_argument_loads_a_local_torchvision_file(tmp_path) -> None:
    state = torchvision_resnet_state_dict("resnet18", seed=3)
    torch.save(state, tmp_path / "resnet18.pth")
    net = small_net(pretrained_encoder=str(tmp_path / "resnet18.pth"))
    assert torch.equal(net.encoder.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    with pytest.raises(ValueError, match="torchvision ResNets only"):
        small_net(backbone="efficientnet-b0", pretrained_encoder=str(tmp_path / "resnet18.pth"))


def test_wrong_input_shape_is_explained() -> None:
    with pytest.raises(ValueError, match="1 channels"):
        small_net().eval()(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="4-D input"):
        small_net().eval()(torch.randn(1, 1, 64, 64, 8))


def _trained_eval_net(**kwargs) -> L2GNet:
    net = small_net(**kwargs)
    net.train()
    net(torch.randn(2, 1, 64, 64))
    return net.eval()


@pytest.mark.parametrize("mode", ["pooled", "full"])
def test_torchscript_and_trace_give_the_eager_output(mode: str, tmp_path) -> None:
    net = _trained_eval_net(mapper_mode=mode, reference_grid=4 if mode == "full" else 2)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        eager = net(x)
        scripted = torch.jit.script(net)
        scripted.save(str(tmp_path / "model.ts"))
        reloaded = torch.jit.load(str(tmp_path / "model.ts"))
        torch.testing.assert_close(reloaded(x), eager, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.jit.trace(net, x)(x), eager, atol=1e-5, rtol=1e-5)
        other = torch.randn(1, 1, 48, 80)  # the scripted module keeps handling other sizes
        torch.testing.assert_close(reloaded(other), net(other), atol=1e-5, rtol=1e-5)


def test_onnx_export_gives_the_eager_output(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    net = _trained_eval_net()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        eager = net(x)
    path = str(tmp_path / "model.onnx")
    torch.onnx.export(net, (x,), path, dynamo=False, input_names=["image"], output_names=["logits"])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    exported = session.run(None, {"image": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(exported), eager, atol=1e-4, rtol=1e-4)


def test_cpu_autocast_keeps_the_transport_in_float32() -> None:
    net = _trained_eval_net()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert torch.isfinite(out).all()


def _synthetic_batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A disk (class 1) and a rectangle (class 2) at random places on a noisy background."""
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.zeros(n, 1, size, size)
    label = torch.zeros(n, 1, size, size, dtype=torch.long)
    for i in range(n):
        cy, cx = torch.randint(14, 50, (2,), generator=generator).tolist()
        radius = torch.randint(6, 12, (1,), generator=generator).item()
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        y0, x0 = torch.randint(4, 40, (2,), generator=generator).tolist()
        rectangle = (yy >= y0) & (yy < y0 + 14) & (xx >= x0) & (xx < x0 + 18) & ~disk
        label[i, 0][disk], label[i, 0][rectangle] = 1, 2
        image[i, 0] = 0.2 + 0.5 * disk + 0.3 * rectangle
    image += 0.05 * torch.randn(image.shape, generator=generator)
    return image, label


def test_small_l2gnet_overfits_a_tiny_batch_without_codebook_collapse() -> None:
    """resnet18 with the paper's quantizer and mapper defaults (K=512, D=1024, q=4) learns a tiny batch."""
    torch.manual_seed(0)
    image, label = _synthetic_batch()
    net = L2GNet(backbone="resnet18", out_channels=3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    one_hot = lambda t: torch.nn.functional.one_hot(t[:, 0], 3).permute(0, 3, 1, 2)  # noqa: E731
    dice, losses = 0.0, []
    for step in range(1, 151):
        net.train()
        optimizer.zero_grad()
        loss = loss_fn(net(image), label) + net.pop_quantization_loss()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0:
            net.eval()
            with torch.no_grad():
                prediction = net(image).argmax(1, keepdim=True)
            dice = DiceMetric(include_background=False)(one_hot(prediction), one_hot(label)).mean().item()
            if dice > 0.9:
                break
    assert dice > 0.9, f"Dice {dice:.3f} after {step} steps"
    assert losses[-1] < 0.5 * losses[0]
    assert float(net.codebook_stats["perplexity"]) > 8, net.codebook_stats  # 64 positions did not fall onto one code


def _mapper_inputs(net: L2GNet, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """What the L2GMapper receives for ``x``, in float32 or under CPU autocast in ``dtype``."""
    seen: list[torch.Tensor] = []
    hook = net.mapper.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            net(x)
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_mapper_receives_the_float32_codes_of_the_float32_path(dtype: torch.dtype) -> None:
    net = initialised_small_net()
    x = torch.randn(2, 1, 64, 64)
    reference = _mapper_inputs(net, x, None)
    codes = _mapper_inputs(net, x, dtype)
    assert codes.dtype == torch.float32
    # the codebook's rows themselves, not rounded to the autocast dtype on the way
    rows = codes.permute(0, 2, 3, 1).reshape(-1, codes.shape[1])
    assert torch.isin(rows, net.quantizer.embedding.weight).all()
    torch.testing.assert_close(codes, reference, rtol=0, atol=0)


def _load_with_checkpoint_loader(net: L2GNet, path, **kwargs) -> None:
    from ignite.engine import Engine
    from monai.handlers import CheckpointLoader

    CheckpointLoader(load_path=str(path), load_dict={"model": net}, **kwargs)(Engine(lambda engine, batch: None))


@pytest.mark.parametrize("loader", ["CheckpointLoader(strict_shape=False)", "copy_model_state, strict=False"])
def test_a_lenient_load_of_another_backbone_is_refused_and_changes_nothing(loader: str, tmp_path) -> None:
    from monai.networks.utils import copy_model_state

    from l2gnet_monai.networks import CheckpointMismatchError

    torch.manual_seed(0)
    torch.save({"model": small_net(backbone="resnet18").state_dict()}, tmp_path / "model.pt")
    net = small_net(backbone="resnet34")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="does not fit.*resnet34.*filled in with the network's own"):
        if loader.startswith("CheckpointLoader"):
            _load_with_checkpoint_loader(net, tmp_path / "model.pt", strict=False, strict_shape=False)
        else:
            checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
            net.load_state_dict(copy_model_state(net, checkpoint, inplace=False)[0], strict=False)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_fitting_checkpoint_still_loads_through_copy_model_state_and_strict_false() -> None:
    from monai.networks.utils import copy_model_state

    torch.manual_seed(0)
    trained = small_net()
    net = small_net()
    net.load_state_dict(copy_model_state(net, trained.state_dict(), inplace=False)[0], strict=False)
    for key, value in net.state_dict().items():
        assert torch.equal(value, trained.state_dict()[key]), key


def test_checkpoint_loader_with_strict_shape_false_is_refused_even_for_a_fitting_checkpoint(tmp_path) -> None:
    """MONAI's CheckpointLoader(strict_shape=False) merges the checkpoint's dict ({"model": ...}) rather than the
    state dict inside it, so it takes nothing from any checkpoint; the network would keep its random weights."""
    from l2gnet_monai.networks import CheckpointMismatchError

    torch.save({"model": small_net().state_dict()}, tmp_path / "model.pt")
    with pytest.raises(CheckpointMismatchError, match="filled in with the network's own tensors"):
        _load_with_checkpoint_loader(small_net(), tmp_path / "model.pt", strict=False, strict_shape=False)
