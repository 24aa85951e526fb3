"""L2GMapper: eq. (3) against an independent reference built on POT, the relation of its two modes, gradients."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from l2gnet_monai.networks.l2g_mapper import L2GMapper, positional_prior


def _mapper(mode: str, grid, **kwargs) -> L2GMapper:
    torch.manual_seed(0)
    options = {"num_references": 2, "num_anchors": 6, "kernel_sigma": 0.8, "sinkhorn_epsilon": 0.5}
    options.update(kwargs)
    return L2GMapper(2, in_channels=5, out_channels=3, reference_grid=grid, mode=mode, **options).double()


def _prior_1d(n: int, t: int, sigma: float) -> np.ndarray:
    i = (np.arange(n)[:, None] + 0.5) / n
    j = (np.arange(t)[None, :] + 0.5) / t
    return np.exp(-(((i - j) / sigma) ** 2))


def test_positional_prior_is_the_papers_gaussian_per_axis() -> None:
    torch.testing.assert_close(
        positional_prior([6], [6], 0.1).double(), torch.from_numpy(_prior_1d(6, 6, 0.1)), rtol=1e-6, atol=1e-7
    )
    expected_2d = np.kron(_prior_1d(4, 2, 0.3), _prior_1d(6, 3, 0.3))  # row-major (h, w) x (s_h, s_w)
    torch.testing.assert_close(positional_prior([4, 6], [2, 3], 0.3).double(), torch.from_numpy(expected_2d))
    assert positional_prior([2, 3, 4], [1, 1, 2], 0.5).shape == (24, 2)


def _reference_embed_map(mapper: L2GMapper, x: torch.Tensor) -> torch.Tensor:
    """Eq. (3) written out with numpy and POT, one image and one reference at a time."""
    batch, _, h, w = x.shape
    psi_all = mapper.embedding(x.flatten(2).transpose(1, 2)).detach().numpy()  # (B, n, m)
    grid = [h, w] if mapper.mode == "full" else mapper.reference_grid
    prior = np.kron(_prior_1d(h, grid[0], mapper.position_sigma), _prior_1d(w, grid[1], mapper.position_sigma))
    references = mapper.references_for([h, w]).detach().numpy()
    n, t = prior.shape
    outputs = np.zeros((batch, mapper.num_references, n, references.shape[-1]))
    for b in range(batch):
        psi = psi_all[b]
        for r, reference in enumerate(references):
            similarity = prior * (psi @ reference.T)
            plan = ot.sinkhorn(
                np.full(n, 1 / n), np.full(t, 1 / t), -similarity, mapper.sinkhorn_epsilon, method="sinkhorn_log"
            )
            weights = prior * plan
            bins = (weights.T @ psi) / weights.sum(0)[:, None]
            if mapper.mode == "full":
                outputs[b, r] = bins
            else:
                outputs[b, r] = (weights @ bins) / weights.sum(1)[:, None]
    q, m = mapper.num_references, references.shape[-1]
    mapped = outputs.transpose(0, 1, 3, 2).reshape(batch, q * m, h, w) / math.sqrt(q)
    return torch.from_numpy(mapped)


@pytest.mark.parametrize("mode,grid", [("pooled", 2), ("pooled", (3, 2)), ("full", (4, 3))])
def test_embedding_matches_an_independent_reference(mode: str, grid) -> None:
    mapper = _mapper(mode, grid, sinkhorn_iterations=2000, position_sigma=0.4).eval()
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(mapper.embed_map(x), _reference_embed_map(mapper, x), atol=1e-6, rtol=1e-5)


def test_pooled_with_one_bin_per_position_is_the_plan_weighted_mean_of_full_bins() -> None:
    """With t = n both modes build the same plan W and bins y; pooled returns sum_j W_ij y_j / sum_j W_ij."""
    full = _mapper("full", (3, 3), position_sigma=0.3).eval()
    pooled = _mapper("pooled", (3, 3), position_sigma=0.3).eval()
    pooled.load_state_dict(full.state_dict())
    x = torch.randn(1, 5, 3, 3, dtype=torch.float64)

    bins = full.embed_map(x).reshape(1, 2, 6, 9).permute(0, 1, 3, 2)  # (B, q, n, m): bin j at position j
    psi = full.embedding(x.flatten(2).transpose(1, 2))
    prior = positional_prior([3, 3], [3, 3], 0.3).double()
    similarity = torch.einsum("bnm,qtm->bqnt", psi, full.references) * prior
    weights = full.transport_plan(-similarity) * prior
    expected = torch.einsum("bqnt,bqtm->bqnm", weights, bins) / weights.sum(-1, keepdim=True)

    torch.testing.assert_close(pooled.embed_map(x), expected.permute(0, 1, 3, 2).reshape(1, 12, 3, 3))


@pytest.mark.parametrize("mode", ["full", "pooled"])
def test_tiny_positional_sigma_makes_both_modes_the_kernel_embedding_itself(mode: str) -> None:
    """With S = identity (t = n, sigma -> 0) every position keeps its own embedding: o_i = psi(x_i) / sqrt(q)."""
    mapper = _mapper(mode, (4, 5), position_sigma=1e-3).eval()
    x = torch.randn(2, 5, 4, 5, dtype=torch.float64)
    psi = mapper.embedding(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 6, 4, 5)
    expected = torch.cat([psi, psi], dim=1) / math.sqrt(2)
    torch.testing.assert_close(mapper.embed_map(x), expected)


@pytest.mark.parametrize("mode,grid", [("pooled", 2), ("full", (4, 4))])
def test_gradients_reach_references_anchors_and_input(mode: str, grid) -> None:
    mapper = _mapper(mode, grid).float().train()
    x = torch.randn(2, 5, 4, 4, requires_grad=True)
    mapper(x).square().sum().backward()
    for name, grad in [
        ("references", mapper.references.grad),
        ("anchors", mapper.embedding.anchors.grad),
        ("input", x.grad),
    ]:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_full_mode_resamples_references_for_another_grid() -> None:
    mapper = _mapper("full", (4, 4)).float().eval()
    out = mapper(torch.randn(1, 5, 6, 3))
    assert out.shape == (1, 3, 6, 3)
    assert mapper.references_for([6, 3]).shape == (2, 18, 6)
    assert mapper.references_for([4, 4]) is mapper.references


def test_pooled_mode_accepts_any_grid_and_3d_maps() -> None:
    mapper = L2GMapper(3, in_channels=8, out_channels=4, reference_grid=2, num_anchors=4, num_references=3)
    assert mapper(torch.randn(2, 8, 3, 5, 4)).shape == (2, 4, 3, 5, 4)
    assert mapper.references.shape == (3, 8, 4)


def test_half_precision_input_is_finite_and_keeps_dtype() -> None:
    mapper = _mapper("pooled", 2).float()
    x = (torch.randn(1, 5, 4, 4) * 1e3).half()
    with torch.no_grad():
        out = mapper.float()(x.float()).half()
        half_out = mapper.half()(x)
    assert half_out.dtype == torch.float16
    assert torch.isfinite(half_out).all()
    torch.testing.assert_close(half_out.float(), out.float(), atol=1.0, rtol=1e-2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "dense"}, "mode"),
        ({"num_references": 0}, "num_references"),
        ({"sinkhorn_iterations": 0}, "sinkhorn_iterations"),
        ({"sinkhorn_epsilon": 0.0}, "sinkhorn_epsilon"),
        ({"reference_grid": (2, 2, 2)}, "reference_grid"),
    ],
)
def test_bad_arguments_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        L2GMapper(2, 4, 4, **kwargs)


def test_the_mapper_solves_transport_with_the_tested_sinkhorn(monkeypatch) -> None:
    """One solver: the half-precision and large-norm tests of ``sinkhorn`` cover the function the model calls."""
    import l2gnet_monai.networks.l2g_mapper as mapper_module
    from l2gnet_monai.networks.sinkhorn import sinkhorn

    calls = []

    def spy(cost, *args, **kwargs):
        calls.append((cost.shape, kwargs))
        return sinkhorn(cost, *args, **kwargs)

    monkeypatch.setattr(mapper_module, "sinkhorn", spy)
    mapper = _mapper("pooled", 2, sinkhorn_iterations=7, sinkhorn_epsilon=0.3)
    for training in (True, False):
        mapper.train(training)
        mapper(torch.randn(2, 5, 4, 4, dtype=torch.float64))
    assert [c[0] for c in calls] == [(2, 2, 16, 4)] * 2
    assert all(c[1] == {"epsilon": 0.3, "num_iters": 7} for c in calls)


def test_positional_prior_is_built_once_per_grid_device_and_dtype() -> None:
    mapper = _mapper("pooled", 2).float().eval()
    first = mapper.prior_for([4, 4], [2, 2], torch.device("cpu"), torch.float32)
    assert mapper.prior_for([4, 4], [2, 2], torch.device("cpu"), torch.float32) is first
    other_grid = mapper.prior_for([6, 4], [2, 2], torch.device("cpu"), torch.float32)
    other_dtype = mapper.prior_for([4, 4], [2, 2], torch.device("cpu"), torch.float64)
    torch.testing.assert_close(other_grid, positional_prior([6, 4], [2, 2], mapper.position_sigma))
    assert other_dtype.dtype == torch.float64 and torch.equal(other_dtype.float(), first)
    with torch.no_grad():
        x = torch.randn(1, 5, 4, 4)
        torch.testing.assert_close(mapper(x), mapper(x))
    assert len(mapper._prior_cache) == 3
