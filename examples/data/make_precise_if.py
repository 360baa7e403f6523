"""Writes the two small precise-instruction-following sets the example mixtures use (our own text,
built from templates so every response really meets its constraint):

- ``precise_if_sft.jsonl``: chats whose user turn carries a checkable constraint and whose
  assistant turn meets it;
- ``precise_if_rlvr.jsonl``: prompts with IFEval-style constraints as RLVR ground truth
  (``instruction_id_list`` + ``kwargs``), verifier ``ifeval``.

Run: python examples/data/make_precise_if.py (deterministic; the files are committed).
"""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = {
    "tea": [
        "tea is brewed from the leaves of camellia sinensis",
        "green and black tea differ in oxidation",
        "water temperature changes the taste",
        "steeping too long makes tea bitter",
    ],
    "bicycles": [
        "a bicycle chain needs regular cleaning",
        "tyre pressure affects speed and grip",
        "gears let a rider keep a steady cadence",
        "lights make night riding safer",
    ],
    "volcanoes": [
        "volcanoes form where magma reaches the surface",
        "ash clouds can ground aircraft",
        "lava cools into new rock",
        "many volcanoes sit on plate boundaries",
    ],
    "libraries": [
        "public libraries lend books for free",
        "librarians help people find sources",
        "many libraries offer internet access",
        "reading rooms give quiet space to study",
    ],
    "bees": [
        "bees pollinate many food crops",
        "a hive is organised around one queen",
        "honey is stored nectar",
        "bees communicate with a waggle dance",
    ],
    "sleep": [
        "adults need about seven to nine hours of sleep",
        "screens before bed can delay sleep",
        "a regular schedule improves rest",
        "naps should be short",
    ],
    "composting": [
        "compost turns food scraps into soil",
        "a heap needs both green and brown material",
        "turning the pile adds air",
        "finished compost smells earthy",
    ],
    "rain": [
        "rain forms when droplets in clouds grow heavy",
        "rain gauges measure rainfall",
        "some regions get most rain in one season",
        "rain refills rivers and groundwater",
    ],
    "chess": [
        "chess is played on a board of sixty-four squares",
        "each side starts with sixteen pieces",
        "checkmate ends the game",
        "openings aim to control the centre",
    ],
    "maps": [
        "maps show places at a reduced scale",
        "a legend explains the symbols",
        "contour lines show height",
        "north is usually at the top",
    ],
    "bread": [
        "bread rises because yeast makes gas",
        "kneading builds gluten",
        "a hot oven gives a good crust",
        "sourdough uses a wild starter",
    ],
    "whales": [
        "whales are mammals that breathe air",
        "blue whales are the largest animals known",
        "some whales sing long songs",
        "whales migrate across oceans",
    ],
}


def sentence(fact: str) -> str:
    return fact[0].upper() + fact[1:] + "."


def sft_rows() -> list[dict]:
    rows = []
    for topic, facts in TOPICS.items():
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Tell me about {topic}. Your entire response should be in English, and in all lowercase letters.",
                    },
                    {"role": "assistant", "content": " ".join(f + "." for f in facts)},
                ]
            }
        )
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Give exactly 3 bullet points about {topic}, using markdown bullets such as '* point'."},
                    {"role": "assistant", "content": "\n".join(f"* {sentence(f)}" for f in facts[:3])},
                ]
            }
        )
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Write two sentences about {topic}. "
                        "End your response with the exact phrase 'Is there anything else I can help with?'",
                    },
                    {"role": "assistant", "content": f"{sentence(facts[0])} {sentence(facts[1])} Is there anything else I can help with?"},
                ]
            }
        )
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Describe {topic} in at most 20 words. Wrap your entire response with double quotation marks.",
                    },
                    {"role": "assistant", "content": f'"{sentence(facts[0])}"'},
                ]
            }
        )
        rows.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"Explain {topic} and include a title wrapped in double angular brackets, such as <<my title>>.",
                    },
                    {"role": "assistant", "content": f"<<all about {topic}>>\n{sentence(facts[2])} {sentence(facts[3])}"},
                ]
            }
        )
    return rows


def rlvr_rows() -> list[dict]:
    rows = []
    for topic in TOPICS:
        cases = [
            (
                f"Write a short note about {topic}. Your entire response should be in English, and in all lowercase letters.",
                ["change_case:english_lowercase"],
                [{}],
            ),
            (
                f"Write about {topic} with exactly 4 bullet points in markdown format.",
                ["detectable_format:number_bullet_lists"],
                [{"num_bullets": 4}],
            ),
            (
                f"Describe {topic} in fewer than 60 words.",
                ["length_constraints:number_words"],
                [{"relation": "less than", "num_words": 60}],
            ),
            (
                f"Write about {topic} without using any commas. End your response with 'Any other questions?'",
                ["punctuation:no_comma", "startend:end_checker"],
                [{}, {"end_phrase": "Any other questions?"}],
            ),
            (
                f"Explain {topic} in 3 paragraphs separated by the markdown divider ***, and include the keywords 'history' and 'future'.",
                ["length_constraints:number_paragraphs", "keywords:existence"],
                [{"num_paragraphs": 3}, {"keywords": ["history", "future"]}],
            ),
            (
                f"Write a riddle about {topic} and give it a title wrapped in double angular brackets, such as <<title>>.",
                ["detectable_format:title"],
                [{}],
            ),
            (f"Answer in JSON format: list three facts about {topic}.", ["detectable_format:json_format"], [{}]),
        ]
        for prompt, ids, kwargs in cases:
            truth = json.dumps({"instruction_id_list": ids, "kwargs": kwargs}, sort_keys=True)
            rows.append({"messages": [{"role": "user", "content": prompt}], "ground_truth": truth, "verifier": "ifeval"})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    here = Path(__file__).parent
    write(here / "precise_if_sft.jsonl", sft_rows())
    write(here / "precise_if_rlvr.jsonl", rlvr_rows())
