"""The ``ifeval`` verifier: IFEval's instruction checks (through ``if-verifiable``), offline.

The ground truth is JSON: ``{"instruction_id_list": [...], "kwargs": [{...}, ...]}``, as in IFEval
and Tülu 3's precise-IF data. The score is the fraction of instructions followed (strict), and the
reason names the ones that were not.
"""

from __future__ import annotations

from typing import Any

import orjson

from thresher.verifiers.base import PerItemVerifier, Verdict


def parse_constraints(ground_truth: str) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        data = orjson.loads(ground_truth)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"ifeval ground truth is not valid JSON: {e}") from None
    if isinstance(data, list):  # Tülu 3 stores a list of {instruction_id, kwargs}-style objects too
        data = {"instruction_id_list": [d["instruction_id"] for d in data], "kwargs": [d.get("kwargs") or {} for d in data]}
    ids = data.get("instruction_id_list") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids:
        raise ValueError("ifeval ground truth needs a non-empty 'instruction_id_list'")
    kwargs = data.get("kwargs") or [{} for _ in ids]
    if len(kwargs) != len(ids):
        raise ValueError(f"ifeval ground truth has {len(ids)} instructions but {len(kwargs)} kwargs")
    # IFEval's release stores unused arguments as nulls; the checkers want them absent.
    return [str(i) for i in ids], [{k: v for k, v in (kw or {}).items() if v is not None} for kw in kwargs]


class IFEvalVerifier(PerItemVerifier):
    name = "ifeval"

    def __init__(self) -> None:
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

        from thresher.verifiers.punkt import ensure_punkt

        ensure_punkt()
        self.registry = INSTRUCTION_DICT

    def verify(self, response: str, ground_truth: str, prompt: str = "") -> Verdict:
        from if_verifiable.common import evaluate_instructions

        try:
            ids, kwargs = parse_constraints(ground_truth)
        except ValueError as e:
            return Verdict(0.0, f"bad ground truth: {e}")
        unknown = [i for i in ids if i not in self.registry]
        if unknown:
            return Verdict(0.0, f"unknown instructions: {', '.join(unknown)}")
        results, scores = evaluate_instructions(response, ids, kwargs, prompt, self.registry)
        failed = [r.instruction_id for r in results if not r.strict_pass]
        if not results:
            return Verdict(0.0, "empty response")
        reason = "followed all" if not failed else "not followed: " + ", ".join(failed)
        return Verdict(float(scores.partial_strict), reason)
