"""The RLVR objective against float64 references written out per completion from the papers'
formulas (GRPO, Dr GRPO, DAPO clip-higher and token-level averaging, k1/k3 KL, truncated importance
sampling), gradients included; swapped clip bounds and the wrong aggregation are negative controls."""

from __future__ import annotations

import math

import pytest
import torch

from thresher.train.policy_loss import group_advantages, kl_estimate, policy_loss


def test_group_advantages_grpo_and_dr_grpo() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0])
    grpo = group_advantages(rewards, 4)
    dr = group_advantages(rewards, 4, normalize_std=False)
    for g in range(3):
        r = rewards[4 * g : 4 * g + 4].tolist()
        mean = sum(r) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / 4)
        for i, x in enumerate(r):
            assert float(dr.advantages[4 * g + i]) == pytest.approx(x - mean)
            assert float(grpo.advantages[4 * g + i]) == pytest.approx((x - mean) / (std + 1e-6), rel=1e-5)
    assert grpo.informative.tolist() == [True] * 4 + [False] * 4 + [True] * 4  # the all-1 group carries no signal
    with pytest.raises(ValueError, match="groups of 5"):
        group_advantages(rewards, 5)


def _reference(
    logp: list[torch.Tensor],
    old: list[torch.Tensor],
    adv: list[float],
    ref: list[torch.Tensor],
    gen: list[torch.Tensor],
    lo: float,
    hi: float,
    beta: float,
    estimator: str,
    cap: float,
    aggregation: str,
) -> torch.Tensor:
    """Per completion and per token, as the formulas read."""
    per_seq, all_tokens = [], []
    for lp, ol, a, rf, gn in zip(logp, old, adv, ref, gen, strict=True):
        terms = []
        for t in range(len(lp)):
            rho = torch.exp(lp[t] - ol[t])
            surrogate = torch.maximum(-a * rho, -a * torch.clamp(rho, 1 - lo, 1 + hi))
            weight = min(math.exp(float(ol[t] - gn[t])), cap)
            if estimator == "k1":
                kl = lp[t] - rf[t]
            else:
                kl = torch.exp(rf[t] - lp[t]) - (rf[t] - lp[t]) - 1
            terms.append(weight * surrogate + beta * kl)
        per_seq.append(sum(terms) / len(terms))
        all_tokens += terms
    return sum(per_seq) / len(per_seq) if aggregation == "sequence" else sum(all_tokens) / len(all_tokens)


@pytest.mark.parametrize(("estimator", "aggregation", "beta"), [("k3", "token", 0.1), ("k1", "sequence", 0.05), ("k3", "sequence", 0.0)])
def test_policy_loss_matches_the_formulas_with_gradients(estimator: str, aggregation: str, beta: float) -> None:
    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    segment = torch.repeat_interleave(torch.arange(4), torch.tensor(lengths))
    n = segment.numel()
    logp = (-torch.rand(n, dtype=torch.float64) * 3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(n, dtype=torch.float64)  # ratios well outside [0.8, 1.28]: clipping happens
    ref = logp.detach() + 0.2 * torch.randn(n, dtype=torch.float64)
    gen = old + 0.5 * torch.randn(n, dtype=torch.float64)  # some importance weights hit the cap
    adv = torch.tensor([1.2, -0.7, 0.4, -1.5], dtype=torch.float64)
    out = policy_loss(
        logp,
        old,
        adv,
        segment,
        4,
        clip_low=0.2,
        clip_high=0.28,
        kl_beta=beta,
        ref_logp=ref,
        kl_estimator=estimator,
        generation_logp=gen,
        importance_cap=1.5,
        aggregation=aggregation,
    )  # type: ignore[arg-type]
    (grad,) = torch.autograd.grad(out.loss, logp)
    leaf = logp.detach().clone().requires_grad_()
    split = lambda t: list(torch.split(t, lengths))  # noqa: E731
    expected = _reference(split(leaf), split(old), adv.tolist(), split(ref), split(gen), 0.2, 0.28, beta, estimator, 1.5, aggregation)
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-10)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    assert 0 < out.clip_fraction < 1 and out.importance_weight_mean < 1.5
    # negative controls: swapped clip bounds, and the other aggregation, give other losses
    swapped = policy_loss(
        logp,
        old,
        adv,
        segment,
        4,
        clip_low=0.28,
        clip_high=0.2,
        kl_beta=beta,
        ref_logp=ref,
        kl_estimator=estimator,
        generation_logp=gen,
        importance_cap=1.5,
        aggregation=aggregation,
    )  # type: ignore[arg-type]
    other = policy_loss(
        logp,
        old,
        adv,
        segment,
        4,
        clip_low=0.2,
        clip_high=0.28,
        kl_beta=beta,
        ref_logp=ref,
        kl_estimator=estimator,
        generation_logp=gen,
        importance_cap=1.5,
        aggregation="token" if aggregation == "sequence" else "sequence",
    )
    assert float(swapped.loss) != pytest.approx(float(expected), rel=1e-6)
    assert float(other.loss) != pytest.approx(float(expected), rel=1e-6)


def test_kl_estimators_and_on_policy_gradient() -> None:
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert kl_estimate(logp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    k3 = kl_estimate(logp, ref, "k3")
    assert bool((k3 >= 0).all()) and float(kl_estimate(ref, ref, "k3").abs().max()) == 0.0
    with pytest.raises(ValueError, match="k1, k3"):
        kl_estimate(logp, ref, "k2")  # type: ignore[arg-type]
    # on-policy (ratio 1, no KL): the gradient is −A/len per token of each completion under sequence averaging
    lp = torch.tensor([-1.0, -0.5, -2.0], requires_grad=True)
    out = policy_loss(lp, lp.detach(), torch.tensor([2.0, -1.0]), torch.tensor([0, 0, 1]), 2, aggregation="sequence")
    (grad,) = torch.autograd.grad(out.loss, lp)
    assert grad.tolist() == pytest.approx([-2.0 / 2 / 2, -2.0 / 2 / 2, 1.0 / 1 / 2]) and out.clip_fraction == 0.0
    with pytest.raises(ValueError, match="reference"):
        policy_loss(lp, lp.detach(), torch.tensor([2.0, -1.0]), torch.tensor([0, 0, 1]), 2, kl_beta=0.1)
