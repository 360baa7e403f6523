"""Choosing from n scored completions: best-of-n, pair policies, drops, pass-rate windows, ratings."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.synth.scorers import parse_rating
from thresher.synth.select import SelectConfig, combine, decide

NAN = np.nan


def _texts(prompts: int, n: int) -> list[list[str]]:
    return [[f"answer {p}.{i}" for i in range(n)] for p in range(prompts)]


def test_best_vs_worst_takes_the_extremes_and_best_for_sft() -> None:
    scores = np.array([[0.2, 0.9, 0.5, 0.1], [0.3, 0.3, 0.8, 0.6]])
    d = decide(_texts(2, 4), [scores], [1.0], SelectConfig())
    assert d.best.tolist() == [1, 2] and d.chosen.tolist() == [1, 2] and d.rejected.tolist() == [3, 0]
    assert d.dropped == ["", ""] and d.pair_reason == ["", ""]


def test_best_vs_random_rejects_something_worse_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((200, 8))
    a = decide(_texts(200, 8), [scores], [1.0], SelectConfig(pair_policy="best_vs_random", seed=1))
    b = decide(_texts(200, 8), [scores], [1.0], SelectConfig(pair_policy="best_vs_random", seed=1))
    c = decide(_texts(200, 8), [scores], [1.0], SelectConfig(pair_policy="best_vs_random", seed=2))
    rows = np.arange(200)
    assert (scores[rows, a.rejected] < scores[rows, a.chosen]).all()
    assert a.rejected.tolist() == b.rejected.tolist() and a.rejected.tolist() != c.rejected.tolist()
    # Negative control: the rejected index is not simply the worst one (it is random among the worse).
    worst = np.argmin(scores, axis=1)
    assert (a.rejected != worst).mean() > 0.5


def test_majority_vote_across_scorers() -> None:
    verifier = np.array([[1.0, 1.0, 0.0, 0.0]])
    reward = np.array([[0.9, 0.2, 0.1, 0.5]])
    judge = np.array([[0.7, 0.8, 0.0, 0.6]])
    d = decide(_texts(1, 4), [verifier, reward, judge], [1.0, 1.0, 1.0], SelectConfig(pair_policy="majority"))
    # Best votes: verifier→0 (first of the ties), reward→0, judge→1; worst votes: verifier→2, reward→2, judge→2.
    assert d.chosen.tolist() == [0] and d.rejected.tolist() == [2]


def test_identical_all_failing_low_and_marginless_prompts_are_dropped_with_reasons() -> None:
    texts = [["same", "same ", "same"], ["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"]]
    scores = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.4, 0.4, 0.41], [0.9, 0.1, 0.5]])
    d = decide(texts, [scores], [1.0], SelectConfig(min_score=0.3, min_margin=0.05))
    assert d.dropped == ["all completions identical", "all completions fail", "", ""]
    assert d.pair_reason[2].startswith("score margin 0.010 not above") and d.pair_reason[3] == ""
    assert d.rejected.tolist() == [-1, -1, -1, 1]
    low = decide(texts[3:], [scores[3:] * 0.2], [1.0], SelectConfig(min_score=0.3))
    assert low.dropped[0].startswith("best score 0.180 not above min_score 0.3")


def test_verifier_failures_drop_even_when_a_reward_model_likes_them() -> None:
    verifier = np.array([[0.0, 0.0], [0.0, 1.0]])
    reward = np.array([[0.9, 0.8], [0.1, 0.2]])
    d = decide(_texts(2, 2), [verifier, reward], [1.0, 1.0], SelectConfig(), verifier_scores=verifier)
    assert d.dropped == ["all completions fail", ""]


def test_pass_rate_window_keeps_intermediate_difficulty() -> None:
    verifier = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [NAN, NAN, NAN, NAN]], dtype=float)
    d = decide(
        _texts(5, 4), [verifier], [1.0], SelectConfig(pass_rate_min=0.25, pass_rate_max=0.75, drop_all_fail=False), verifier_scores=verifier
    )
    assert np.allclose(d.pass_rate[:4], [1.0, 0.25, 0.0, 0.5]) and np.isnan(d.pass_rate[4])
    assert d.rlvr_reason == ["too easy (pass rate 1.00)", "", "too hard (pass rate 0.00)", "", "no ground truth to verify"]


def test_pass_rate_counts_only_the_policy_models_samples() -> None:
    verifier = np.array([[1, 0, 1, 1, 1, 1]], dtype=float)  # 2 policy samples, then 4 from a stronger model
    d = decide(_texts(1, 6), [verifier], [1.0], SelectConfig(), verifier_scores=verifier, policy_samples=2)
    assert d.pass_rate.tolist() == [0.5]


def test_combine_ignores_unscored_entries() -> None:
    a = np.array([[1.0, NAN, NAN]])
    b = np.array([[0.0, 0.5, NAN]])
    got = combine([a, b], [3.0, 1.0])
    assert got[0, 0] == pytest.approx(0.75) and got[0, 1] == pytest.approx(0.5) and np.isnan(got[0, 2])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The response is fine.\nRating: 4", 4.0),
        ("**Rating:** 5", 5.0),
        ("Rating: 2\nOn reflection... Rating: 3", 3.0),
        ("I'd give it 4/5.", 4.0),
        ("Score: 2 out of 5", 2.0),
        ("Solid answer.\n\n3", 3.0),
        ("Rating: 9", None),
        ("no number here", None),
        ("Rating: 4.5", 4.5),
    ],
)
def test_judge_ratings_parse_robustly(text: str, want: float | None) -> None:
    assert parse_rating(text, 5) == want
