"""Decontamination: the benchmark registry on the real release files, n-gram coverage against a plain-Python
reference, the MinHash/embedding/judge methods, and audit/decontaminate end to end on real data."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest

from thresher.curation.ngrams import ngram_hashes, window_hashes
from thresher.decontam.audit import AuditConfig, run_audit, train_texts
from thresher.decontam.benchmarks import REGISTRY, load_benchmark, load_benchmarks
from thresher.decontam.classes import CLASSES, DEFAULT_FLAG
from thresher.decontam.matching import TrainBatch
from thresher.decontam.ngram import NgramConfig, NgramDetector
from thresher.errors import InputError
from thresher.records import Kind

LOCAL = {  # registered benchmark -> (file or folder in ../shared/data, items)
    "gsm8k": ("gsm8k/test.jsonl", 1319),
    "math": ("math/math_test.jsonl", 5000),
    "math500": ("math/math500_test.jsonl", 500),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", 164),
    "mbpp": ("mbpp/mbpp.jsonl", 974),
    "mmlu": ("mmlu/data", 14042),
    "ifeval": ("ifeval/input_data.jsonl", 541),
    "bbh": ("bbh", 6511),
    "truthfulqa": ("truthfulqa/v0_TruthfulQA.csv", 817),
    "alpacaeval": ("alpaca_eval/gpt4_1106_preview_model_outputs.json", 805),
    "mt_bench": ("mt_bench/question.jsonl", 80),
    "aime": ("rlvr/aime24_test.jsonl", 30),
    "amc": ("rlvr/amc23_test.jsonl", 40),
}


def test_registry_has_the_promised_benchmarks() -> None:
    promised = {
        "gsm8k",
        "math",
        "math500",
        "humaneval",
        "mbpp",
        "mmlu",
        "ifeval",
        "bbh",
        "truthfulqa",
        "alpacaeval",
        "mt_bench",
        "arc",
        "gpqa",
        "aime",
        "amc",
    }
    assert promised <= set(REGISTRY)
    assert all(REGISTRY[name].hub for name in promised)


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_local_release_files_load(shared_data: Path, name: str) -> None:
    path, count = LOCAL[name]
    loaded = load_benchmark(name, str(shared_data / path))
    items = loaded.items
    assert items.height == count
    assert items["bench_id"].n_unique() == count  # ids are unique within a benchmark
    assert (items["question"].str.len_chars() > 0).all()


def test_fields_are_the_documented_ones(shared_data: Path) -> None:
    gsm = load_benchmark("gsm8k", str(shared_data / "gsm8k/test.jsonl")).items.row(0, named=True)
    assert gsm["question"].startswith("Janet’s ducks lay 16 eggs") and "<<" not in gsm["answer"] and gsm["answer"].endswith("#### 18")
    mmlu = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items
    first = mmlu.filter(pl.col("bench_id") == "abstract_algebra_test/0").row(0, named=True)
    assert first["question"].startswith("Find the degree") and first["answer"] == "4"  # letter B -> its text
    stem = load_benchmark("mmlu", str(shared_data / "mmlu/mmlu_stem_test.jsonl")).items.row(0, named=True)
    assert stem["answer"] == "reduce the carrying capacity cif the environment to lower the K value"
    bbh = load_benchmark("bbh", str(shared_data / "bbh")).items
    assert bbh["bench_id"].str.starts_with("navigate/").sum() == 250
    he = load_benchmark("humaneval", str(shared_data / "humaneval/HumanEval.jsonl.gz")).items.row(0, named=True)
    assert he["bench_id"] == "HumanEval/0" and "def has_close_elements" in he["question"] and "for idx" in he["answer"]


def test_arc_and_gpqa_in_their_release_formats(tmp_path: Path) -> None:
    arc = tmp_path / "ARC-Challenge-Test.jsonl"
    arc.write_text(
        json.dumps(
            {
                "id": "Mercury_7175875",
                "question": {
                    "stem": "An astronomer observes that a planet rotates faster after a "
                    "meteorite impact. Which is the most likely effect of this increase in rotation?",
                    "choices": [
                        {"text": "Planetary density will decrease.", "label": "A"},
                        {"text": "Planetary years will become longer.", "label": "B"},
                        {"text": "Planetary days will become shorter.", "label": "C"},
                        {"text": "Planetary gravity will become stronger.", "label": "D"},
                    ],
                },
                "answerKey": "C",
            }
        )
        + "\n"
    )
    item = load_benchmark("arc", str(arc)).items.row(0, named=True)
    assert item["bench_id"] == "Mercury_7175875" and item["answer"] == "Planetary days will become shorter."
    assert item["question"].startswith("An astronomer observes")
    gpqa = tmp_path / "gpqa_main.csv"
    pl.DataFrame(
        {
            "Record ID": ["rec1"],
            "Question": ["Two quantum states with energies E1 and E2 have lifetimes of 1e-9 s and 1e-8 s."],
            "Correct Answer": ["1e-4 eV"],
            "Incorrect Answer 1": ["1e-11 eV"],
        }
    ).write_csv(gpqa)
    row = load_benchmark("gpqa", str(gpqa)).items.row(0, named=True)
    assert row["bench_id"] == "rec1" and row["answer"] == "1e-4 eV"


def test_bad_benchmark_inputs_say_what_and_where(tmp_path: Path) -> None:
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\n{"question": oops}\n')
    with pytest.raises(InputError, match=r"test.jsonl:2: malformed JSON"):
        load_benchmark("gsm8k", str(bad))
    with pytest.raises(InputError, match="unknown benchmark 'gsm9k'"):
        load_benchmarks(["gsm9k=x.jsonl"])
    with pytest.raises(InputError, match="could not load openai/gsm8k@main from the hub .* pass a local copy as gsm8k=PATH"):
        load_benchmark("gsm8k")  # offline in tests
    custom = tmp_path / "mine.jsonl"
    custom.write_text('{"q": "What is the capital of the country north of Spain?", "a": "Paris"}\n')
    [mine] = load_benchmarks([f"mine={custom}"], ["mine:question=q,answer=a"])
    assert mine.items.row(0, named=True)["answer"] == "Paris"


def test_windows_of_every_length_hash_like_ngrams() -> None:
    rng = random.Random(7)
    rows = [[rng.choice("abcdefg") for _ in range(rng.randint(0, 12))] for _ in range(60)]
    tokens = pa.array(rows, type=pa.large_list(pa.string()))
    windows = window_hashes(tokens, [3, 8])
    grams = ngram_hashes(tokens, 8)
    full = grams.length == 8
    assert np.array_equal(windows[8].hash, grams.hash[full]) and np.array_equal(windows[8].row, grams.row[full])
    whole3 = ngram_hashes(pa.array([r for r in rows if len(r) == 3], type=pa.large_list(pa.string())), 8)
    assert set(whole3.hash.tolist()) <= set(windows[3].hash.tolist())  # a 3-word row kept whole is a 3-word window


def _reference_coverage(item: list[str], row: list[str], n: int, rarity: dict[str, float], min_words: int) -> float:
    """Plain Python: the rarity-weighted share of the item's positions inside an n-gram that also occurs in
    the row, or 0 when fewer than ``min_words`` positions (or not all of a shorter item) are covered."""
    if len(item) < n:
        return 1.0 if any(row[i : i + len(item)] == item for i in range(len(row) - len(item) + 1)) else 0.0
    row_grams = {tuple(row[i : i + n]) for i in range(len(row) - n + 1)}
    covered = set()
    for i in range(len(item) - n + 1):
        if tuple(item[i : i + n]) in row_grams:
            covered.update(range(i, i + n))
    if len(covered) < min(len(item), min_words):
        return 0.0
    return sum(rarity[item[p]] for p in covered) / sum(rarity[w] for w in item)


@pytest.mark.parametrize("idf", [True, False])
def test_ngram_coverage_matches_a_plain_python_reference(idf: bool) -> None:
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(12)]  # a small vocabulary, so partial overlaps are common
    items = [[rng.choice(vocab) for _ in range(rng.randint(3, 20))] for _ in range(25)]
    rows = []
    for _ in range(200):
        row = [rng.choice(vocab) for _ in range(rng.randint(0, 30))]
        if rng.random() < 0.5:  # splice in part of an item
            item = rng.choice(items)
            lo = rng.randint(0, len(item) - 1)
            row[rng.randint(0, len(row)) :] = item[lo : lo + rng.randint(1, len(item))] + row[rng.randint(0, len(row)) :]
        rows.append(row)
    n, min_words = 4, 6
    config = NgramConfig(
        n=n,
        threshold=0.5,
        answer_weight=0.0,
        max_bench_df=10**6,
        max_train_df=10**6,
        floor=1e-9,
        min_tokens=1,
        min_words=min_words,
        idf=idf,
    )
    frame = pl.DataFrame({"question": [" ".join(i) for i in items], "answer": [""] * len(items)})
    detector = NgramDetector(frame, config)
    detector.scan(TrainBatch.of(pl.Series([" ".join(r) for r in rows]), 0))
    got = {(r, i): s for r, i, s in detector.finish().select("row", "item", "score").iter_rows()}
    rarity = {w: math.log1p(len(items) / sum(w in i for i in items)) if idf else 1.0 for w in vocab if any(w in i for i in items)}
    want = {(r, i): _reference_coverage(item, row, n, rarity, min_words) for r, row in enumerate(rows) for i, item in enumerate(items)}
    want = {k: v for k, v in want.items() if v > 0}
    assert set(got) == set(want) and len(want) > 20
    assert max(abs(got[k] - want[k]) for k in want) < 1e-12
    # negative controls: coverage of the wrong items differs; so does the unweighted share when weighting is on
    shuffled = {(r, (i + 1) % len(items)): s for (r, i), s in got.items()}
    assert shuffled != want
    plain = {k: _reference_coverage(items[k[1]], rows[k[0]], n, dict.fromkeys(rarity, 1.0), min_words) for k in want}
    assert (max(abs(plain[k] - got[k]) for k in want) > 0.01) == idf


def _gsm8k(shared_data: Path) -> pl.DataFrame:
    return load_benchmark("gsm8k", str(shared_data / "gsm8k/test.jsonl")).items


def test_ngram_finds_verbatim_noisy_partial_embedded_and_short_items(shared_data: Path) -> None:
    items = _gsm8k(shared_data)
    q = items["question"].to_list()
    short = pl.DataFrame({"question": ["Name three primary colors."], "answer": [""]})
    detector = NgramDetector(pl.concat([items.select("question", "answer"), short]))
    words = q[2].split()
    rows = [
        q[0],  # verbatim
        "  " + q[1].upper().replace(".", " !! ").replace(" ", "   ") + " ",  # case, punctuation, whitespace noise
        " ".join(words[: int(len(words) * 0.7)]),  # the first 70%
        "Sure, here is a fun one for you.\n" + q[3] + "\nLet me know how you get on with it!",  # inside a longer text
        "Before we start: name three primary colors, please, then explain mixing.",  # a short item inside a row
        "Tell me a story about a dragon who learns to bake bread in a small village.",  # clean
    ]
    detector.scan(TrainBatch.of(pl.Series(rows), 0))
    found = detector.finish().filter(pl.col("score") >= 0.5)
    hits = dict(zip(found["row"].to_list(), found["item"].to_list(), strict=True))
    assert hits == {0: 0, 1: 1, 2: 2, 3: 3, 4: len(q)}
    partial = found.filter(pl.col("row") == 2)["score"][0]
    assert 0.6 <= partial <= 0.85  # 70% of the words; weighted by rarity, not exactly 0.7


def test_boilerplate_ngrams_do_not_count(shared_data: Path) -> None:
    plate = "which of the following statements about the topic below is correct"
    items = pl.DataFrame({"question": [f"{plate} {w} alpha beta gamma" for w in ("one", "two", "three", "four", "five")], "answer": ""})
    rows = pl.Series([f"Quiz: {plate} delta epsilon"])
    strict = NgramDetector(items, NgramConfig(max_bench_df=2))
    strict.scan(TrainBatch.of(rows, 0))
    assert strict.finish().filter(pl.col("score") >= 0.5).is_empty()
    loose = NgramDetector(items, NgramConfig(max_bench_df=100))  # negative control: without the cap they all match
    loose.scan(TrainBatch.of(rows, 0))
    assert loose.finish().filter(pl.col("score") >= 0.5).height == 5
    # the training-side cap: an n-gram in more rows than max_train_df stops counting
    q = _gsm8k(shared_data)["question"][0]
    capped = NgramDetector(_gsm8k(shared_data), NgramConfig(max_train_df=3))
    capped.scan(TrainBatch.of(pl.Series([q] * 5), 0))
    assert capped.finish().filter(pl.col("score") >= 0.5).is_empty()


def test_templated_items_count_only_what_is_distinctive(shared_data: Path) -> None:
    """MMLU moral scenarios share a 35-word template: copied verbatim (with or without options) they match
    fully, because template-only words leave the denominator; a row holding only the template, or a
    generic stem with made-up options, matches nothing."""
    mmlu = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items
    moral = mmlu.filter(pl.col("bench_id").str.starts_with("moral_scenarios")).head(20)
    with_options = [
        q + "\n" + "\n".join(f"{'ABCD'[j]}. {o}" for j, o in enumerate(opts.split("\n")))
        for q, opts in moral.select("question", "options").iter_rows()
    ]
    template = moral["question"][0].split("Scenario 1")[0]
    rows = pl.Series(
        [
            *moral["question"].to_list(),
            *with_options,
            template,
            "Which of the following is true?\nA. The sky is green\nB. Cats bark\nC. Water is dry\nD. None of these",
        ]
    )
    detector = NgramDetector(mmlu)
    detector.scan(TrainBatch.of(rows, 0))
    found = detector.finish().filter(pl.col("score") >= 0.5)
    best = found.sort("score", descending=True).unique("row", keep="first").sort("row")
    item_of = dict(zip(mmlu["bench_id"].to_list(), range(mmlu.height), strict=True))
    want = [item_of[b] for b in moral["bench_id"].to_list()] * 2
    assert best["row"].to_list() == list(range(40)) and best["item"].to_list() == want
    assert best["score"].min() > 0.9


def test_a_shared_phrase_is_not_a_copy(shared_data: Path) -> None:
    """One shared 8-gram on a 10-word MBPP item ("a function to find the depth of a ...") is a phrase; a
    match needs min_words shared words or all of a shorter item. Negative control: without the rule and
    without rarity weights the same rows are flagged."""
    mbpp = load_benchmark("mbpp", str(shared_data / "mbpp/mbpp.jsonl")).items
    rows = pl.Series(
        [
            "Create a function to find the depth of a given binary tree.",  # MBPP: "... the depth of a dictionary."
            "Build a function to convert a given string to uppercase letters.",  # MBPP: "... to a tuple."
            "Write a python function to check whether a list of words is sorted by length or not.",
        ]
    )
    strict = NgramDetector(mbpp)
    strict.scan(TrainBatch.of(rows, 0))
    assert strict.finish().filter(pl.col("score") >= 0.5).is_empty()
    loose = NgramDetector(mbpp, NgramConfig(min_words=1, idf=False))
    loose.scan(TrainBatch.of(rows, 0))
    assert loose.finish().filter(pl.col("score") >= 0.5)["row"].n_unique() >= 2
    verbatim = mbpp["question"].head(50)  # and the short items themselves, copied whole, still match
    strict.scan(TrainBatch.of(verbatim, 10))
    assert set(strict.finish().filter(pl.col("score") >= 0.99)["row"].to_list()) >= set(range(10, 60))


def test_code_alpaca_against_mbpp_and_humaneval_matches_hand_labels(shared_data: Path, tmp_path: Path) -> None:
    """Hand-labeled pairs (tests/data/code_alpaca_vs_mbpp_humaneval_pairs.csv: 139 candidate pairs from the
    n-gram and embedding methods, 1 = the same task). Every flagged pair counts; one not in the labels counts
    as a false positive."""
    from thresher.accounting import QuarantineWriter

    labels = pl.read_csv(Path(__file__).parent / "data/code_alpaca_vs_mbpp_humaneval_pairs.csv", schema_overrides={"bench_id": pl.String})
    benches = load_benchmarks([f"mbpp={shared_data / 'mbpp/mbpp.jsonl'}", f"humaneval={shared_data / 'humaneval/HumanEval.jsonl.gz'}"])

    def precision(config: NgramConfig, flag: tuple[str, ...] = DEFAULT_FLAG) -> tuple[int, float]:
        result = run_audit(
            [str(shared_data / "sft/code_alpaca_2k.json")],
            benches,
            AuditConfig(ngram=config, flag=flag),
            quarantine=QuarantineWriter(tmp_path / "q.jsonl"),
        )
        flagged = result.matches.filter("flagged").select("train_id", "bench_id").unique()
        right = flagged.join(labels.filter(pl.col("same_task") == 1), on=["train_id", "bench_id"]).height
        return flagged.height, right / max(flagged.height, 1)

    flagged, p = precision(NgramConfig())
    assert flagged >= 1 and p >= 0.95
    # negative control: the phrase-level matching of before (no word floor, no rarity, shared text flagged too)
    flagged, p = precision(NgramConfig(min_words=1, idf=False), CLASSES)
    assert flagged >= 15 and p < 0.5


def test_gsm8k_train_rarely_flags_against_gsm8k_test(shared_data: Path) -> None:
    train = [orjson.loads(line)["question"] for line in (shared_data / "gsm8k/train.jsonl").read_bytes().splitlines()]
    detector = NgramDetector(_gsm8k(shared_data))
    detector.scan(TrainBatch.of(pl.Series(train), 0))
    flagged = detector.finish().filter(pl.col("score") >= 0.5)["row"].n_unique()
    assert flagged / len(train) <= 0.005


def test_train_texts_by_field() -> None:
    from thresher.records import MESSAGES

    table = pa.table(
        {
            "id": ["a"],
            "source": ["s"],
            "messages": pa.array([[{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]], type=MESSAGES),
        }
    )
    assert train_texts(table, Kind.SFT, "prompt").to_list() == ["U"]
    assert train_texts(table, Kind.SFT, "response").to_list() == ["A"]
    assert train_texts(table, Kind.SFT, "all").to_list() == ["U\nA"]


def _write_training_file(path: Path, shared_data: Path) -> dict[str, int]:
    """Real clean SFT rows (LIMA) with GSM8K test questions planted: in the user turn, and in an assistant turn."""
    lima = json.loads((shared_data / "sft/lima.json").read_text())[:300]
    q = _gsm8k(shared_data)["question"].to_list()
    rows = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]} for r in lima]
    rows.insert(
        10, {"messages": [{"role": "user", "content": "Solve this: " + q[5]}, {"role": "assistant", "content": "The answer is 64."}]}
    )
    rows.insert(50, {"messages": [{"role": "user", "content": "Give me a practice problem."}, {"role": "assistant", "content": q[7]}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"in_prompt": 10, "in_response": 50, "rows": len(rows)}


def test_audit_fields_choose_the_turns(shared_data: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    planted = _write_training_file(train, shared_data)
    benches = load_benchmarks([f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"])
    found = {}
    for fields in ("prompt", "response", "all"):
        result = run_audit([str(train)], benches, AuditConfig(fields=fields))  # type: ignore[arg-type]
        found[fields] = set(result.flagged_rows()["train_row"].to_list())
    assert found == {
        "prompt": {planted["in_prompt"]},
        "response": {planted["in_response"]},
        "all": {planted["in_prompt"], planted["in_response"]},
    }


def test_one_or_two_workers_find_the_same_matches(shared_data: Path, tmp_path: Path) -> None:
    """Batches are prepared (turns, word hashes, index lookups, MinHash pairs) on worker threads and scanned in
    input order: with 1 and 2 workers and small batches, the matches and counts are identical."""
    train = tmp_path / "train.jsonl"
    _write_training_file(train, shared_data)
    benches = load_benchmarks([f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"])
    results = []
    for workers in (1, 2):
        config = AuditConfig(methods=("ngram", "minhash"), batch_rows=16, workers=workers)
        result = run_audit([str(train)], benches, config)
        results.append((result.matches, {k: c.as_dict() for k, c in result.counts.items()}))
    assert results[0][0].height >= 2 and results[0][0].equals(results[1][0]) and results[0][1] == results[1][1]


@pytest.mark.slow
def test_minhash_and_embedding_methods(shared_data: Path) -> None:
    from thresher.decontam.similarity import EmbeddingDetector, MinhashDetector

    items = _gsm8k(shared_data)
    rephrased = [
        orjson.loads(line)["text"]
        for line in (shared_data / "contamination/llm-decontaminator/rephrase/rephrase_gsm8k.jsonl").read_bytes().splitlines()[:20]
    ]
    verbatim = (items["question"] + "\n" + items["answer"]).head(20)
    minhash = MinhashDetector(items)
    minhash.scan(TrainBatch.of(verbatim, 0))
    best = minhash.finish().sort("score", descending=True).unique("row", keep="first").sort("row")
    assert best["item"].to_list() == list(range(20)) and best["score"].min() > 0.9
    embedding = EmbeddingDetector(items)
    embedding.scan(TrainBatch.of(pl.Series(rephrased), 0))
    top = embedding.finish().sort("score", descending=True).unique("row", keep="first").sort("row")
    assert (top["row"].to_numpy() == top["item"].to_numpy()).mean() >= 0.95  # the rephrase finds its original
    assert top["score"].median() > 0.85


@pytest.fixture(scope="module")
def tiny_judge(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a BPE tokenizer trained here on real text, saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [r["question"] for r in (orjson.loads(x) for x in (shared_data / "gsm8k/train.jsonl").read_bytes().splitlines()[:2000])]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts + ["Yes No yes no"] * 50, trainers.BpeTrainer(vocab_size=1000, special_tokens=["[UNK]", "</s>"], show_progress=False)
    )
    folder = tmp_path_factory.mktemp("judge")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>").save_pretrained(str(folder))
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


@pytest.mark.slow
def test_judge_reads_yes_no_probabilities_from_a_local_model(tiny_judge: Path, shared_data: Path) -> None:
    from thresher.decontam.judge import JudgeConfig, TransformersJudge

    judge = TransformersJudge(JudgeConfig(str(tiny_judge), max_chars=300, batch_size=2))
    q = _gsm8k(shared_data)["question"].to_list()
    pairs = [(q[0], q[0]), (q[1], q[0]), ("short", q[2])]
    first = judge.same_problem(pairs)
    assert first.shape == (3,) and ((first > 0) & (first < 1)).all()
    np.testing.assert_allclose(judge.same_problem(pairs), first, rtol=1e-5)  # deterministic, and batching does not change it
    np.testing.assert_allclose(
        TransformersJudge(JudgeConfig(str(tiny_judge), max_chars=300, batch_size=1)).same_problem(pairs), first, rtol=1e-4
    )
    assert len(set(np.round(first, 6))) > 1  # it reads the prompt: different pairs, different answers


@pytest.mark.slow
def test_audit_with_the_judge(tiny_judge: Path, shared_data: Path, tmp_path: Path) -> None:
    from thresher.decontam.judge import JudgeConfig

    train = tmp_path / "train.jsonl"
    _write_training_file(train, shared_data)
    benches = load_benchmarks([f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"])
    config = AuditConfig(methods=("ngram", "judge"), judge=JudgeConfig(str(tiny_judge), candidates_from=0.5, max_chars=300))
    result = run_audit([str(train)], benches, config)
    judged = result.matches.filter(pl.col("method") == "judge")
    assert judged.height >= 2 and judged["score"].is_between(0, 1).all()
    assert result.matches.filter(pl.col("method") == "embedding").is_empty()  # candidates only, not a method of its own here


def test_decontaminate_command_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    from tests.helpers import read_rows, thresher

    train = tmp_path / "train.jsonl"
    planted = _write_training_file(train, shared_data)
    with train.open("a") as f:
        f.write('{"messages": [{"role": "narrator", "content": "x"}]}\n')  # a bad row, quarantined
    out = tmp_path / "out"
    done = thresher(
        "decontaminate",
        "--train",
        str(train),
        "--train",
        str(shared_data / "sft/alpaca_en_demo.json"),
        "--bench",
        f"gsm8k={shared_data / 'gsm8k/test.jsonl'}",
        "--bench",
        f"humaneval={shared_data / 'humaneval/HumanEval.jsonl.gz'}",
        "--out",
        str(out),
        "--methods",
        "ngram,minhash",
        "--on-error",
        "quarantine",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    d = summary["decontamination"]
    assert d["balanced"] and d["quarantined"] == 1 and d["in"] == planted["rows"] + 999 + 1
    removed = read_rows(out / "removed.parquet")
    assert {r["provenance"]["row"] for r in removed if r["source"] == "train"} == {planted["in_prompt"], planted["in_response"]}
    assert all(r["bench"] and r["method"] in ("ngram", "minhash") and r["score"] >= 0.5 for r in removed)
    assert len(read_rows(out / "clean.parquet")) == d["clean"] == d["in"] - d["removed"] - 1
    matches = pl.read_parquet(out / "matches.parquet")
    assert {"train_id", "train_source", "bench", "bench_id", "method", "score", "spans", "evidence"} <= set(matches.columns)
    cell = next(r for r in summary["table"] if r["source"] == "train" and r["bench"] == "gsm8k")
    assert cell["items_leaked"] == 2 and cell["rows_contaminated"] == 2 and cell["items"] == 1319
    html = (out / "report.html").read_text()
    assert "<mark>" in html and "<svg" in html and "gsm8k" in html
    bad = thresher("audit", "--train", str(train), "--bench", "gsm9k", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "unknown benchmark 'gsm9k'" in bad.stderr
    strict = thresher("audit", "--train", str(train), "--bench", f"gsm8k={shared_data / 'gsm8k/test.jsonl'}", "--out", str(tmp_path / "s"))
    assert strict.returncode == 1 and "unknown role 'narrator'" in strict.stderr


def test_multiple_choice_items_match_with_or_without_options(shared_data: Path) -> None:
    items = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items
    detector = NgramDetector(items)
    short = items.filter(pl.col("bench_id") == "conceptual_physics_test/125").row(0, named=True)  # stem: "Sound travels in"
    long = items.filter(pl.col("bench_id") == "abstract_algebra_test/1").row(0, named=True)
    rows = pl.Series(
        [
            "Why does my voice sound different? Because sound travels in your bones.",  # only the short stem: not evidence
            f"Quiz time!\n{short['question']}\n{short['options']}",  # the short stem with its options
            long["question"],  # a long stem without its options
            f"{long['question']}\n" + "\n".join(f"({c}) {o}" for c, o in zip("abcd", long["options"].splitlines(), strict=True)),
        ]
    )
    detector.scan(TrainBatch.of(rows, 0))
    found = (
        detector.finish()
        .filter(pl.col("score") >= 0.5)
        .join(items.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64)).select("item", "bench_id"), on="item")
    )
    hits = {r: set(found.filter(pl.col("row") == r)["bench_id"].to_list()) for r in range(4)}
    assert "conceptual_physics_test/125" not in hits[0]
    assert "conceptual_physics_test/125" in hits[1]
    assert "abstract_algebra_test/1" in hits[2] and "abstract_algebra_test/1" in hits[3]


def test_final_ask_after_a_passage(shared_data: Path) -> None:
    from thresher.decontam.similarity import _final_ask

    items = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items
    history = items.filter(pl.col("bench_id") == "high_school_us_history_test/0").row(0, named=True)["question"]
    assert _final_ask(history) == history.strip().splitlines()[-1] and len(_final_ask(history).split()) >= 8
    assert _final_ask("One line question about the Oregon Territory and how it was acquired?") == ""
    assert _final_ask("Options:\n- Yes\n- No") == ""  # a short last line is no question of its own


LABEL_STYLES = (
    lambda i, o: f"{'ABCD'[i]}. {o}",
    lambda i, o: f"({'abcd'[i]}) {o}",
    lambda i, o: f"{'ABCD'[i]}) {o}",
    lambda i, o: f"[{'ABCD'[i]}] {o}",
    lambda i, o: o,
)


def test_short_multiple_choice_items_match_whatever_the_option_labels(shared_data: Path) -> None:
    """Issue 21: a short MMLU question copied with its options is found in every lettering; the stem with
    other options, or generic stems, is not (negative controls). Measured before the option labels were
    dropped: 39 of 60 short items found; after: 60 of 60, no LIMA row flagged."""
    items = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items
    short = items.filter(pl.col("question").str.split(" ").list.len() < 8).sample(n=40, seed=3)
    rows = []
    for k, item in enumerate(short.iter_rows(named=True)):
        style = LABEL_STYLES[k % len(LABEL_STYLES)]
        rows.append(f"{item['question']}\n" + "\n".join(style(i, o) for i, o in enumerate(item["options"].splitlines())))
    controls = [
        "Which of the following is true?\nA. The sky is green\nB. Fish can fly\nC. Rocks are soft\nD. Two plus two is four",
        "Which of these is correct?\n(a) Paris is in Spain\n(b) Water boils at 10 degrees\n(c) Cats bark\n(d) None",
        "1. Preheat the oven.\n2. Mix the flour and the eggs.\n3. Bake for twenty minutes.",
    ]
    detector = NgramDetector(items)
    detector.scan(TrainBatch.of(pl.Series(rows + controls), 0))
    found = detector.finish().filter(pl.col("score") >= 0.5)
    ids = items.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64)).select("item", "bench_id")
    hits = found.join(ids, on="item")
    wanted = short["bench_id"].to_list()
    missed = [(k, wanted[k]) for k in range(len(rows)) if wanted[k] not in set(hits.filter(pl.col("row") == k)["bench_id"])]
    assert missed == []
    assert hits.filter(pl.col("row") >= len(rows)).is_empty(), hits.filter(pl.col("row") >= len(rows))


def test_evidence_points_into_the_original_texts(shared_data: Path, tmp_path: Path) -> None:
    """Character offsets of the shared runs, in the training row as written and in the benchmark's own text:
    the marked originals read as the same words; an unalignable text (NFKC splits "½") gets no offsets."""
    from thresher.decontam.evidence import char_spans, word_offsets

    items = load_benchmark("mmlu", str(shared_data / "mmlu/data")).items.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    item = items.filter(pl.col("bench_id") == "abstract_algebra_test/1").row(0, named=True)
    options = item["options"].split("\n")
    text = "Quiz!!  " + item["question"].upper().replace(" ", "   ") + "\n" + "\n".join(f"({'abcd'[i]}) {o}" for i, o in enumerate(options))
    rows = [
        {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "user", "content": "½ " + item["question"]}, {"role": "assistant", "content": "ok"}]},
    ]
    train = tmp_path / "t.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_audit([str(train)], [load_benchmark("mmlu", str(shared_data / "mmlu/data"))], AuditConfig())
    first = result.matches.filter(pl.col("train_row") == 0).sort("score", descending=True).row(0, named=True)
    assert first["bench_id"] == "abstract_algebra_test/1" and first["char_spans"]

    def words(s: str) -> list[str]:
        return [s[a:b].lower() for a, b in word_offsets(s)]

    prompt = item["question"] + "\n" + item["options"]
    for span in first["char_spans"]:
        original = {"question": item["question"], "prompt": prompt, "answer": item["answer"]}[span["part"]]
        written = words(first["train_text"][span["train_start"] : span["train_end"]])
        assert written and written == words(original[span["bench_start"] : span["bench_end"]])
    covered = sum(s["bench_end"] - s["bench_start"] for s in first["char_spans"] if s["part"] == "prompt")
    assert covered >= 0.9 * len(prompt)
    second = result.matches.filter(pl.col("train_row") == 1)
    assert second.height and second["char_spans"].is_null().all()  # "½" becomes "1⁄2": two words more than the text shows
    # negative control: spans shifted by one word no longer read the same
    shifted = first["spans"][0] | {"train_start": first["spans"][0]["train_start"] + 1, "train_end": first["spans"][0]["train_end"] + 1}
    moved = char_spans(pl.DataFrame({"train_text": [first["train_text"]], "item": [first["item"]], "spans": [[shifted]]}), items)[0]
    bench_part = {"question": item["question"], "prompt": prompt}[shifted["part"]]
    assert words(first["train_text"][moved[0]["train_start"] : moved[0]["train_end"]]) != words(
        bench_part[moved[0]["bench_start"] : moved[0]["bench_end"]]
    )
