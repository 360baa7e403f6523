"""Prompt synthesis from templates and seeds, in the style of Tülu 3's persona-driven data.

- ``math`` / ``code``: a persona and a template ask the generator model to write a new problem; the
  model's answer becomes the prompt (no ground truth: score such rows with a reward model or a judge).
- ``precise_if``: a base task plus 1-3 IFEval constraints, composed here with the checkable
  arguments as ground truth (verifier ``ifeval``). Each row also carries the same prompt with one
  constraint dropped; a response to that prompt is a natural rejected answer for a preference pair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from thresher.synth.spec import SynthesizePrompts

PERSONAS = (
    "a nurse planning medication rounds on a night shift",
    "a bakery owner pricing a new line of cakes",
    "a high-school football coach tracking players' sprint times",
    "a beekeeper estimating the honey harvest",
    "a city planner laying out bicycle lanes",
    "a librarian reorganising a returns shelf",
    "a farmer rotating crops between fields",
    "a travel agent comparing train and flight fares",
    "a sound engineer mixing a podcast",
    "a volunteer running a charity book sale",
    "a data analyst at a small online shop",
    "a museum guide scheduling group tours",
)

MATH_TEMPLATE = (
    "Write one new math word problem that {persona} might actually face. It must have a single "
    "numerical answer and need two to four steps of arithmetic or algebra. Write only the problem."
)
CODE_TEMPLATE = (
    "Write one new, self-contained Python programming task that {persona} might need solved. Ask "
    "for a single function, say its name and arguments, and give one example call with its "
    "expected result. Write only the task."
)

BASE_TASKS = (
    "Write a short note about tea.",
    "Describe how a bicycle gear system works.",
    "Explain why volcanoes erupt.",
    "Give advice to someone starting to keep bees.",
    "Describe a quiet morning in a library.",
    "Explain how to start a compost heap.",
    "Write a product description for a rain jacket.",
    "Explain the rules of chess to a child.",
    "Describe how to read a topographic map.",
    "Give tips for baking bread at home.",
    "Write a letter to a friend about a whale-watching trip.",
    "Explain why sleep matters for students.",
)


@dataclass(frozen=True)
class Constraint:
    instruction_id: str
    group: str  # at most one constraint per group in a prompt (they would clash)
    text: str
    kwargs: dict[str, Any]


def constraint_library(rng: random.Random) -> list[Constraint]:
    """IFEval constraints with drawn arguments and our own wording."""
    words = rng.choice([60, 80, 120])
    bullets = rng.choice([2, 3, 4])
    sentences = rng.choice([3, 4, 5])
    keywords = rng.sample(["history", "future", "simple", "careful", "season", "example", "morning", "reason"], 2)
    end = rng.choice(["Is there anything else I can help with?", "Any other questions?", "That is all for now."])
    return [
        Constraint("change_case:english_lowercase", "case", "Your whole response must be in English and in lowercase letters only.", {}),
        Constraint("change_case:english_capital", "case", "Your whole response must be in English and in capital letters only.", {}),
        Constraint("punctuation:no_comma", "comma", "Do not use any commas.", {}),
        Constraint(
            "detectable_format:number_bullet_lists",
            "format",
            f"Use exactly {bullets} markdown bullet points, such as '* point'.",
            {"num_bullets": bullets},
        ),
        Constraint("detectable_format:title", "title", "Give your answer a title in double angular brackets, like <<a title>>.", {}),
        Constraint(
            "length_constraints:number_words", "length", f"Use fewer than {words} words.", {"relation": "less than", "num_words": words}
        ),
        Constraint(
            "length_constraints:number_sentences",
            "length",
            f"Write at least {sentences} sentences.",
            {"relation": "at least", "num_sentences": sentences},
        ),
        Constraint("keywords:existence", "keywords", f"Include the words '{keywords[0]}' and '{keywords[1]}'.", {"keywords": keywords}),
        Constraint(
            "startend:end_checker", "end", f"End your response with the exact phrase '{end}' and nothing after it.", {"end_phrase": end}
        ),
        Constraint(
            "detectable_content:postscript", "end", "At the end, add a postscript starting with P.S.", {"postscript_marker": "P.S."}
        ),
    ]


def _lines(value: list[str] | str | None, default: tuple[str, ...], base: Path) -> list[str]:
    if value is None:
        return list(default)
    if isinstance(value, list):
        return value
    path = Path(value) if Path(value).is_absolute() else base / value
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _truth(constraints: list[Constraint]) -> str:
    return orjson.dumps(
        {"instruction_id_list": [c.instruction_id for c in constraints], "kwargs": [c.kwargs for c in constraints]},
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def precise_if_rows(spec: SynthesizePrompts, base: Path) -> list[dict[str, Any]]:
    """RLVR rows: task + 1..max_constraints constraints (one per group); metadata holds the prompt
    with one constraint dropped and which one."""
    rng = random.Random(spec.seed)
    tasks = _lines(spec.topics, BASE_TASKS, base)
    rows = []
    for i in range(spec.count):
        library = constraint_library(rng)
        rng.shuffle(library)
        want = rng.randint(1, spec.max_constraints)
        picked: list[Constraint] = []
        for c in library:
            if c.group not in {p.group for p in picked}:
                picked.append(c)
            if len(picked) == want:
                break
        task = tasks[i % len(tasks)]
        prompt = " ".join([task] + [c.text for c in picked])
        dropped = rng.randrange(len(picked))
        kept = [c for j, c in enumerate(picked) if j != dropped]
        rows.append(
            {
                "id": f"precise_if/{i}",
                "messages": [{"role": "user", "content": prompt}],
                "ground_truth": _truth(picked),
                "verifier": "ifeval",
                "metadata": orjson.dumps(
                    {"drop_prompt": " ".join([task] + [c.text for c in kept]), "dropped_constraint": picked[dropped].instruction_id}
                ).decode(),
            }
        )
    return rows


def persona_requests(spec: SynthesizePrompts, base: Path) -> list[list[dict[str, str]]]:
    """The conversations that ask the generator to write ``count`` new problems, one persona each."""
    rng = random.Random(spec.seed)
    personas = _lines(spec.personas, PERSONAS, base)
    template = MATH_TEMPLATE if spec.task == "math" else CODE_TEMPLATE
    order = [personas[i % len(personas)] for i in range(spec.count)]
    rng.shuffle(order)
    return [[{"role": "user", "content": template.format(persona=p)}] for p in order]
