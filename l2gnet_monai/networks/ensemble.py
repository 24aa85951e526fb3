# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""An ensemble of trained networks (the folds of a cross-validation) that averages their softmax outputs."""

from __future__ import annotations

import itertools
import pydoc
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FoldEnsemble"]


class FoldEnsemble(nn.Module):
    """The members' class probabilities averaged, optionally over mirrored inputs too, as nnU-Net ensembles its folds.

    Every member is built from the same ``network`` definition (the plan's, ``{"_target_": "package.Class",
    **arguments}``) and loaded with the weights of one fold. For an input ``x`` the ensemble runs each member on ``x``
    and, with ``flip_axes``, on every combination of mirrorings of ``x`` along those axes (mirrored back
    afterwards), and averages the softmax of all these outputs in float32. It returns the **logarithm** of the
    average: ``softmax`` of the output is the average itself and ``argmax`` picks the same class, so the ensemble
    drops into pipelines written for one network's logits (the bundle's ``InvertToLabelsd(softmax=True)``,
    ``AsDiscrete(argmax=True)``, MONAI Label's post-processing).

    The ensemble is for inference: its members' weights come from separate trainings, so it stays in eval mode,
    its parameters do not require gradients and it says so in ``trainable = False`` (which
    :class:`~l2gnet_monai.losses.L2GNetLoss` refuses: train the folds instead). :meth:`load_state_dict` loads
    exactly the members' weights (``members.K.*``) whatever ``strict`` says: a lenient loader (MONAI Label loads
    with ``strict=False``) cannot leave a member random.

    Args:
        network: the members' definition, as a training plan records it.
        num_members: number of members (folds).
        flip_axes: spatial axes (0 = the first spatial axis of the input) to mirror at test time; ``()`` for none.
            ``[0, 1]`` runs each member 4 times: as is, mirrored along axis 0, along axis 1, and along both.
    """

    #: an ensemble of trained folds is used, never trained further
    trainable = False

    def __init__(self, network: Mapping[str, Any], num_members: int, flip_axes: Sequence[int] = ()) -> None:
        super().__init__()
        if int(num_members) < 1:
            raise ValueError(f"FoldEnsemble: num_members must be at least 1, got {num_members}.")
        definition = dict(network)
        target = str(definition.pop("_target_", ""))
        member_class = pydoc.locate(target)
        if not isinstance(member_class, type) or not issubclass(member_class, nn.Module):
            raise ValueError(f"FoldEnsemble: network['_target_'] {target!r} is not an importable torch.nn.Module.")
        self.init_args: dict[str, Any] = {
            "network": {"_target_": target, **definition},
            "num_members": int(num_members),
            "flip_axes": [int(a) for a in flip_axes],
        }
        self.members = nn.ModuleList(member_class(**definition) for _ in range(int(num_members)))
        self.members.requires_grad_(False)
        self.train(False)
        self.out_channels = getattr(self.members[0], "out_channels", None)
        self.spatial_dims = getattr(self.members[0], "spatial_dims", None)
        axes = sorted(set(self.init_args["flip_axes"]))
        #: the tensor dims mirrored in each pass, ``()`` first
        self.flip_sets: list[tuple[int, ...]] = [
            tuple(a + 2 for a in combination)
            for r in range(len(axes) + 1)
            for combination in itertools.combinations(axes, r)
        ]

    def train(self, mode: bool = True) -> FoldEnsemble:
        """Stays in eval mode whatever ``mode`` says: the members keep the batch-norm statistics of their training.

        (MONAI's ``eval_mode`` and evaluators switch modes back and forth; an ensemble is never trained.)
        """
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images ``(B, C_in, *spatial)``.

        Returns:
            ``log`` of the mean class probabilities, float32 ``(B, out_channels, *spatial)``.
        """
        total: torch.Tensor | None = None
        for member in self.members:
            for dims in self.flip_sets:
                logits = member(torch.flip(x, dims) if dims else x)
                probabilities = torch.softmax(logits.float(), dim=1)
                if dims:
                    probabilities = torch.flip(probabilities, dims)
                total = probabilities if total is None else total + probabilities
        assert total is not None
        mean = total / (len(self.members) * len(self.flip_sets))
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load every member's weights; a partial state dict is refused whatever ``strict`` says.

        Raises:
            RuntimeError: missing or unexpected entries (PyTorch's message, naming them).
        """
        return super().load_state_dict(state_dict, strict=True, assign=assign)
