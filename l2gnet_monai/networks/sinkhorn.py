# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Entropic optimal transport solved by Sinkhorn's algorithm in the log domain.

The solver works on batches of cost matrices ``(..., n, t)`` and is differentiable. Its backward pass
is the exact gradient of the unrolled iterations, but it keeps only the dual vectors of every
iteration instead of one ``(n, t)`` matrix per iteration, so training memory does not grow with the
number of iterations (see :class:`_UnrolledLogSinkhorn`).
"""

import math
from typing import Optional, Tuple

import torch

__all__ = ["sinkhorn", "log_sinkhorn_potentials"]


def log_sinkhorn_potentials(
    log_kernel: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, num_iters: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run ``num_iters`` log-domain Sinkhorn iterations and return the dual potentials.

    The plan is ``exp(log_kernel + f[..., :, None] + g[..., None, :])``. Each iteration first fits the
    row marginals, then the column marginals, so the column marginals of the result are exact.

    Args:
        log_kernel: ``-cost / epsilon``, shape ``(..., n, t)``.
        log_a: log of the row marginals, shape ``(..., n)`` (broadcastable).
        log_b: log of the column marginals, shape ``(..., t)`` (broadcastable).
        num_iters: number of (row, column) iteration pairs.

    Returns:
        The potentials ``f`` of shape ``(..., n)`` and ``g`` of shape ``(..., t)``.
    """
    g = torch.zeros_like(log_kernel[..., 0, :])
    f = torch.zeros_like(log_kernel[..., :, 0])
    for _ in range(num_iters):
        f = log_a - torch.logsumexp(log_kernel + g.unsqueeze(-2), dim=-1)
        g = log_b - torch.logsumexp(log_kernel + f.unsqueeze(-1), dim=-2)
    return f, g


class _UnrolledLogSinkhorn(torch.autograd.Function):
    """Log-domain Sinkhorn whose backward replays the iterations in reverse.

    Autograd through a plain loop stores two ``(..., n, t)`` tensors per iteration. Here the forward
    pass stores ``log_kernel``, the plan and the ``2 * num_iters`` dual vectors; the backward pass
    recomputes each iteration's soft-max from them. The gradient is identical to autograd's through
    :func:`log_sinkhorn_potentials` (the tests check it with ``gradcheck``).
    """

    @staticmethod
    def forward(ctx, log_kernel, log_a, log_b, num_iters):  # type: ignore[override]
        fs, gs = [], [torch.zeros_like(log_kernel[..., 0, :])]
        for _ in range(num_iters):
            f = log_a - torch.logsumexp(log_kernel + gs[-1].unsqueeze(-2), dim=-1)
            g = log_b - torch.logsumexp(log_kernel + f.unsqueeze(-1), dim=-2)
            fs.append(f)
            gs.append(g)
        plan = torch.exp(log_kernel + fs[-1].unsqueeze(-1) + gs[-1].unsqueeze(-2))
        ctx.save_for_backward(log_kernel, plan, *fs, *gs)
        ctx.num_iters = num_iters
        return plan

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_plan):  # type: ignore[override]
        log_kernel, plan, *duals = ctx.saved_tensors
        num_iters = ctx.num_iters
        fs, gs = duals[:num_iters], duals[num_iters:]
        grad_log_plan = grad_plan * plan
        grad_kernel = grad_log_plan.clone()
        grad_f = grad_log_plan.sum(-1)
        grad_g = grad_log_plan.sum(-2)
        for k in range(num_iters, 0, -1):
            # g_k = log_b - logsumexp_i(log_kernel + f_k): d g_k / d (log_kernel, f_k) = -softmax over i.
            weighted = torch.softmax(log_kernel + fs[k - 1].unsqueeze(-1), dim=-2) * grad_g.unsqueeze(-2)
            grad_kernel -= weighted
            grad_f = grad_f - weighted.sum(-1)
            # f_k = log_a - logsumexp_j(log_kernel + g_{k-1}): d f_k / d (log_kernel, g_{k-1}) = -softmax over j.
            weighted = torch.softmax(log_kernel + gs[k - 1].unsqueeze(-2), dim=-1) * grad_f.unsqueeze(-1)
            grad_kernel -= weighted
            grad_g = -weighted.sum(-2)
            grad_f = torch.zeros_like(grad_f)
        return grad_kernel, None, None, None


def sinkhorn(
    cost: torch.Tensor,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    epsilon: float = 0.1,
    num_iters: int = 10,
    lean_backward: bool = True,
) -> torch.Tensor:
    """Entropic optimal transport plan between two discrete measures, by log-domain Sinkhorn.

    Solves ``min_P <P, cost> - epsilon * H(P)`` subject to ``P 1 = a`` and ``P^T 1 = b`` (the
    formulation of ``ot.sinkhorn(a, b, M, reg=epsilon, method="sinkhorn_log")`` in POT) with a fixed
    number of iterations. All arithmetic runs in float32 (float64 stays float64), so float16 and
    bfloat16 inputs and costs of any magnitude give a finite plan; the plan is returned in the cost's
    dtype. This is the solver that :class:`~l2gnet_monai.networks.l2g_mapper.L2GMapper` calls; it scripts
    and traces (TorchScript, ONNX) with the plain loop.

    Args:
        cost: cost matrices, shape ``(..., n, t)``.
        a: row marginals ``(..., n)``, positive, summing to the same mass as ``b``. Defaults to uniform ``1/n``.
        b: column marginals ``(..., t)``. Defaults to uniform ``1/t``.
        epsilon: entropic regularisation, > 0. Smaller values give sharper plans.
        num_iters: number of Sinkhorn iterations (row update then column update), >= 1.
        lean_backward: when gradients are needed, use the memory-lean exact backward of
            :class:`_UnrolledLogSinkhorn` instead of autograd through the loop.

    Returns:
        The transport plan, shape ``(..., n, t)``.
    """
    if epsilon <= 0:
        raise ValueError(f"sinkhorn: epsilon must be > 0, got {epsilon}.")
    if num_iters < 1:
        raise ValueError(f"sinkhorn: num_iters must be >= 1, got {num_iters}.")
    compute_dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    n, t = cost.shape[-2], cost.shape[-1]
    log_kernel = -cost.to(compute_dtype) / epsilon
    log_a = _log_marginal(a, n, log_kernel)
    log_b = _log_marginal(b, t, log_kernel)
    # an autograd.Function can be neither scripted nor saved in a trace: those graphs take the plain loop
    if (
        lean_backward
        and log_kernel.requires_grad
        and torch.is_grad_enabled()
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
    ):
        plan = _lean_plan(log_kernel, log_a, log_b, num_iters)
    else:
        f, g = log_sinkhorn_potentials(log_kernel, log_a, log_b, num_iters)
        plan = torch.exp(log_kernel + f.unsqueeze(-1) + g.unsqueeze(-2))
    return plan.to(cost.dtype)


@torch.jit.unused
def _lean_plan(log_kernel: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, num_iters: int) -> torch.Tensor:
    return _UnrolledLogSinkhorn.apply(log_kernel, log_a, log_b, num_iters)


def _log_marginal(marginal: Optional[torch.Tensor], size: int, like: torch.Tensor) -> torch.Tensor:
    if marginal is None:
        return torch.full([size], -math.log(size), dtype=like.dtype, device=like.device)
    if marginal.shape[-1] != size:
        raise ValueError(f"sinkhorn: a marginal has {marginal.shape[-1]} entries where the cost has {size}.")
    return torch.log(marginal.to(like.dtype))
