"""CodebookQuantizer: data initialisation, EMA updates, dead-code restarts, statistics, eval path."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from l2gnet_monai.networks.quantizer import CodebookQuantizer


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _is_row_of(vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return torch.cdist(vectors, rows, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values < 1e-4


def test_first_training_batch_initialises_the_codebook_from_encoder_outputs() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=16, embedding_dim=8).train()
    x = torch.randn(2, 8, 6, 6) * 5 + 3
    quantizer(x)
    # after one EMA step each code is (0.99 * code + 0.01 * mean of its cluster): still close to a batch vector
    distance = torch.cdist(quantizer.embedding.weight, _rows(x)).min(dim=1).values
    assert (distance < 0.2 * x.std()).all()
    assert bool(quantizer.initialized)


def test_ema_moves_codes_to_their_cluster_means() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=2, embedding_dim=3, decay=0.5, dead_code_threshold=0.0)
    quantizer.train()
    centres = torch.tensor([[5.0, 0.0, 0.0], [0.0, -5.0, 0.0]])
    points = torch.cat([centres[0] + 0.1 * torch.randn(8, 3), centres[1] + 0.1 * torch.randn(8, 3)])
    x = points.t().reshape(1, 3, 4, 4)
    for _ in range(30):
        quantizer(x)
    codes = quantizer.embedding.weight
    order = torch.cdist(centres, codes).argmin(dim=1)
    torch.testing.assert_close(codes[order], torch.stack([points[:8].mean(0), points[8:].mean(0)]), atol=1e-3, rtol=0)


def test_dead_codes_are_restarted_on_batch_vectors() -> None:
    torch.manual_seed(0)
    # decay ~1 freezes the EMA, so the restarted codes stay exactly where they were put
    quantizer = CodebookQuantizer(2, num_embeddings=32, embedding_dim=4, decay=1 - 1e-7).train()
    x = torch.randn(2, 4, 4, 4)
    quantizer(x)
    dead = torch.arange(32) % 4 == 0
    quantizer.ema_cluster_size.data[dead] = 0.0
    quantizer.embedding.weight.data[dead] = 1e3  # far from any input: these codes never win
    y = torch.randn(2, 4, 4, 4)
    quantizer(y)
    assert quantizer.restarted_codes == int(dead.sum())
    assert (quantizer.embedding.weight[dead].abs() < 100).all()
    assert _is_row_of(quantizer.embedding.weight[dead], _rows(y)).all()
    # distinct batch vectors for distinct codes
    assert len(torch.unique(quantizer.embedding.weight[dead], dim=0)) == int(dead.sum())


def test_restarts_leave_live_codes_alone() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=16, embedding_dim=4, decay=1 - 1e-7).train()
    quantizer(torch.randn(2, 4, 4, 4))
    dead = torch.arange(16) < 3
    quantizer.ema_cluster_size.data[dead] = 0.0
    quantizer.embedding.weight.data[dead] = 1e3
    live_codes = quantizer.embedding.weight[~dead].clone()
    live_sizes = quantizer.ema_cluster_size[~dead].clone()
    quantizer.dead_code_threshold, quantizer.decay = 0.03, 1.0  # decay 1: no EMA update after the restart
    quantizer(torch.randn(2, 4, 4, 4))
    assert int(quantizer.restarted_codes) == 3
    assert torch.equal(quantizer.ema_cluster_size[~dead], live_sizes)
    torch.testing.assert_close(quantizer.embedding.weight[~dead], live_codes)


def test_a_loaded_codebook_is_not_initialised_again() -> None:
    """Whether the codebook is initialised lives on the host too; load_state_dict restores it (a resumed run)."""
    torch.manual_seed(0)
    trained = CodebookQuantizer(2, num_embeddings=8, embedding_dim=4).train()
    trained(torch.randn(2, 4, 4, 4))
    resumed = CodebookQuantizer(2, num_embeddings=8, embedding_dim=4, dead_code_threshold=0.0, decay=1.0).train()
    resumed.load_state_dict(trained.state_dict())
    resumed(100 + torch.randn(2, 4, 4, 4))  # far away: a data initialisation would move every code there
    torch.testing.assert_close(resumed.embedding.weight, trained.embedding.weight)
    # and the other way round: loading an uninitialised state makes the next batch initialise it
    resumed.load_state_dict(CodebookQuantizer(2, num_embeddings=8, embedding_dim=4).state_dict())
    resumed(100 + torch.randn(2, 4, 4, 4))
    assert (resumed.embedding.weight > 90).all()


def test_usage_statistics_match_the_code_histogram() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=8, embedding_dim=4).train()
    x = torch.randn(1, 4, 8, 8)
    _, _, indices = quantizer(x)
    counts = torch.tensor([(indices == k).sum().item() for k in range(8)], dtype=torch.float64)
    p = counts[counts > 0] / counts.sum()
    assert math.isclose(float(quantizer.perplexity), math.exp(-(p * p.log()).sum().item()), rel_tol=1e-5)
    assert math.isclose(float(quantizer.usage), (counts > 0).double().mean().item())


def test_eval_mode_quantizes_like_training_without_touching_the_codebook() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=16, embedding_dim=8).train()
    quantizer(torch.randn(2, 8, 4, 4))
    quantizer.eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    quantized, loss, indices = quantizer(x)
    expected_indices = torch.cdist(_rows(x.detach()), quantizer.embedding.weight).argmin(1).reshape(2, 4, 4)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(quantized, quantizer.embedding.weight[indices].permute(0, 3, 1, 2))
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key
    # straight-through: d quantized / d x is the identity
    (quantized * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))
    assert loss.item() > 0


def test_eval_quantizer_scripts() -> None:
    quantizer = CodebookQuantizer(2, num_embeddings=8, embedding_dim=4).train()
    quantizer(torch.randn(1, 4, 4, 4))
    quantizer.eval()
    scripted = torch.jit.script(quantizer)
    x = torch.randn(1, 4, 3, 3)
    for a, b in zip(scripted(x), quantizer(x)):
        torch.testing.assert_close(a, b)


def test_eval_under_no_grad_skips_the_loss_and_stays_float32_under_autocast() -> None:
    torch.manual_seed(0)
    quantizer = CodebookQuantizer(2, num_embeddings=32, embedding_dim=16).train()
    quantizer(torch.randn(2, 16, 4, 4))
    quantizer.eval()
    x = torch.randn(2, 16, 4, 4)
    with_grad = quantizer(x)
    with torch.no_grad():
        quantized, loss, indices = quantizer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, _, autocast_indices = quantizer(x)
    assert with_grad[1].item() > 0 and loss.item() == 0.0
    assert torch.equal(indices, with_grad[2]) and torch.equal(autocast_indices, indices)
    torch.testing.assert_close(quantized, with_grad[0])


def test_training_under_cpu_autocast_picks_the_float32_codes_and_returns_them_in_float32() -> None:
    """MONAI's search turns off CUDA autocast only: on CPU its distance product ran in bfloat16 and, for codes
    far from the origin, picked another code for almost every input."""
    torch.manual_seed(0)
    codebook = torch.randn(64, 8) + 50
    x = torch.randn(2, 8, 8, 8) * 0.5 + 50
    picked = {}
    for name, autocast in (("fp32", False), ("bf16", True)):
        quantizer = CodebookQuantizer(2, num_embeddings=64, embedding_dim=8, data_init=False, dead_code_threshold=0)
        quantizer.train().embedding.weight.data.copy_(codebook)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            quantized, _, picked[name] = quantizer(x)
        assert quantized.dtype == torch.float32
    torch.testing.assert_close(picked["bf16"], picked["fp32"], rtol=0, atol=0)


def _skewed_batch() -> torch.Tensor:
    """256 vectors around the origin: one code of a 16-code book sits there, the other 15 far away."""
    torch.manual_seed(0)
    return torch.randn(256, 8).t().reshape(1, 8, 16, 16)


def _far_codebook(quantizer: CodebookQuantizer) -> None:
    torch.manual_seed(1)
    codes = torch.randn(16, 8) * 0.3
    codes[1:] += 6.0
    quantizer.embedding.weight.data.copy_(codes)
    quantizer.ema_w.data.copy_(codes)
    quantizer.ema_cluster_size.data.fill_(1.0)


def test_sinkhorn_assignment_spreads_a_skewed_batch_over_the_codes_and_eval_takes_the_nearest() -> None:
    x = _skewed_batch()
    usage = {}
    for assignment in ("nearest", "sinkhorn"):
        quantizer = CodebookQuantizer(
            2, 16, 8, data_init=False, dead_code_threshold=0.0, decay=1 - 1e-7, code_assignment=assignment
        ).train()
        _far_codebook(quantizer)
        _, _, indices = quantizer(x)
        usage[assignment] = (float(quantizer.perplexity), int(torch.unique(indices).numel()))
        quantizer.eval()
        _, _, eval_indices = quantizer(x)
        assert (eval_indices == 0).all()  # nearest code at evaluation, whatever the training assignment
    assert usage["nearest"] == (pytest.approx(1.0), 1)
    assert usage["sinkhorn"][0] > 8.0 and usage["sinkhorn"][1] >= 12


def test_kmeans_initialisation_quantizes_the_first_batch_closer_than_sampled_codes() -> None:
    torch.manual_seed(0)
    centres = torch.randn(6, 8) * 4
    x = (centres[torch.randint(6, (512,))] + torch.randn(512, 8)).t().reshape(2, 8, 16, 16)
    error = {}
    for init in ("sample", "kmeans"):
        torch.manual_seed(3)
        quantizer = CodebookQuantizer(2, 12, 8, decay=1 - 1e-7, codebook_init=init).train()
        quantizer(x)
        quantizer.eval()
        quantized, _, _ = quantizer(x)
        error[init] = float(((quantized - x) ** 2).mean())
    assert error["kmeans"] < 0.8 * error["sample"]


def test_kmeans_codes_are_broadcast_from_rank_0(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "broadcast", lambda tensor, src: calls.append((tuple(tensor.shape), src)))
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, op: None)
    quantizer = CodebookQuantizer(2, 4, 3, codebook_init="kmeans").train()
    quantizer(torch.randn(1, 3, 4, 4))
    assert calls == [((4, 3), 0), ((4, 3), 0)]  # the sampled start, then the k-means result


def test_unknown_init_or_assignment_is_refused() -> None:
    with pytest.raises(ValueError, match="codebook_init"):
        CodebookQuantizer(2, 4, 3, codebook_init="random")
    with pytest.raises(ValueError, match="code_assignment"):
        CodebookQuantizer(2, 4, 3, code_assignment="greedy")


def test_defaults_train_bit_identically_to_the_quantizer_before_the_options() -> None:
    """The quantizer of commit 7c1049a (before codebook_init/code_assignment), stored beside this test."""
    spec = importlib.util.spec_from_file_location("quantizer_7c1049a", Path(__file__).parent / "quantizer_7c1049a.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    outputs = []
    for cls in (module.CodebookQuantizer, CodebookQuantizer):
        torch.manual_seed(0)
        quantizer = cls(2, num_embeddings=16, embedding_dim=8).train()
        steps = [quantizer(torch.randn(2, 8, 6, 6) * 3) for _ in range(3)]
        outputs.append([t for step in steps for t in step] + [quantizer.embedding.weight.detach().clone()])
    for before, now in zip(*outputs):
        assert torch.equal(before, now)
