# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Nyström embedding of a homogeneous Gaussian kernel on the sphere, with learnable anchors."""

import torch
from torch import nn

__all__ = ["NystromEmbedding", "inverse_sqrt_psd"]


class _InverseSqrtPSD(torch.autograd.Function):
    """``(A)^{-1/2}`` of a symmetric PSD matrix with a backward that stays finite for repeated eigenvalues.

    With ``A = V diag(l) V^T`` and ``s_i = sqrt(max(l_i, 0)) + eps`` the forward returns
    ``V diag(1 / s) V^T``. By the Daleckii-Krein formula its derivative is
    ``V (F * (V^T dA V)) V^T`` with the divided differences
    ``F_ij = -1 / (s_i s_j (sqrt(l_i) + sqrt(l_j)))``, which, unlike ``torch.linalg.eigh``'s own
    backward, never divides by ``l_i - l_j``. A Gram matrix of nearly orthogonal anchors has all its
    eigenvalues close to 1, where eigh's backward overflows.
    """

    @staticmethod
    def forward(ctx, matrix, eps):  # type: ignore[override]
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
        root = eigenvalues.clamp_min(0).sqrt()
        scale = 1.0 / (root + eps)
        ctx.save_for_backward(eigenvectors, root, scale)
        return (eigenvectors * scale.unsqueeze(-2)) @ eigenvectors.transpose(-1, -2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        eigenvectors, root, scale = ctx.saved_tensors
        root_sum = (root.unsqueeze(-1) + root.unsqueeze(-2)).clamp_min(torch.finfo(root.dtype).eps ** 0.5)
        divided_differences = -(scale.unsqueeze(-1) * scale.unsqueeze(-2)) / root_sum
        grad_sym = 0.5 * (grad_output + grad_output.transpose(-1, -2))
        inner = eigenvectors.transpose(-1, -2) @ grad_sym @ eigenvectors
        return eigenvectors @ (divided_differences * inner) @ eigenvectors.transpose(-1, -2), None


def inverse_sqrt_psd(matrix: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Regularised inverse square root ``V diag(1 / (sqrt(l) + eps)) V^T`` of a symmetric PSD matrix.

    Args:
        matrix: symmetric positive semi-definite matrix, shape ``(..., m, m)``.
        eps: added to the square roots of the eigenvalues; bounds the result's norm by ``1 / eps``.

    Returns:
        A symmetric matrix of the same shape, differentiable with a stable backward.
    """
    return _InverseSqrtPSD.apply(matrix, eps)


class NystromEmbedding(nn.Module):
    """Explicit finite-dimensional embedding ``psi`` of a kernel, by the Nyström method (Williams & Seeger).

    The kernel is the homogeneous Gaussian kernel on the sphere used by OTK (Mialon et al. 2021):
    ``k(x, y) = ||x|| ||y|| kappa(<x/||x||, y/||y||>)`` with ``kappa(u) = exp((u - 1) / sigma^2)``.
    With ``m`` unit-norm anchors ``W`` the embedding is

        ``psi(x) = ||x|| * kappa(W W^T)^{-1/2} kappa(W x / ||x||)``,

    so that ``<psi(x), psi(y)> = k(x, y)`` for points in the span of the anchors' feature maps. The
    anchors are learnable; they are kept on the sphere by normalising them in ``forward``. In eval
    mode the inverse square root of the anchor Gram matrix is computed once and cached, which also
    keeps the eigendecomposition out of traced and exported graphs.

    Args:
        in_channels: dimension ``D`` of the input vectors.
        num_anchors: number ``m`` of anchors, the embedding's dimension.
        kernel_sigma: bandwidth ``sigma`` of ``kappa`` (``alpha = 1 / sigma^2``).
        eps: regularisation of the Gram matrix's inverse square root (see :func:`inverse_sqrt_psd`).
    """

    def __init__(self, in_channels: int, num_anchors: int, kernel_sigma: float = 0.5, eps: float = 1e-2) -> None:
        super().__init__()
        if in_channels < 1 or num_anchors < 1:
            raise ValueError(
                f"NystromEmbedding: in_channels and num_anchors must be >= 1, got {in_channels} and {num_anchors}."
            )
        if kernel_sigma <= 0:
            raise ValueError(f"NystromEmbedding: kernel_sigma must be > 0, got {kernel_sigma}.")
        self.in_channels = in_channels
        self.num_anchors = num_anchors
        self.kernel_sigma = kernel_sigma
        self.alpha = 1.0 / kernel_sigma**2
        self.eps = eps
        self.anchors = nn.Parameter(nn.functional.normalize(torch.randn(num_anchors, in_channels), dim=-1))
        self.register_buffer("cached_inverse_sqrt", torch.eye(num_anchors), persistent=False)
        self._cache_key = ""
        self.register_load_state_dict_post_hook(_refresh_cache_after_load)

    def kappa(self, cosine: torch.Tensor) -> torch.Tensor:
        """The dot-product kernel ``exp(alpha (u - 1))`` on cosine similarities."""
        return torch.exp(self.alpha * (cosine - 1.0))

    def unit_anchors(self) -> torch.Tensor:
        """The anchors projected on the unit sphere, shape ``(m, D)``."""
        return nn.functional.normalize(self.anchors, dim=-1)

    @torch.jit.unused
    def inverse_sqrt_gram(self) -> torch.Tensor:
        """``kappa(W W^T)^{-1/2}``, shape ``(m, m)``, differentiable w.r.t. the anchors."""
        anchors = self.unit_anchors()
        anchors = anchors if anchors.dtype == torch.float64 else anchors.float()  # no eigh in half precision
        gram = self.kappa(anchors @ anchors.t())
        return inverse_sqrt_psd(gram, self.eps)

    def train(self, mode: bool = True) -> "NystromEmbedding":
        super().train(mode)
        # evaluators call .eval() before every batch: recompute only when the anchors changed since
        if not mode and self._cache_key != self._anchors_key():
            self.refresh_cache()
        return self

    @torch.jit.unused
    def _anchors_key(self) -> str:
        """Identifies the anchors' current values: storage, in-place version counter, device and dtype."""
        anchors = self.anchors
        return f"{anchors.data_ptr()}:{anchors._version}:{anchors.device}:{anchors.dtype}"

    @torch.jit.unused
    def refresh_cache(self) -> None:
        """Recompute the cached inverse square root from the current anchors."""
        with torch.no_grad():
            self.cached_inverse_sqrt = self.inverse_sqrt_gram().detach()
        self._cache_key = self._anchors_key()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: vectors of shape ``(..., D)``.

        Returns:
            Their embeddings, shape ``(..., m)``, in ``x``'s floating dtype promoted to at least float32.
        """
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        anchors = self.unit_anchors().to(x.dtype)
        # eval mode reads the cache, which keeps the eigendecomposition out of scripted and traced graphs
        inverse_sqrt = self.inverse_sqrt_gram() if self.training else self.cached_inverse_sqrt
        inverse_sqrt = inverse_sqrt.to(x.dtype)
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        direction = x / norm.clamp_min(1e-6)
        return (self.kappa(direction @ anchors.t()) @ inverse_sqrt) * norm


def _refresh_cache_after_load(module: nn.Module, incompatible_keys) -> None:
    if isinstance(module, NystromEmbedding) and not module.training:
        module.refresh_cache()
