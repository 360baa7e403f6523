"""Cheap in-process verifiers: ``gsm8k`` (last number), ``exact`` and ``regex``."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from thresher.verifiers.base import PerItemVerifier, Verdict

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> str | None:
    """The last number in ``text``, thousands commas removed (``1,234.50`` → ``1234.50``)."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").rstrip(".")


def gsm8k_reference(ground_truth: str) -> str | None:
    """The reference number: after ``####`` when present (GSM8K's answer field), else the last number."""
    if "####" in ground_truth:
        return last_number(ground_truth.split("####")[-1])
    return last_number(ground_truth)


def same_number(a: str, b: str) -> bool:
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return a == b


class GSM8KVerifier(PerItemVerifier):
    """1 when the response's last number equals the reference answer (commas stripped, 18 == 18.00)."""

    name = "gsm8k"

    def verify(self, response: str, ground_truth: str, prompt: str = "") -> Verdict:
        reference = gsm8k_reference(ground_truth)
        if reference is None:
            return Verdict(0.0, f"no number in the ground truth {ground_truth[-60:]!r}")
        answer = last_number(response)
        if answer is None:
            return Verdict(0.0, "no number in the response")
        if same_number(answer, reference):
            return Verdict(1.0, f"answer {answer} equals {reference}")
        return Verdict(0.0, f"answer {answer} is not {reference}")


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


class ExactVerifier(PerItemVerifier):
    """1 when the response equals the ground truth after trimming, collapsing spaces and casefolding."""

    name = "exact"

    def verify(self, response: str, ground_truth: str, prompt: str = "") -> Verdict:
        if _normalized(response) == _normalized(ground_truth):
            return Verdict(1.0, "exact match")
        return Verdict(0.0, f"differs from {ground_truth[:60]!r}")


class RegexVerifier(PerItemVerifier):
    """1 when the ground truth, a regular expression, matches somewhere in the response."""

    name = "regex"

    def verify(self, response: str, ground_truth: str, prompt: str = "") -> Verdict:
        try:
            pattern = re.compile(ground_truth, re.DOTALL)
        except re.error as e:
            return Verdict(0.0, f"bad pattern {ground_truth[:60]!r}: {e}")
        found = pattern.search(response)
        if found:
            return Verdict(1.0, f"matched {found.group(0)[:60]!r}")
        return Verdict(0.0, f"no match for {ground_truth[:60]!r}")
