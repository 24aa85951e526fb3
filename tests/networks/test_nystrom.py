"""Nyström embedding: kernel reproduction, the stable inverse square root, and the eval-mode cache."""

from __future__ import annotations

import math

import pytest
import torch

from l2gnet_monai.networks.nystrom import NystromEmbedding, inverse_sqrt_psd


def _kernel(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Homogeneous Gaussian kernel on the sphere, written out independently of the module."""
    nx, ny = x.norm(dim=-1, keepdim=True), y.norm(dim=-1, keepdim=True)
    cosine = (x / nx) @ (y / ny).t()
    return nx * ny.t() * torch.exp((cosine - 1) / sigma**2)


def test_embedding_reproduces_the_kernel_on_the_anchors_span() -> None:
    torch.manual_seed(0)
    embedding = NystromEmbedding(in_channels=32, num_anchors=16, kernel_sigma=0.7, eps=1e-6).double()
    anchors = embedding.unit_anchors().detach()
    # points whose feature maps lie in span{phi(w_j)}: the anchors themselves, at several norms
    points = anchors * torch.linspace(0.5, 3.0, 16, dtype=torch.float64).unsqueeze(-1)
    psi = embedding(points)
    torch.testing.assert_close(psi @ psi.t(), _kernel(points, points, 0.7), atol=1e-6, rtol=1e-5)


def test_embedding_approximates_the_kernel_better_with_more_anchors() -> None:
    torch.manual_seed(1)
    x = torch.randn(40, 3, dtype=torch.float64)
    exact = _kernel(x, x, 1.0)
    errors = []
    for num_anchors in (4, 16, 64):
        embedding = NystromEmbedding(3, num_anchors, kernel_sigma=1.0, eps=1e-8).double()
        psi = embedding(x)
        errors.append((psi @ psi.t() - exact).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01 * exact.abs().max()


def test_inverse_sqrt_matches_the_definition() -> None:
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    matrix = a @ a.t() + 0.5 * torch.eye(6, dtype=torch.float64)
    root = inverse_sqrt_psd(matrix, eps=0.0)
    torch.testing.assert_close(root @ matrix @ root, torch.eye(6, dtype=torch.float64), atol=1e-10, rtol=0)


def test_inverse_sqrt_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    base = a @ a.t() + torch.eye(5, dtype=torch.float64)

    def fn(perturbation: torch.Tensor) -> torch.Tensor:
        sym = perturbation + perturbation.t()
        return inverse_sqrt_psd(base + sym, eps=1e-2)

    assert torch.autograd.gradcheck(fn, (torch.zeros(5, 5, dtype=torch.float64, requires_grad=True),))


def test_inverse_sqrt_gradient_is_finite_for_repeated_eigenvalues() -> None:
    """The Gram matrix of orthogonal anchors is the identity, where eigh's own backward divides by zero."""
    matrix = torch.eye(8, dtype=torch.float64, requires_grad=True)
    inverse_sqrt_psd(matrix).sum().backward()
    assert torch.isfinite(matrix.grad).all()
    # d/dA of sum((A)^-1/2) at A = I is -1/2 (1 + eps)^-2 * (ones + ones^T) / 2 for the symmetric part
    expected = -0.5 / (1 + 1e-2) ** 2 * torch.ones(8, 8, dtype=torch.float64)
    torch.testing.assert_close(matrix.grad, expected)


def test_wide_random_anchors_train_without_overflow() -> None:
    torch.manual_seed(0)
    embedding = NystromEmbedding(in_channels=1024, num_anchors=256)
    x = torch.randn(2, 196, 1024) * 30
    embedding(x).square().mean().backward()
    assert torch.isfinite(embedding.anchors.grad).all()
    assert embedding.anchors.grad.abs().sum() > 0


def test_eval_cache_equals_training_output_and_follows_loaded_weights() -> None:
    torch.manual_seed(0)
    embedding = NystromEmbedding(16, 8)
    x = torch.randn(10, 16)
    train_out = embedding.train()(x)
    eval_out = embedding.eval()(x)
    torch.testing.assert_close(eval_out, train_out.detach())

    other = NystromEmbedding(16, 8)
    other.eval()
    other.load_state_dict(embedding.state_dict())
    torch.testing.assert_close(other(x), eval_out)
    assert "cached_inverse_sqrt" not in embedding.state_dict()


def test_half_precision_input_is_computed_in_float32() -> None:
    embedding = NystromEmbedding(16, 8)
    out = embedding(torch.randn(4, 16).half())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="num_anchors"):
        NystromEmbedding(16, 0)
    with pytest.raises(ValueError, match="kernel_sigma"):
        NystromEmbedding(16, 4, kernel_sigma=-1.0)


def test_kappa_is_the_papers_gaussian_on_cosines() -> None:
    embedding = NystromEmbedding(4, 2, kernel_sigma=0.5)
    u = torch.tensor([1.0, 0.0, -1.0])
    torch.testing.assert_close(embedding.kappa(u), torch.tensor([1.0, math.exp(-4.0), math.exp(-8.0)]))


def test_eval_cache_is_recomputed_only_when_the_anchors_change(monkeypatch) -> None:
    embedding = NystromEmbedding(16, 8)
    calls = []
    original = embedding.inverse_sqrt_gram
    monkeypatch.setattr(embedding, "inverse_sqrt_gram", lambda: calls.append(1) or original())
    embedding.eval()
    embedding.eval()
    assert len(calls) == 1
    with torch.no_grad():
        embedding.anchors.add_(0.1)  # an optimizer step
    embedding.train().eval()
    assert len(calls) == 2
    x = torch.randn(3, 16)
    torch.testing.assert_close(embedding(x), embedding.train()(x).detach())
