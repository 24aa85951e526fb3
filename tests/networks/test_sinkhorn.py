"""Log-domain Sinkhorn against POT, its memory-lean backward against autograd, and its numerical range."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from l2gnet_monai.networks.sinkhorn import _UnrolledLogSinkhorn, log_sinkhorn_potentials, sinkhorn


def _random_marginal(rng: np.random.Generator, size: int) -> np.ndarray:
    weights = rng.uniform(0.2, 1.0, size)
    return weights / weights.sum()


@pytest.mark.parametrize("n,t,reg", [(7, 5, 0.1), (30, 12, 0.05), (16, 16, 1.0)])
def test_plan_and_marginals_match_pot(n: int, t: int, reg: float) -> None:
    rng = np.random.default_rng(n * 100 + t)
    cost = rng.uniform(0, 1, (n, t))
    a, b = _random_marginal(rng, n), _random_marginal(rng, t)
    expected = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=100000, stopThr=1e-13)

    plan = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), epsilon=reg, num_iters=5000)

    np.testing.assert_allclose(plan.numpy(), expected, atol=1e-9, rtol=1e-6)
    np.testing.assert_allclose(plan.sum(-1).numpy(), a, atol=1e-9)
    np.testing.assert_allclose(plan.sum(-2).numpy(), b, atol=1e-12)


def test_batched_uniform_plans_match_pot_per_problem() -> None:
    rng = np.random.default_rng(0)
    costs = rng.normal(size=(3, 2, 9, 4))
    plans = sinkhorn(torch.from_numpy(costs), epsilon=0.3, num_iters=3000)
    for index in np.ndindex(3, 2):
        expected = ot.sinkhorn(np.full(9, 1 / 9), np.full(4, 1 / 4), costs[index], 0.3, method="sinkhorn_log")
        np.testing.assert_allclose(plans[index].numpy(), expected, atol=1e-8)


def test_few_iterations_give_exact_column_marginals() -> None:
    cost = torch.randn(4, 50, 8, dtype=torch.float64)
    plan = sinkhorn(cost, epsilon=0.1, num_iters=3)
    torch.testing.assert_close(plan.sum(-2), torch.full((4, 8), 1 / 8, dtype=torch.float64))


def _reference_plan(log_kernel: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, iters: int) -> torch.Tensor:
    f, g = log_sinkhorn_potentials(log_kernel, log_a, log_b, iters)
    return torch.exp(log_kernel + f.unsqueeze(-1) + g.unsqueeze(-2))


def test_lean_backward_equals_autograd_through_the_loop() -> None:
    torch.manual_seed(0)
    log_kernel = torch.randn(2, 3, 11, 6, dtype=torch.float64, requires_grad=True)
    log_a = torch.full((11,), -np.log(11), dtype=torch.float64)
    log_b = torch.log(torch.softmax(torch.randn(6, dtype=torch.float64), 0))
    weights = torch.randn(2, 3, 11, 6, dtype=torch.float64)

    (lean,) = torch.autograd.grad((_UnrolledLogSinkhorn.apply(log_kernel, log_a, log_b, 7) * weights).sum(), log_kernel)
    (reference,) = torch.autograd.grad((_reference_plan(log_kernel, log_a, log_b, 7) * weights).sum(), log_kernel)

    torch.testing.assert_close(lean, reference, atol=1e-12, rtol=1e-9)
    assert torch.autograd.gradcheck(
        lambda x: _UnrolledLogSinkhorn.apply(x, log_a, log_b, 4), (log_kernel[:1, :1].detach().requires_grad_(),)
    )


def test_public_function_uses_lean_backward_and_matches_plain_gradient() -> None:
    cost = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 4, dtype=torch.float64)
    (lean,) = torch.autograd.grad((sinkhorn(cost, epsilon=0.2) * weights).sum(), cost)
    (plain,) = torch.autograd.grad((sinkhorn(cost, epsilon=0.2, lean_backward=False) * weights).sum(), cost)
    torch.testing.assert_close(lean, plain)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_costs_give_finite_plans(dtype: torch.dtype) -> None:
    cost = torch.randn(2, 64, 16).to(dtype)
    plan = sinkhorn(cost, epsilon=0.1)
    assert plan.dtype == dtype
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.float().sum(-2), torch.full((2, 16), 1 / 16), atol=2e-3, rtol=1e-2)


def test_costs_from_code_vectors_of_norm_1e3_stay_finite_with_gradients() -> None:
    codes = torch.nn.functional.normalize(torch.randn(1, 100, 1024), dim=-1) * 1e3
    codes.requires_grad_()
    references = torch.randn(16, 1024)
    cost = -(codes @ references.t())  # |cost| ~ 1e4, so cost / epsilon ~ 1e5
    plan = sinkhorn(cost, epsilon=0.1)
    plan.square().sum().backward()
    assert torch.isfinite(plan).all()
    assert torch.isfinite(codes.grad).all()
    torch.testing.assert_close(plan.sum(-2), torch.full((1, 16), 1 / 16))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(torch.rand(3, 3), epsilon=0)
    with pytest.raises(ValueError, match="num_iters"):
        sinkhorn(torch.rand(3, 3), num_iters=0)
    with pytest.raises(ValueError, match="marginal"):
        sinkhorn(torch.rand(3, 4), a=torch.full((4,), 0.25))
