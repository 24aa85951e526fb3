# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Vector quantizer: MONAI's ``EMAQuantizer`` with data-dependent initialisation, dead-code restarts and statistics."""

from typing import Tuple

import torch
import torch.distributed as dist
from monai.networks.layers import EMAQuantizer

from l2gnet_monai.networks.sinkhorn import sinkhorn

__all__ = ["CodebookQuantizer", "CODEBOOK_INITS", "CODE_ASSIGNMENTS"]

#: How the codebook is initialised from the first training batch (``codebook_init``).
CODEBOOK_INITS = ("sample", "kmeans")
#: How training picks each position's code (``code_assignment``); evaluation always takes the nearest code.
CODE_ASSIGNMENTS = ("nearest", "sinkhorn")


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """float32 for reduced-precision dtypes, ``dtype`` itself for float32 and float64."""
    return torch.promote_types(dtype, torch.float32)


class CodebookQuantizer(EMAQuantizer):
    """EMA vector quantizer (VQ-VAE) that keeps its codebook in use.

    Codebook collapse is the known failure of VQ bottlenecks with wide codes: with a random
    initialisation far from the encoder's outputs only a handful of codes ever win. On top of
    :class:`monai.networks.layers.EMAQuantizer` (nearest code, straight-through estimator, EMA codebook
    updates with Laplace smoothing, commitment loss ``beta ||z - sg[e]||^2``) this
    class

    * initialises the codebook from the encoder's outputs on the first training batch: ``K`` random outputs
      (``codebook_init="sample"``), or those refined by ``kmeans_iterations`` Lloyd iterations of k-means on the
      batch (``"kmeans"``: codes at cluster centres, so a smaller quantization error from the first step);
    * optionally assigns codes by balanced optimal transport in training (``code_assignment="sinkhorn"``, as in
      SwAV's remedy for collapse): a few log-domain Sinkhorn iterations on the batch's distances to the codes
      (Euclidean, standardised per position; rows uniform over the ``N`` positions, columns uniform over the ``K``
      codes), and the code of each position is the ``argmax`` of its row of the plan, so that codes far from
      every output still receive positions; evaluation always takes the nearest code;
    * restarts *dead* codes: a code whose EMA usage falls below ``dead_code_threshold`` times the usage
      of a uniformly used codebook is moved onto a random encoder output of the current batch;
    * searches the nearest code and returns the codes in float32 under any autocast (CPU included, where
      MONAI's own search would run its distance product in bfloat16), so that reduced precision neither
      rounds the distances nor the codes that go on to the L2GMapper;
    * records, for every training batch, ``perplexity`` (``exp`` of the entropy of the code histogram),
      ``usage`` (fraction of codes used) and ``restarted_codes``.

    The training step reads nothing back to the host: the statistics stay 0-d tensors on the device (read
    them once per logging interval, as :class:`~l2gnet_monai.training.CodebookStatsHandler` does), whether
    the codebook is initialised is mirrored in a Python bool (restored by ``load_state_dict``), and dead codes
    are replaced with tensor masks rather than by counting them first.

    Under ``torch.distributed`` the EMA statistics are all-reduced (``ddp_sync``) and the vectors used
    for initialisation and restarts are broadcast from rank 0, so every rank keeps the same codebook.

    Args:
        spatial_dims: number of spatial dimensions of the input.
        num_embeddings: codebook size ``K``.
        embedding_dim: code dimension ``D``.
        commitment_cost: ``beta`` of the commitment loss.
        decay: EMA decay of the codebook statistics.
        epsilon: Laplace smoothing of the cluster sizes.
        dead_code_threshold: relative usage under which a code is restarted; 0 disables restarts.
        data_init: initialise the codebook from the first training batch.
        ddp_sync: synchronise codebook statistics across processes.
        codebook_init: ``"sample"`` (random encoder outputs) or ``"kmeans"`` (k-means on the first batch), see
            :data:`CODEBOOK_INITS`.
        code_assignment: ``"nearest"`` or ``"sinkhorn"`` (balanced, training only), see :data:`CODE_ASSIGNMENTS`.
        kmeans_iterations: Lloyd iterations of the ``"kmeans"`` initialisation.
        assignment_iterations: Sinkhorn iterations of the ``"sinkhorn"`` assignment.
        assignment_epsilon: entropic regularisation of the ``"sinkhorn"`` assignment, in units of each position's
            standard deviation of its distances to the codes (so it does not depend on the scale of the codes).

    Raises:
        ValueError: an unknown ``codebook_init`` or ``code_assignment``.
    """

    def __init__(
        self,
        spatial_dims: int,
        num_embeddings: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_threshold: float = 0.03,
        data_init: bool = True,
        ddp_sync: bool = True,
        codebook_init: str = "sample",
        code_assignment: str = "nearest",
        kmeans_iterations: int = 10,
        assignment_iterations: int = 10,
        assignment_epsilon: float = 0.05,
    ) -> None:
        if codebook_init not in CODEBOOK_INITS:
            raise ValueError(
                f"CodebookQuantizer: codebook_init must be one of {CODEBOOK_INITS}, got {codebook_init!r}."
            )
        if code_assignment not in CODE_ASSIGNMENTS:
            raise ValueError(
                f"CodebookQuantizer: code_assignment must be one of {CODE_ASSIGNMENTS}, got {code_assignment!r}."
            )
        super().__init__(
            spatial_dims=spatial_dims,
            num_embeddings=num_embeddings,
            embedding_dim=embedding_dim,
            commitment_cost=commitment_cost,
            decay=decay,
            epsilon=epsilon,
            ddp_sync=ddp_sync,
        )
        self.dead_code_threshold = dead_code_threshold
        self.data_init = data_init
        self.codebook_init = codebook_init
        self.code_assignment = code_assignment
        self.kmeans_iterations = kmeans_iterations
        self.assignment_iterations = assignment_iterations
        self.assignment_epsilon = assignment_epsilon
        self.register_buffer("initialized", torch.tensor(not data_init))
        # host mirror of the buffer, so the training step need not read it from the device
        self._initialized_host: bool = not data_init
        self.perplexity = torch.zeros(())
        self.usage = torch.zeros(())
        self.restarted_codes = torch.zeros(())

    @torch.jit.unused
    def distributed_synchronization(self, encodings_sum: torch.Tensor, dw: torch.Tensor) -> None:
        if self.ddp_sync and dist.is_available() and dist.is_initialized():
            dist.all_reduce(tensor=encodings_sum, op=dist.ReduceOp.SUM)
            dist.all_reduce(tensor=dw, op=dist.ReduceOp.SUM)

    @torch.jit.unused
    def _sample_rows(self, flat_input: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` random rows of ``flat_input`` (with replacement when there are fewer), identical on all ranks."""
        replace = flat_input.shape[0] < count
        if replace:
            index = torch.randint(flat_input.shape[0], (count,), device=flat_input.device)
        else:
            index = torch.randperm(flat_input.shape[0], device=flat_input.device)[:count]
        rows = flat_input[index].clone()
        if replace:
            rows += 1e-3 * rows.std() * torch.randn_like(rows)
        if self.ddp_sync and dist.is_available() and dist.is_initialized():
            dist.broadcast(rows, src=0)
        return rows

    @torch.jit.unused
    def _kmeans(self, flat_input: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` moved by Lloyd iterations of k-means on ``flat_input`` (rank 0's result on every rank).

        A code whose cluster is empty stays where it is (the dead-code restarts deal with it later).
        """
        for _ in range(self.kmeans_iterations):
            nearest = torch.cdist(flat_input, codes).argmin(dim=1)
            sums = torch.zeros_like(codes).index_add_(0, nearest, flat_input)
            counts = torch.zeros(codes.shape[0], device=codes.device, dtype=codes.dtype).index_add_(
                0, nearest, torch.ones_like(nearest, dtype=codes.dtype)
            )
            codes = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1), codes)
        if self.ddp_sync and dist.is_available() and dist.is_initialized():
            dist.broadcast(codes, src=0)
        return codes

    @torch.jit.unused
    def _initialise_from(self, flat_input: torch.Tensor) -> None:
        codes = self._sample_rows(flat_input, self.num_embeddings)
        if self.codebook_init == "kmeans":
            codes = self._kmeans(flat_input, codes)
        uniform_count = flat_input.shape[0] / self.num_embeddings
        self.embedding.weight.data.copy_(codes)
        self.ema_cluster_size.data.fill_(uniform_count)
        self.ema_w.data.copy_(codes * uniform_count)
        self.initialized.fill_(True)
        self._initialized_host = True

    @torch.jit.unused
    def _restart_dead_codes(self, flat_input: torch.Tensor) -> None:
        uniform_usage = self.ema_cluster_size.sum() / self.num_embeddings
        dead = self.ema_cluster_size < self.dead_code_threshold * uniform_usage
        if self.ddp_sync and dist.is_available() and dist.is_initialized():
            dist.broadcast(dead, src=0)
        # a candidate for every code, used where the code is dead: no host read of how many are
        codes = self._sample_rows(flat_input, self.num_embeddings)
        dead_rows = dead.unsqueeze(1)
        self.embedding.weight.data.copy_(torch.where(dead_rows, codes, self.embedding.weight.data))
        self.ema_cluster_size.data.copy_(torch.where(dead, uniform_usage, self.ema_cluster_size.data))
        self.ema_w.data.copy_(torch.where(dead_rows, codes * uniform_usage, self.ema_w.data))
        self.restarted_codes = dead.sum()

    @torch.jit.unused
    def quantize(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MONAI's nearest-code search, or in training with ``code_assignment="sinkhorn"`` the balanced one.

        Args:
            inputs: encoder output ``(B, D, *spatial)``.

        Returns:
            The flattened inputs ``(N, D)`` (float32), the one-hot codes ``(N, K)`` and the indices ``(B, *spatial)``.
        """
        if not (self.training and self.code_assignment == "sinkhorn"):
            return super().quantize(inputs)
        with torch.no_grad():
            flat_input = inputs.float().permute(self.flatten_permutation).reshape(-1, self.embedding_dim)
            codebook = self.embedding.weight.float()
            distances = torch.cdist(flat_input, codebook)  # (N, K)
            # standardised per position: epsilon is then relative to how much the codes differ for that position
            spread = distances.std(dim=1, keepdim=True).clamp_min(torch.finfo(distances.dtype).eps)
            cost = (distances - distances.mean(dim=1, keepdim=True)) / spread
            plan = sinkhorn(cost, epsilon=self.assignment_epsilon, num_iters=self.assignment_iterations)
            indices = plan.argmax(dim=1)
            encodings = torch.nn.functional.one_hot(indices, self.num_embeddings).float()
        return flat_input, encodings, indices.view([inputs.shape[0]] + list(inputs.shape[2:]))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        """``nn.Module``'s loading, then the host mirror of ``initialized`` from the loaded value (a resumed run)."""
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)
        if prefix + "initialized" in state_dict:
            self._initialized_host = bool(state_dict[prefix + "initialized"])

    @torch.jit.unused
    def _training_forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            flat_input = inputs.float().permute(self.flatten_permutation).reshape(-1, self.embedding_dim)
            if not self._initialized_host:
                self._initialise_from(flat_input)
            elif self.dead_code_threshold > 0:
                self._restart_dead_codes(flat_input)
        # MONAI's quantize turns off CUDA autocast only: on CPU the distances would be bf16 products
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            quantized, loss, indices = EMAQuantizer.forward(self, inputs.to(_at_least_float32(inputs.dtype)))
        with torch.no_grad():
            flat_indices = indices.flatten()  # a scatter, unlike bincount, needs no host read of the largest index
            counts = torch.zeros(self.num_embeddings, device=inputs.device).scatter_add_(
                0, flat_indices, torch.ones(flat_indices.shape, device=inputs.device)
            )
            probs = counts / counts.sum()
            self.perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            self.usage = (counts > 0).float().mean()
        return quantized, loss, indices

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            inputs: encoder output ``(B, D, *spatial)``.

        Returns:
            ``quantized`` (same shape as ``inputs``, straight-through gradient to ``inputs``; float32, float64 for
            float64 inputs: the codes leave the quantizer as the codebook holds them, also under bf16/fp16
            autocast, so that the L2GMapper's float32 transport sees the same codes at any precision), the
            commitment loss (scalar) and the code indices ``(B, *spatial)``. In training mode the codebook is
            initialised, restarted and EMA-updated first (see the class docstring).
        """
        if self.training:
            return self._training_forward(inputs)
        if torch.jit.is_scripting():
            return self._eval_forward(inputs)
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            return self._eval_forward(inputs)

    def _eval_forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest codes in float32, without the one-hot encodings that only the EMA update needs.

        The codes are returned in float32 (float64 for float64 inputs), also for bfloat16 or float16 inputs. The
        commitment loss is computed only when gradients are enabled (under ``no_grad``, as in inference, nothing
        can use it, and a zero is returned).
        """
        inputs = inputs.to(_at_least_float32(inputs.dtype))
        flat_input = inputs.float().permute(self.flatten_permutation).reshape(-1, self.embedding_dim)
        codebook = self.embedding.weight.float()
        # same expression as EMAQuantizer.quantize, so eval and training pick the same code on near ties
        distances = (
            (flat_input**2).sum(dim=1, keepdim=True)
            + (codebook.t() ** 2).sum(dim=0, keepdim=True)
            - 2 * torch.mm(flat_input, codebook.t())
        )
        spatial = [inputs.shape[0]] + [int(s) for s in inputs.shape[2:]]
        indices = torch.argmax(-distances, dim=1).view(spatial)
        quantized = self.embed(indices).to(inputs.dtype)
        if not torch.is_grad_enabled():
            return quantized, torch.zeros((), dtype=inputs.dtype, device=inputs.device), indices
        loss = self.commitment_cost * torch.nn.functional.mse_loss(quantized.detach(), inputs)
        return inputs + (quantized - inputs).detach(), loss, indices
