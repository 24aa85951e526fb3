"""L2GNet.explain: codes, transport plans, bins and codebook usage of the bottleneck."""

from __future__ import annotations

import math

import pytest
import torch

from l2gnet_monai.networks.explain import CodeUsageRecorder, codes_to_pixels
from tests.networks.test_l2gnet import initialised_small_net


def _net(**kwargs):
    return initialised_small_net(**kwargs)


@pytest.mark.parametrize("mode", ["pooled", "full"])
def test_explain_plans_respect_the_marginals_and_bins_partition_the_positions(mode: str) -> None:
    net = _net(mapper_mode=mode, reference_grid=4 if mode == "full" else 2, num_references=3)
    x = torch.randn(2, 1, 64, 64)
    out = net.explain(x)
    grid = [4, 4]
    n, t = 16, 16 if mode == "full" else 4
    assert out["codes"].shape == (2, *grid) and out["codes"].dtype == torch.long
    assert out["plans"].shape == (2, 3, n, t)
    assert out["prior"].shape == (n, t)
    assert out["bins"].shape == (2, 3, *grid)
    plans = out["plans"]
    assert (plans >= 0).all()
    # the last Sinkhorn update fits the columns exactly, the rows up to the solver's convergence
    torch.testing.assert_close(plans.sum(-1), torch.full((2, 3, n), 1.0 / n), rtol=0.05, atol=0.0)
    torch.testing.assert_close(plans.sum(-2), torch.full((2, 3, t), 1.0 / t), rtol=1e-4, atol=1e-7)
    # every position belongs to exactly one bin, the one receiving most of its mass
    bins = out["bins"].flatten(2)
    assert ((bins >= 0) & (bins < t)).all()
    torch.testing.assert_close(plans.gather(-1, bins.unsqueeze(-1)).squeeze(-1), plans.max(-1).values)
    assert out["code_counts"].shape == (2, net.quantizer.num_embeddings)
    assert (out["code_counts"].sum(1) == n).all()
    for b in range(2):
        assert torch.equal(torch.bincount(out["codes"][b].flatten(), minlength=32), out["code_counts"][b])


def test_explain_reports_the_plans_the_forward_pass_uses() -> None:
    """Pooling with the explained plans reproduces the mapper's own output, and the logits are the forward's."""
    net = _net(num_references=2)
    x = torch.randn(2, 1, 64, 64)
    out = net.explain(x)
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], net(x))
        captured = {}
        handle = net.mapper.register_forward_pre_hook(lambda m, inputs: captured.setdefault("z", inputs[0]))
        net(x)
        handle.remove()
        expected = net.mapper.embed_map(captured["z"].float())
        psi = net.mapper.embedding(captured["z"].float().flatten(2).transpose(1, 2))
    weights = out["plans"] * out["prior"]
    bins = torch.einsum("bqnt,bnm->bqtm", weights, psi) / weights.sum(2).unsqueeze(-1)
    mapped = torch.einsum("bqnt,bqtm->bqnm", weights, bins) / weights.sum(3).unsqueeze(-1)
    mapped = mapped.permute(0, 1, 3, 2).reshape(expected.shape) / math.sqrt(2)
    torch.testing.assert_close(mapped, expected, rtol=1e-4, atol=1e-5)


def test_explain_is_deterministic_and_leaves_the_network_as_it_was() -> None:
    net = _net()
    net.train()
    codebook = net.quantizer.embedding.weight.clone()
    running_mean = net.pre_bottleneck[0].adn.N.running_mean.clone()
    x = torch.randn(2, 1, 48, 80)
    first, second = net.explain(x), net.explain(x)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert net.training  # mode restored
    assert torch.equal(net.quantizer.embedding.weight, codebook)  # no EMA update
    assert torch.equal(net.pre_bottleneck[0].adn.N.running_mean, running_mean)
    assert first["codes"].shape == (2, 3, 5)  # 48 x 80 -> 3 x 5 positions


def test_explain_still_lets_the_network_be_scripted() -> None:
    net = _net()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


def test_explain_rejects_a_volume_for_a_2d_network() -> None:
    with pytest.raises(ValueError, match="explain: expected images of shape"):
        _net().explain(torch.randn(1, 1, 64, 64, 4))


def test_code_usage_recorder_counts_pixels_per_predicted_class() -> None:
    net = _net()
    x = torch.randn(3, 1, 64, 48)
    recorder = CodeUsageRecorder(net, num_classes=3).attach()
    with torch.no_grad():
        logits = net(x)
    recorder.detach()
    with torch.no_grad():
        net(x)  # detached: not counted
    counts = recorder.class_code_counts()
    explained = net.explain(x)
    pixel_codes = codes_to_pixels(explained["codes"], (64, 48))
    classes = logits.argmax(1)
    assert counts.shape == (3, 32) and counts.sum() == 3 * 64 * 48
    assert (recorder.code_counts() == explained["code_counts"].sum(0).numpy()).all()
    for c in range(3):
        expected = torch.bincount(pixel_codes[classes == c], minlength=32).numpy()
        assert (counts[c] == expected).all()


def test_code_usage_recorder_keeps_only_the_classes_it_was_given() -> None:
    net = _net()  # 3 output channels
    recorder = CodeUsageRecorder(net, num_classes=2).attach()
    with torch.no_grad():
        logits = net(torch.randn(2, 1, 32, 32))
    recorder.detach()
    counts = recorder.class_code_counts()
    assert counts.shape == (2, 32)
    assert counts.sum() == int((logits.argmax(1) < 2).sum())


@pytest.mark.parametrize(
    "options", [{"codebook_size": 0}, {"num_references": 0}, {"bottleneck": "attention", "attention_layers": 1}]
)
def test_variants_without_quantizer_or_mapper_are_refused_in_words(options) -> None:
    from tests.networks.test_l2gnet import small_net

    net = small_net(**options).eval()
    with pytest.raises(ValueError, match="built without one"):
        net.explain(torch.randn(1, 1, 32, 32))
    assert CodeUsageRecorder.applies_to(net) == ("codebook_size" not in options)
    if "codebook_size" in options:
        with pytest.raises(ValueError, match="no vector quantizer"):
            CodeUsageRecorder(net, 3)
    else:
        recorder = CodeUsageRecorder(net, 3).attach()
        with torch.no_grad():
            net(torch.randn(1, 1, 32, 32))
        recorder.detach()
        assert recorder.code_counts().sum() == 4  # a 2 x 2 bottleneck
