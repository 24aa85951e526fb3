"""L2GNet's variants (the paper's ablations and baselines): no quantizer, no mapper, the attention bottleneck,
the codebook remedies; and the defaults unchanged against the network of commit 7c1049a."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from l2gnet_monai import L2GNet, L2GNetLoss
from l2gnet_monai.networks import TransformerBottleneck, describe_checkpoint
from l2gnet_monai.networks.l2g_mapper import L2GMapper
from l2gnet_monai.planning.network import build_network, network_definition
from tests.networks.test_l2gnet import small_net

REFERENCE_COMMIT = "7c1049a"


def _train_step(net: L2GNet, size: int = 64) -> torch.Tensor:
    """One forward/backward of the bundle's loss in training mode; the logits."""
    net.train()
    x, y = torch.randn(2, 1, size, size), torch.randint(0, 3, (2, 1, size, size))
    logits = net(x)
    loss = L2GNetLoss(network=net)(logits, y)
    loss.backward()
    return logits


@pytest.mark.parametrize(
    "options, quantizer, mapper",
    [
        ({"codebook_size": 0}, False, L2GMapper),
        ({"num_references": 0}, True, None),
        ({"codebook_size": 0, "num_references": 0}, False, None),
        ({"bottleneck": "attention", "attention_layers": 2, "attention_heads": 4}, True, TransformerBottleneck),
        ({"bottleneck": "attention", "codebook_size": 0, "attention_layers": 1}, False, TransformerBottleneck),
    ],
)
def test_variants_build_train_and_evaluate(options, quantizer, mapper) -> None:
    torch.manual_seed(0)
    net = small_net(**options)
    assert (net.quantizer is not None) == quantizer
    assert (net.mapper is None) if mapper is None else isinstance(net.mapper, mapper)
    logits = _train_step(net)
    assert logits.shape == (2, 3, 64, 64)
    assert net.encoder.conv1.weight.grad is not None and net.pre_bottleneck[0].conv.weight.grad is not None
    if mapper is not None:
        assert all(p.grad is not None for p in net.mapper.parameters())
    if not quantizer:
        assert net.codebook_stats == {}
        assert "no codebook" in describe_checkpoint(net.state_dict())
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 50, 70)).shape == (1, 3, 50, 70)
    # the plan's definition rebuilds the same network
    rebuilt = build_network(network_definition(net))
    rebuilt.load_state_dict({k: v.clone() for k, v in net.state_dict().items()})


def test_without_quantizer_the_quantization_loss_is_a_zero_the_loss_takes() -> None:
    net = small_net(codebook_size=0).train()
    net(torch.randn(2, 1, 32, 32))
    loss = net.take_quantization_loss()
    assert loss.shape == () and float(loss) == 0.0


@pytest.mark.parametrize("size", [64, 96])
def test_attention_bottleneck_at_two_input_sizes_interpolates_the_position_embedding(size) -> None:
    torch.manual_seed(0)
    net = small_net(bottleneck="attention", attention_layers=2, attention_heads=4, attention_grid=4)
    assert net.mapper.position_embedding.shape == (1, 64, 4, 4)
    _train_step(net, size)
    assert net.mapper.position_embedding.grad is not None
    grid = [size // 16] * 2
    embedding = net.mapper.positions_for(grid)
    assert embedding.shape == (1, 64, *grid)
    if size == 64:  # the learned grid itself: no interpolation
        assert embedding is net.mapper.position_embedding
    assert "transformer bottleneck of 2 layers" in describe_checkpoint(net.state_dict())


def test_attention_heads_must_divide_the_width_and_unknown_bottlenecks_are_refused() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        small_net(bottleneck="attention", attention_heads=5)
    with pytest.raises(ValueError, match="bottleneck"):
        small_net(bottleneck="transformer")


def test_codebook_remedies_reach_the_quantizer_and_the_plan() -> None:
    net = small_net(codebook_init="kmeans", code_assignment="sinkhorn")
    assert net.quantizer.codebook_init == "kmeans" and net.quantizer.code_assignment == "sinkhorn"
    definition = network_definition(net)
    assert definition["codebook_init"] == "kmeans" and definition["code_assignment"] == "sinkhorn"
    _train_step(net)
    assert float(net.codebook_stats["usage"]) > 0


def _reference_l2gnet_class(tmp_path: Path):
    """L2GNet as of :data:`REFERENCE_COMMIT` (from git), with that commit's quantizer (stored beside the tests)."""
    root = Path(__file__).resolve().parents[2]
    try:
        source = subprocess.run(
            ["git", "show", f"{REFERENCE_COMMIT}:l2gnet_monai/networks/l2gnet.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"commit {REFERENCE_COMMIT} is not in this checkout's history")
    path = tmp_path / "l2gnet_reference.py"
    path.write_text(source)
    modules = {}
    for name, file in (("quantizer_reference", Path(__file__).parent / "quantizer_7c1049a.py"), ("l2gnet_ref", path)):
        spec = importlib.util.spec_from_file_location(name, file)
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[name] = modules[name]
        spec.loader.exec_module(modules[name])
    modules["l2gnet_ref"].CodebookQuantizer = modules["quantizer_reference"].CodebookQuantizer
    return modules["l2gnet_ref"].L2GNet


def test_default_arguments_give_bit_identical_outputs_to_the_network_before_the_variants(tmp_path) -> None:
    reference = _reference_l2gnet_class(tmp_path)
    outputs = []
    for cls in (reference, L2GNet):
        torch.manual_seed(0)
        net = cls(
            backbone="resnet18",
            out_channels=3,
            codebook_size=16,
            codebook_dim=32,
            num_anchors=8,
            reference_grid=2,
            decoder_channels=(16, 8, 8, 8),
        )
        run = []
        for _ in range(2):
            net.train()
            logits = net(torch.randn(2, 1, 32, 32))
            run += [logits.detach(), net.pop_quantization_loss().detach()]
        net.eval()
        with torch.no_grad():
            run.append(net(torch.randn(1, 1, 48, 32)))
        run += list(net.state_dict().values())
        outputs.append(run)
    assert len(outputs[0]) == len(outputs[1])
    for before, now in zip(*outputs):
        assert torch.equal(before, now)


def test_pre_norm_layer_computes_torch_s_pre_norm_transformer_encoder_layer() -> None:
    from l2gnet_monai.networks import PreNormTransformerLayer

    torch.manual_seed(0)
    layer = PreNormTransformerLayer(32, 4, 128).eval()
    reference = torch.nn.TransformerEncoderLayer(
        32, 4, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    ).eval()
    with torch.no_grad():
        reference.norm1.load_state_dict(layer.norm1.state_dict())
        reference.norm2.load_state_dict(layer.norm2.state_dict())
        reference.self_attn.in_proj_weight.copy_(layer.qkv.weight)
        reference.self_attn.in_proj_bias.copy_(layer.qkv.bias)
        reference.self_attn.out_proj.load_state_dict(layer.proj.state_dict())
        reference.linear1.load_state_dict(layer.mlp[0].state_dict())
        reference.linear2.load_state_dict(layer.mlp[3].state_dict())
        x = torch.randn(2, 10, 32)
        torch.testing.assert_close(layer(x), reference(x), atol=1e-5, rtol=1e-5)
