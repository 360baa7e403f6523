"""Verifiers: score a response against a ground truth, in [0, 1] with a reason.

Shared by synthesis (rejection sampling, pass-rate filtering) and the RLVR trainer.
"""

from __future__ import annotations

from typing import Any

from thresher.errors import InputError
from thresher.verifiers.base import Verdict, Verifier

NAMES: tuple[str, ...] = ("gsm8k", "math", "ifeval", "code", "exact", "regex")


def get_verifier(name: str, **options: Any) -> Verifier:
    """The verifier called ``name`` (one of NAMES)."""
    if name == "gsm8k":
        from thresher.verifiers.simple import GSM8KVerifier

        return GSM8KVerifier()
    if name == "exact":
        from thresher.verifiers.simple import ExactVerifier

        return ExactVerifier()
    if name == "regex":
        from thresher.verifiers.simple import RegexVerifier

        return RegexVerifier()
    if name == "math":
        from thresher.verifiers.math import MathVerifier

        return MathVerifier(**options)
    if name == "ifeval":
        from thresher.verifiers.ifeval import IFEvalVerifier

        return IFEvalVerifier()
    if name == "code":
        from thresher.verifiers.code import CodeVerifier

        return CodeVerifier(**options)
    raise InputError(f"unknown verifier {name!r}; known: {', '.join(NAMES)}")


def verify_rows(
    responses: list[str],
    ground_truths: list[str],
    verifiers: list[str],
    prompts: list[str] | None = None,
    cache: dict[str, Verifier] | None = None,
) -> list[Verdict]:
    """Verdicts for rows that may each name a different verifier; each verifier sees its rows as one batch."""
    cache = cache if cache is not None else {}
    out: list[Verdict | None] = [None] * len(responses)
    for name in sorted(set(verifiers)):
        idx = [i for i, v in enumerate(verifiers) if v == name]
        if name not in cache:
            cache[name] = get_verifier(name)
        got = cache[name].verify_batch(
            [responses[i] for i in idx], [ground_truths[i] for i in idx], [prompts[i] for i in idx] if prompts is not None else None
        )
        for i, verdict in zip(idx, got, strict=True):
            out[i] = verdict
    return [v if v is not None else Verdict(0.0, "not verified") for v in out]


__all__ = ["NAMES", "Verdict", "Verifier", "get_verifier", "verify_rows"]
