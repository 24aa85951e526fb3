"""L2GNetLoss: Dice + CE + quantization loss, taken from the network, inside MONAI's SupervisedTrainer."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss

from l2gnet_monai.losses import L2GNetLoss, unwrap_network
from tests.networks.test_l2gnet import _synthetic_batch, small_net


def test_loss_is_dice_ce_plus_weighted_quantization_loss() -> None:
    torch.manual_seed(0)
    net = small_net().train()
    image, label = _synthetic_batch(2)
    net(image)
    logits = net(image)
    quantization = net.quantization_loss
    loss_fn = L2GNetLoss(network=net, quantization_weight=0.5)
    loss = loss_fn(logits, label)
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label) + 0.5 * quantization
    torch.testing.assert_close(loss, expected)
    assert set(loss_fn.last_terms) == {"dice_ce", "quantization"}
    # the quantization loss of one forward pass is added once
    again = loss_fn(logits, label)
    torch.testing.assert_close(again, DiceCELoss(to_onehot_y=True, softmax=True)(logits, label))


def test_without_network_it_is_plain_dice_ce_and_keeps_no_reference() -> None:
    logits, label = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
    torch.testing.assert_close(L2GNetLoss()(logits, label), DiceCELoss(to_onehot_y=True, softmax=True)(logits, label))
    net = small_net()
    assert list(L2GNetLoss(network=net).parameters()) == []


def test_wrapped_networks_are_unwrapped() -> None:
    net = small_net()
    assert unwrap_network(torch.nn.DataParallel(torch.nn.DataParallel(net))) is net
    assert unwrap_network(net) is net


def test_supervised_trainer_learns_with_the_quantization_loss() -> None:
    """The bundle's wiring: `loss` gets `network`, the trainer calls loss(pred, label) and steps the optimizer."""
    torch.manual_seed(0)
    image, label = _synthetic_batch(4)
    data = [{"image": image[i], "label": label[i]} for i in range(4)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    net = small_net()
    loss_fn = L2GNetLoss(network=net)
    losses, quantization_terms = [], []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=40,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3),
        loss_function=loss_fn,
    )

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine) -> None:
        losses.append(engine.state.output[0]["loss"])  # decollated: one dict per sample
        quantization_terms.append(loss_fn.last_terms.get("quantization"))

    trainer.run()
    assert all(q is not None for q in quantization_terms[1:])
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_quantization_weight_scales_the_term(weight: float) -> None:
    net = small_net().train()
    image, label = _synthetic_batch(2)
    net(image)
    logits = net(image)
    quantization = net.quantization_loss.detach()
    loss = L2GNetLoss(network=net, quantization_weight=weight)(logits, label)
    plain = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    torch.testing.assert_close(loss, plain + weight * quantization)
