"""The ``rephrase`` method: features that survive rephrasing, against plain Python, and the fitted model
on held-out rephrases and hard negatives."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from thresher.curation.normalize import normalize, words_of
from thresher.decontam.rephrase import FEATURES, features, fit, item_rarity, short_answer


def test_features_match_a_plain_python_reference() -> None:
    items = pl.DataFrame(
        {
            "question": [
                "Janet has 16 ducks. They lay 3 eggs and 16 more on Sunday.",
                "Which gas do plants absorb?",
                "Write a function that reverses a linked list.",
            ],
            "answer": ["She sells 16 + 3 = 19.\n#### 19", "carbon dioxide", "def rev(head): ..."],
            "options": ["", "", ""],
        }
    )
    rows = [
        "Janet owns 16 ducks laying 3 eggs, plus 16 on Sundays. Answer: 19",
        "A farmer has 16 cows and 5 goats.",
        "Plants take in carbon dioxide from the air; which gas is it?",
        "Reverse a singly linked list in place.",
    ]
    pairs = pl.DataFrame({"train_text": rows, "item": [0, 0, 1, 2], "cosine": [0.9, 0.7, 0.8, 0.75]}).join(
        items.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64)), on="item", how="left", maintain_order="left"
    )
    pairs = pairs.with_columns(short_answer(pairs["answer"]))
    rarity = item_rarity(items)
    got = features(pairs.select("train_text", "question", "short_answer", "cosine"), rarity)
    assert got.columns == list(FEATURES)
    weight = dict(zip(rarity["word"].to_list(), rarity["rarity"].to_list(), strict=True))

    def reference(row: str, question: str, answer: str, cosine: float) -> list[float]:
        numbers_item = re.findall(r"\d+(?:\.\d+)?", question)
        numbers_row = re.findall(r"\d+(?:\.\d+)?", row)
        shared = sum(min(numbers_item.count(n), numbers_row.count(n)) for n in set(numbers_item)) / max(len(numbers_item), 1)
        item_words = set(words_of(normalize(pl.Series([question])))[0].to_list())
        row_words = set(words_of(normalize(pl.Series([row])))[0].to_list())
        rare = sum(weight[w] for w in item_words & row_words) / sum(weight[w] for w in item_words)
        short = normalize(pl.Series([answer]))[0]
        in_row = float(bool(short) and f" {short} " in " " + normalize(pl.Series([row]))[0] + " ")
        ratio = max(-3.0, min(3.0, math.log((len(row_words) + 1) / (len(item_words) + 1))))
        return [cosine, shared, float(bool(numbers_item)), rare, in_row, ratio, 0.0]  # no item defines a function

    want = [reference(r["train_text"], r["question"], r["short_answer"], r["cosine"]) for r in pairs.iter_rows(named=True)]
    np.testing.assert_allclose(got.to_numpy(), np.array(want), atol=1e-12)
    assert got["shared_numbers"].to_list()[:2] == [1.0, 1 / 3] and got["answer_in_row"].to_list() == [1.0, 0.0, 1.0, 0.0]
    # negative control: the same rows against the wrong items share less
    wrong = pairs.with_columns(pl.col("question").shift(1, fill_value=pairs["question"][-1]))
    assert features(wrong.select("train_text", "question", "short_answer", "cosine"), rarity)["rare_words"].sum() < got["rare_words"].sum()


def test_fit_recovers_a_known_logistic_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    true = np.array([2.0, -1.0, 0.5, -0.3])
    y = (rng.random(20000) < 1 / (1 + np.exp(-(x @ true[:-1] + true[-1])))).astype(float)
    w = fit(x, y)
    assert np.abs(w - true).max() < 0.1
    assert np.abs(fit(x, rng.permutation(y))[:-1]).max() < 0.1  # negative control: shuffled labels carry nothing


def test_rephrase_method_finds_held_out_rephrases_and_spares_gsm8k_train(shared_data: Path, tmp_path: Path) -> None:
    """Odd GSM8K items (the model was fitted on even ones) rephrased by GPT-4, among GSM8K *train* rows
    (same style, other problems). The features come with each match as its evidence."""
    from thresher.decontam.audit import AuditConfig, run_audit
    from thresher.decontam.benchmarks import load_benchmarks

    rephrased = [
        orjson.loads(line)["text"]
        for line in (shared_data / "contamination/llm-decontaminator/rephrase/rephrase_gsm8k.jsonl").read_bytes().splitlines()
    ]
    held_out = list(range(1, 121, 2))
    train = [orjson.loads(line) for line in (shared_data / "gsm8k/train.jsonl").read_bytes().splitlines()[:400]]
    rows = [{"messages": [{"role": "user", "content": rephrased[i]}, {"role": "assistant", "content": "Let me see."}]} for i in held_out]
    rows += [{"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]} for r in train]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_audit([str(path)], load_benchmarks([f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"]), AuditConfig(methods=("rephrase",)))
    flagged = result.matches.filter("flagged")
    assert set(flagged["method"].to_list()) <= {"rephrase"}  # embedding candidates only feed it
    found = flagged.filter(pl.col("train_row") < len(held_out))
    right = sum(int(b) == held_out[r] for r, b in zip(found["train_row"].to_list(), found["bench_id"].to_list(), strict=True))
    assert right / len(held_out) >= 0.9
    assert flagged.filter(pl.col("train_row") >= len(held_out))["train_row"].n_unique() <= 2  # <= 0.5% of 400 GSM8K-train rows
    assert found["evidence"].str.contains("numbers shared").all()
    # negative control: scored against the wrong items, the same rows are not flagged
    wrong = sum(
        int(b) == held_out[(r + 1) % len(held_out)] for r, b in zip(found["train_row"].to_list(), found["bench_id"].to_list(), strict=True)
    )
    assert wrong == 0


def test_calibration_measures_the_rephrase_method_too(shared_data: Path, tmp_path: Path) -> None:
    from thresher.decontam.audit import AuditConfig, run_audit
    from thresher.decontam.benchmarks import load_benchmarks

    train = [orjson.loads(line) for line in (shared_data / "gsm8k/train.jsonl").read_bytes().splitlines()[:150]]
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}) + "\n"
            for r in train
        )
    )
    bench = tmp_path / "gsm8k_test_200.jsonl"  # 200 of the 1,319 items: the same variants, a sixth of the encoding
    bench.write_bytes(b"\n".join((shared_data / "gsm8k/test.jsonl").read_bytes().splitlines()[:200]) + b"\n")
    result = run_audit([str(path)], load_benchmarks([f"gsm8k={bench}"]), AuditConfig(methods=("ngram", "rephrase"), calibrate=70))
    calibration = result.notes["calibration"]
    assert set(calibration["variants"]) == {"verbatim", "embedded", "noisy", "partial", "reformatted", "numbers", "rephrased"}
    recall = calibration["recall"]
    assert {"ngram", "embedding", "rephrase", "any"} <= set(recall["verbatim"])
    assert recall["verbatim"]["rephrase"] >= 0.8 and recall["rephrased"]["rephrase"] >= recall["rephrased"]["ngram"]
    assert calibration["unplanted_flagged"]["rephrase"] <= 0.05


def test_code_shape_survives_renaming() -> None:
    """A HumanEval-style prompt and solution with every name changed, the docstring rewritten and the examples'
    values changed keeps its canonical 4-grams (signature shape, control flow, calls); another function does not.
    Negative control: the renamed copy shares few words with the original."""
    from thresher.decontam.code_shape import code_overlap, shape

    item = (
        "from typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        '    """ Check if in given list of numbers, are any two numbers closer to each other than threshold.\n'
        '    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n'
        "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n"
        "            if idx != idx2:\n                distance = abs(elem - elem2)\n"
        "                if distance < threshold:\n                    return True\n    return False\n"
    )
    renamed = (
        "from typing import List\n\ndef nearby(vals: List[float], limit: float) -> bool:\n"
        '    """ Tells whether two entries of the list lie nearer than the limit.\n    >>> nearby([4.5, 7.0], 0.1)\n'
        '    False\n    """\n    for a, x in enumerate(vals):\n        for b, y in enumerate(vals):\n'
        "            if a != b:\n                gap = abs(x - y)\n                if gap < limit:\n"
        "                    return True\n    return False\n"
    )
    other = "def count_vowels(text: str) -> int:\n    return sum(1 for ch in text.lower() if ch in 'aeiou')\n"
    assert code_overlap(renamed, item) >= 0.9
    assert code_overlap(other, item) <= 0.2
    assert code_overlap(renamed, "Which gas do plants absorb?") == 0.0  # not code: no evidence either way
    words = lambda t: set(re.findall(r"[a-z]+", t.lower()))  # noqa: E731
    word_share = len(words(renamed) & words(item)) / len(words(item))  # what the word-based features see
    assert code_overlap(renamed, item) - word_share >= 0.3, word_share
    assert shape("x = 1  # a comment") == shape("y = 22")
