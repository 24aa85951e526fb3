"""L2GNetLoss: Dice + CE + quantization loss, taken from the network, inside MONAI's SupervisedTrainer."""

from __future__ import annotations

import sys

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from torch.overrides import TorchFunctionMode

from l2gnet_monai.losses import L2GNetLoss
from l2gnet_monai.networks.utils import unwrap_network
from l2gnet_monai.training.codebook import CodebookStatsHandler
from tests.networks.test_l2gnet import _synthetic_batch, small_net


def test_loss_is_dice_ce_plus_weighted_quantization_loss() -> None:
    torch.manual_seed(0)
    net = small_net().train()
    image, label = _synthetic_batch(2)
    net(image)  # initialises the codebook with these very vectors: zero quantization loss
    net.pop_quantization_loss()
    logits = net(image)
    quantization = net.quantization_loss
    loss_fn = L2GNetLoss(network=net, quantization_weight=0.5)
    loss = loss_fn(logits, label)
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    torch.testing.assert_close(loss, dice_ce + 0.5 * quantization)
    assert set(loss_fn.last_terms) == {"dice_ce", "quantization"}
    torch.testing.assert_close(loss_fn.last_terms["quantization"], quantization.detach())
    torch.testing.assert_close(loss_fn.last_terms["dice_ce"], dice_ce.detach())


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
    net.pop_quantization_loss()
    logits = net(image)
    quantization = net.quantization_loss.detach()
    loss = L2GNetLoss(network=net, quantization_weight=weight)(logits, label)
    plain = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    torch.testing.assert_close(loss, plain + weight * quantization)


def test_a_missing_quantization_loss_is_an_error_naming_the_case() -> None:
    """Every way the term could vanish silently: no training pass, read twice, stale, several passes."""
    torch.manual_seed(0)
    image, label = _synthetic_batch(2)
    net = small_net()
    loss_fn = L2GNetLoss(network=net)
    with pytest.raises(RuntimeError, match="L2GNetLoss: .*no forward pass of this network has run"):
        loss_fn(torch.randn(2, 3, 64, 64), label)  # e.g. logits of DataParallel replicas, or of another network

    net.train()
    logits = net(image)
    loss_fn(logits, label)  # fine: one training pass, one loss call
    with pytest.raises(RuntimeError, match=r"the quantization loss of its last forward pass \(#1\) was read already"):
        loss_fn(logits, label)

    net.eval()
    with torch.no_grad():
        eval_logits = net(image)
    with pytest.raises(RuntimeError, match=r"its last forward pass \(#2\) ran in eval mode"):
        loss_fn(eval_logits, label)

    net.train()
    logits = net(image)
    net.eval()
    with torch.no_grad():
        net(image)
    with pytest.raises(RuntimeError, match=r"stale: it comes from forward pass #3, and 1 eval-mode pass"):
        loss_fn(logits, label)

    net.train()
    net(image)
    logits = net(image)
    with pytest.raises(RuntimeError, match="ran 2 training forward passes since its quantization loss was last read"):
        loss_fn(logits, label)

    # after a discarded record, the next training pass and its loss go through again
    net.pop_quantization_loss()
    loss = loss_fn(net(image), label)
    assert "quantization" in loss_fn.last_terms and loss.requires_grad


def test_data_parallel_is_refused_and_a_network_without_quantizer_trains_with_dice_ce(caplog) -> None:
    net = small_net()
    with pytest.raises(ValueError, match="nn.DataParallel"):
        L2GNetLoss(network=torch.nn.DataParallel(net))
    other = torch.nn.Conv2d(1, 3, 1)
    with caplog.at_level("INFO", logger="l2gnet_monai.losses"):
        loss_fn = L2GNetLoss(network=other)
    assert "Conv2d has no vector quantizer; training with Dice + CE alone" in caplog.text
    image, label = torch.rand(2, 1, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
    plain = L2GNetLoss(network=None)
    torch.testing.assert_close(loss_fn(other(image), label), plain(other(image), label))
    assert set(loss_fn.last_terms) == {"dice_ce"}


class _HostReads(TorchFunctionMode):
    """Records the calls from l2gnet_monai's code that read a tensor's value on the host (a sync on a GPU)."""

    READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy", "nonzero", "bincount"}

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        index = args[1] if name in ("__getitem__", "__setitem__") and len(args) > 1 else None
        masks = index if isinstance(index, tuple) else (index,)
        boolean_mask = any(isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in masks)
        if name in self.READS or boolean_mask:
            frame = sys._getframe(1)
            while frame is not None and "torch" in frame.f_code.co_filename.split("site-packages")[-1][:8]:
                frame = frame.f_back
            if frame is not None and "l2gnet_monai" in frame.f_code.co_filename:
                self.reads.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
        return func(*args, **(kwargs or {}))


def test_the_training_step_reads_nothing_back_from_the_device() -> None:
    """Quantizer (initialisation, restarts, statistics), loss terms and the statistics handler stay on the device.

    Only the epoch's summary reads values (once per epoch). On a CPU every read is free, so this checks the
    calls themselves: ``bool``/``int``/``float``/``item`` of tensors, boolean-mask indexing, ``bincount``.
    """
    torch.manual_seed(0)
    net = small_net().train()
    loss_fn = L2GNetLoss(network=net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    image, label = _synthetic_batch(2)
    recorder = _HostReads()

    def step(engine: Engine, batch: int) -> None:
        if engine.state.iteration == 3:
            net.quantizer.ema_cluster_size.data[:8] = 0.0  # dead codes: the restart path runs
        with recorder:
            optimizer.zero_grad()
            loss_fn(net(image), label).backward()
            optimizer.step()

    engine = Engine(step)
    # ignite calls handlers in the order they were attached: the recorder also brackets the handler's accumulation
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: recorder.__enter__())
    CodebookStatsHandler(net).attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: recorder.__exit__(None, None, None))
    engine.run(range(4), max_epochs=1)
    assert recorder.reads == [], recorder.reads
    assert engine.state.metrics["codebook_restarts"] >= 8  # the statistics still arrive, once per epoch
    assert 1 <= engine.state.metrics["codebook_perplexity"] <= 32
