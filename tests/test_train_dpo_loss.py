"""DPO-family losses against a float64 reference written from the papers' formulas, with gradients."""

from __future__ import annotations

import math

import pytest
import torch

from thresher.train.preference_loss import LOSS_TYPES, preference_loss, sequence_logprobs


def _reference(loss_type: str, beta: float, pc: float, pr: float, lc: float, lr: float, rc: float, rr: float, gamma: float) -> float:
    """One pair's loss, scalar float64 math, straight from the formulas (DPO, Tülu 3 dpo_norm, IPO, SimPO)."""

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))

    if loss_type == "sigmoid":
        return -log_sigmoid(beta * ((pc - rc) - (pr - rr)))
    if loss_type == "dpo_norm":
        return -log_sigmoid(beta * ((pc / lc - rc / lc) - (pr / lr - rr / lr)))
    if loss_type == "ipo":
        return ((pc / lc - rc / lc) - (pr / lr - rr / lr) - 1 / (2 * beta)) ** 2
    return -log_sigmoid(beta * (pc / lc - pr / lr) - gamma)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_losses_match_the_formulas_and_their_gradients(loss_type: str) -> None:
    torch.manual_seed(hash(loss_type) % 1000)
    n, beta, gamma = 64, 0.7, 0.3
    pc = (-torch.rand(n) * 80).requires_grad_()
    pr = (-torch.rand(n) * 80).requires_grad_()
    lc, lr = torch.randint(5, 60, (n,)).float(), torch.randint(5, 60, (n,)).float()
    rc, rr = -torch.rand(n) * 80, -torch.rand(n) * 80
    out = preference_loss(loss_type, beta, pc, pr, lc, lr, rc, rr, simpo_gamma=gamma)  # type: ignore[arg-type]
    out.losses.sum().backward()
    ref = torch.tensor(
        [_reference(loss_type, beta, *(float(t[i].detach()) for t in (pc, pr, lc, lr, rc, rr)), gamma) for i in range(n)],
        dtype=torch.float64,
    )
    assert float((out.losses.double() - ref).norm() / ref.norm()) < 1e-5
    # Gradients against float64 autograd of the same formulas.
    pc64, pr64 = pc.detach().double().requires_grad_(), pr.detach().double().requires_grad_()
    ref64 = preference_loss(
        loss_type,
        beta,
        pc64,
        pr64,
        lc.double(),
        lr.double(),
        rc.double(),
        rr.double(),  # type: ignore[arg-type]
        simpo_gamma=gamma,
    ).losses
    assert float((ref64.detach() - ref).norm() / ref.norm()) < 1e-12  # the float64 path is the formula
    ref64.sum().backward()
    for got, want in ((pc.grad, pc64.grad), (pr.grad, pr64.grad)):
        assert float((got.double() - want).norm() / want.norm()) < 1e-5
    # Negative control: swapping chosen and rejected changes the loss.
    swapped = preference_loss(loss_type, beta, pr.detach(), pc.detach(), lr, lc, rr, rc, simpo_gamma=gamma)  # type: ignore[arg-type]
    assert float((swapped.losses.double() - ref).norm() / ref.norm()) > 0.01


def test_metrics_and_required_reference() -> None:
    out = preference_loss(
        "sigmoid",
        0.1,
        torch.tensor([-10.0, -20.0]),
        torch.tensor([-12.0, -15.0]),
        torch.ones(2),
        torch.ones(2),
        torch.tensor([-11.0, -18.0]),
        torch.tensor([-11.0, -18.0]),
    )
    m = out.metrics()
    assert m["reward_accuracy"] == 0.5 and m["chosen_reward"] == pytest.approx(0.1 * (1 + -2) / 2)
    with pytest.raises(ValueError, match="needs the reference"):
        preference_loss("dpo_norm", 5.0, torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match="unknown loss type"):
        preference_loss("hinge", 1.0, torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))  # type: ignore[arg-type]


def test_sequence_logprobs_sum_per_segment() -> None:
    got = sequence_logprobs(torch.tensor([-1.0, -2.0, -0.5, -0.25]), torch.tensor([0, 0, 2, 2]), 3)
    assert got.tolist() == [-3.0, 0.0, -0.75]
