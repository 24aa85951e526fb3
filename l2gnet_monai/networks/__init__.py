# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""L2GNet and its building blocks: encoders, the vector quantizer, the Nystrom embedding, log-domain Sinkhorn, the
L2GMapper, TransUNet's transformer bottleneck (for the comparison), and what the bottleneck does with an image
(:mod:`~l2gnet_monai.networks.explain`); parameters and FLOPs of any network
(:mod:`~l2gnet_monai.networks.complexity`); the ensemble of trained folds
(:class:`~l2gnet_monai.networks.ensemble.FoldEnsemble`).

May import torch and MONAI only: the network is usable without the rest of the package.
"""

from l2gnet_monai.networks.attention import PreNormTransformerLayer, TransformerBottleneck
from l2gnet_monai.networks.checkpoints import CheckpointMismatchError, describe_checkpoint
from l2gnet_monai.networks.complexity import count_flops, count_parameters, network_complexity
from l2gnet_monai.networks.encoders import BackboneStages, ResNetStages, build_encoder, load_torchvision_resnet
from l2gnet_monai.networks.ensemble import FoldEnsemble
from l2gnet_monai.networks.l2g_mapper import L2GMapper, positional_prior
from l2gnet_monai.networks.l2gnet import L2GNet
from l2gnet_monai.networks.nystrom import NystromEmbedding, inverse_sqrt_psd
from l2gnet_monai.networks.quantizer import CodebookQuantizer
from l2gnet_monai.networks.sinkhorn import sinkhorn

__all__ = [
    "L2GNet",
    "CheckpointMismatchError",
    "describe_checkpoint",
    "L2GMapper",
    "FoldEnsemble",
    "TransformerBottleneck",
    "PreNormTransformerLayer",
    "NystromEmbedding",
    "CodebookQuantizer",
    "ResNetStages",
    "BackboneStages",
    "build_encoder",
    "load_torchvision_resnet",
    "positional_prior",
    "inverse_sqrt_psd",
    "sinkhorn",
    "network_complexity",
    "count_parameters",
    "count_flops",
]
