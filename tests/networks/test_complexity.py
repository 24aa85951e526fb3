"""Parameters and FLOPs of a network for one input, against a hand count."""

from __future__ import annotations

import torch
from torch import nn

from l2gnet_monai.networks import count_flops, network_complexity
from tests.networks.test_l2gnet import small_net


def _tiny() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    net.register_parameter("frozen", nn.Parameter(torch.ones(5), requires_grad=False))
    return net


def test_parameters_and_flops_of_a_tiny_conv_net_match_the_hand_count() -> None:
    net = _tiny().train()
    conv_flops = 2 * (4 * 8 * 8) * (1 * 3 * 3)  # 2 per multiply-add, one per output element and kernel tap
    linear_flops = 2 * (4 * 8 * 8) * 3
    complexity = network_complexity(net, (1, 1, 8, 8))
    assert complexity == {"parameters": 4 * 9 + 4 + 256 * 3 + 3, "flops": conv_flops + linear_flops}
    assert net.training  # the mode is restored
    assert count_flops(net, (1, 1, 8, 8)) == {
        "total": conv_flops + linear_flops,
        "0": conv_flops,
        "1": 0,
        "2": 0,
        "3": linear_flops,
    }
    assert network_complexity(net, (2, 1, 8, 8))["flops"] == 2 * (conv_flops + linear_flops)


def test_l2gnet_variants_without_batch_axis_and_the_bottleneck_s_share() -> None:
    full = network_complexity(small_net(), (1, 64, 64))  # no batch axis: batch 1
    assert full == network_complexity(small_net(), (1, 1, 64, 64))
    plain = network_complexity(small_net(codebook_size=0, num_references=0), (1, 1, 64, 64))
    assert plain["parameters"] < full["parameters"] and plain["flops"] < full["flops"]
    attention = network_complexity(small_net(bottleneck="attention", attention_layers=2), (1, 1, 64, 64))
    block = 4 * 64 * 64 + 4 * 64 + 2 * 64 * 256 + 256 + 64 + 4 * 64  # attention, MLP, two LayerNorms
    # the attention is counted: 2 layers on 4 x 4 positions (projections, MLP, the attention's two products), plus
    # the quantizer's distances to its 32 codes
    n = 16
    layer_flops = 2 * n * (4 * 64 * 64 + 2 * 64 * 256) + 2 * 2 * n * n * 64
    assert attention["flops"] - plain["flops"] == 2 * layer_flops + 2 * n * 32 * 64
    # the codebook is EMA-updated, not trained: not counted
    assert attention["parameters"] - plain["parameters"] == 2 * block + 2 * 64 + 14 * 14 * 64
