"""The poly schedule: torch's values on an uninterrupted run, and a resumed run continues to its new end."""

from __future__ import annotations

import pytest
import torch

from l2gnet_monai.training.lr_scheduler import PolynomialLR


def _run(scheduler_type, total_iters: int, steps: int, optimizer=None) -> tuple[list[float], torch.optim.Optimizer]:
    optimizer = optimizer or torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.01, momentum=0.9)
    scheduler = scheduler_type(optimizer, total_iters=total_iters, power=0.9)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, optimizer


def test_an_uninterrupted_run_follows_torchs_polynomial_lr() -> None:
    ours, _ = _run(PolynomialLR, 20, 25)
    reference, _ = _run(torch.optim.lr_scheduler.PolynomialLR, 20, 25)
    assert ours == pytest.approx(reference, abs=1e-12)
    assert ours[0] == 0.01 and ours[-1] == 0.0


@pytest.mark.parametrize("new_total", [20, 40])
def test_a_resumed_run_continues_from_its_position_to_the_new_end(new_total: int) -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.01, momentum=0.9)
    scheduler = PolynomialLR(optimizer, total_iters=20)
    for _ in range(20):  # a finished run: the learning rate has reached 0
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    optimizer = torch.optim.SGD([param], lr=0.01, momentum=0.9)
    scheduler = PolynomialLR(optimizer, total_iters=new_total)
    optimizer.load_state_dict(saved_optimizer)  # brings back lr 0
    scheduler.load_state_dict(saved_scheduler)
    rates = []
    for _ in range(new_total - 20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.01 * (1 - it / new_total) ** 0.9 for it in range(20, new_total)])
    assert optimizer.param_groups[0]["lr"] == 0.0 and scheduler.get_last_lr() == [0.0]


def test_an_empty_schedule_is_refused() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ValueError, match="total_iters must be a positive number of steps, got 0"):
        PolynomialLR(optimizer, total_iters=0)
