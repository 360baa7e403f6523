"""``--calibrate``: controlled variants planted into copies of the user's rows, recall per variant, and
nothing planted ever written out."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl

from tests.helpers import read_rows, thresher
from thresher.accounting import QuarantineWriter
from thresher.decontam.audit import AuditConfig, run_audit
from thresher.decontam.benchmarks import load_benchmarks
from thresher.decontam.calibrate import RowSample
from thresher.decontam.matching import TrainBatch
from thresher.decontam.ngram import NgramConfig
from thresher.decontam.variants import VARIANTS, item_text


def _benches(shared_data: Path) -> list[str]:
    return [f"gsm8k={shared_data / 'gsm8k/test.jsonl'}", f"mbpp={shared_data / 'mbpp/mbpp.jsonl'}", f"mmlu={shared_data / 'mmlu/data'}"]


def test_every_variant_changes_the_text_as_it_says() -> None:
    rng = random.Random(0)
    question = (
        "Janet has 16 ducks that lay 3 eggs each day. She eats 2 for breakfast and bakes muffins with 4. "
        "How many eggs does she sell at the market every day if she sells the rest?"
    )
    mc = item_text("Which of these snakes is poisonous?", "Python\nCobra\nBoa\nCorn snake")
    assert mc.splitlines()[1:] == ["A. Python", "B. Cobra", "C. Boa", "D. Corn snake"]
    outs = {name: make(question, rng) for name, make in VARIANTS.items()}
    assert outs["verbatim"] == question and question in outs["embedded"] and len(outs["embedded"]) > len(question)
    assert outs["noisy"] != question and outs["noisy"].lower().split()[:2] != []
    assert question.startswith(outs["partial"]) and 0.55 * len(question) <= len(outs["partial"]) <= 0.8 * len(question)
    assert outs["reformatted"].startswith("> ") and outs["reformatted"].replace("> ", "").split() == question.split()
    assert outs["numbers"] != question and [w for w in outs["numbers"].split() if not w[0].isdigit()] == [
        w for w in question.split() if not w[0].isdigit()
    ]
    assert outs["rephrased"] and outs["rephrased"] != question and "How many" not in outs["rephrased"]
    relabeled = VARIANTS["reformatted"](mc, rng)
    assert relabeled and "A. Python" not in relabeled and "Python" in relabeled
    assert VARIANTS["partial"]("Which of these snakes is poisonous?", rng) is None  # short: no partial copy
    assert VARIANTS["numbers"]("No numbers here at all.", rng) is None


def test_the_row_sample_is_the_same_whatever_the_batches() -> None:
    turns = pl.Series([[f"row {i}"] for i in range(1000)], dtype=pl.List(pl.String))

    def sample(batch_rows: int) -> list[list[str]]:
        s = RowSample(50, seed=3)
        for start in range(0, 1000, batch_rows):
            part = turns.slice(start, batch_rows)
            s.add(TrainBatch.of(part.list.join("\n"), start, turns=part))
        return s.turns

    first = sample(1000)
    assert len(first) == 50 and first == sample(7) == sample(128)
    picked = [int(t[0].split()[1]) for t in first]
    assert np.mean(picked) > 300 and np.mean(picked) < 700  # spread over the stream, not its head
    other = RowSample(50, seed=4)
    other.add(TrainBatch.of(turns.list.join("\n"), 0, turns=turns))
    assert other.turns != first  # negative control: another seed, another sample


def test_calibration_measures_recall_per_variant_and_plants_nothing_in_outputs(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = thresher(
        "decontaminate",
        "--train",
        str(shared_data / "sft/alpaca_en_demo.json"),
        *sum((["-b", b] for b in _benches(shared_data)), []),
        "--calibrate",
        "240",
        "--out",
        str(out),
        "--on-error",
        "quarantine",
    )
    assert done.returncode == 0, done.stderr
    assert "calibration (240 planted rows)" in " ".join(done.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    calibration = summary["notes"]["calibration"]
    recall = calibration["recall"]
    assert set(recall) == {"verbatim", "embedded", "noisy", "partial", "reformatted", "numbers"}  # no rephrases without embeddings
    assert all(recall[v]["rows"] >= 30 for v in recall) and sum(r["rows"] for r in recall.values()) == 240
    assert min(recall[v]["ngram"] for v in ("verbatim", "embedded", "noisy", "reformatted")) >= 0.97
    assert calibration["unplanted_rows"] == 240 and calibration["unplanted_flagged"]["ngram"] < 0.02
    d = summary["decontamination"]
    assert d["balanced"] and d["in"] == 999 + d["quarantined"]  # planted rows are not counted, kept or removed
    ids = {r["id"] for r in read_rows(out / "clean.parquet")} | {r["id"] for r in read_rows(out / "removed.parquet")}
    assert len(ids) == d["clean"] + d["removed"]
    assert set(pl.read_parquet(out / "matches.parquet")["train_id"].to_list()) <= ids
    assert "Calibration on this corpus" in (out / "report.html").read_text()


def test_calibration_follows_the_detector_it_measures(shared_data: Path, tmp_path: Path) -> None:
    """Negative control: an n-gram threshold of 1.0 finds few partial copies (only multiple-choice items whose
    cut falls in the options, leaving the question whole); calibration says so."""
    benches = load_benchmarks(_benches(shared_data))

    def recall(config: NgramConfig) -> dict:
        result = run_audit(
            [str(shared_data / "sft/code_alpaca_2k.json")],
            benches,
            AuditConfig(ngram=config, calibrate=150),
            quarantine=QuarantineWriter(tmp_path / "q.jsonl"),
        )
        return result.notes["calibration"]["recall"]

    default, strict = recall(NgramConfig()), recall(NgramConfig(threshold=1.0))
    assert default["partial"]["ngram"] >= 0.8 and strict["partial"]["ngram"] <= 0.35
    assert strict["verbatim"]["ngram"] >= 0.95  # verbatim copies cover the whole item


def test_decoys_estimate_false_positives_from_templates(shared_data: Path, tmp_path: Path) -> None:
    """The false-positive estimate scans the sampled rows against decoys (halves of two items joined: the format and
    templates of the benchmark in text no corpus holds). MATH train against MATH test, a corpus full of template
    siblings, gets a clear estimate and the warning; GSM8K train against GSM8K test (hardly any shared templates)
    gets none. Decoys never reproduce a real item, and items copied whole are not used."""
    from thresher.decontam.audit import combined_items
    from thresher.decontam.benchmarks import load_benchmarks
    from thresher.decontam.calibrate import decoys

    items = combined_items(load_benchmarks([f"math={shared_data / 'math/math_test.jsonl'}"]))
    made = decoys(items, 300, exclude=set(range(0, 5000, 2)), seed=3)
    assert made.height == 300 and not set(made["question"].to_list()) & set(items["question"].to_list())
    seconds = made.join(items.select("question", "answer"), on="answer", how="semi")
    assert seconds.height == made.height  # each keeps the answer of an item it was cut from
    odd = {q for q in items.filter(pl.col("item") % 2 == 1)["question"].to_list()}
    tails = [q.split(" ")[len(q.split(" ")) // 2 :] for q in odd]
    assert all(any(d.endswith(" ".join(t)) for t in tails) for d in made["question"].head(20).to_list())  # halves of unexcluded items

    def estimate(train: str, bench: str) -> dict:
        done = thresher(
            "audit", "-t", train, "-b", bench, "--calibrate", "300", "-o", str(tmp_path / "o"), "--overwrite", "--on-error", "quarantine"
        )
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / "o" / "summary.json").read_text())["notes"]["calibration"]["false_positive_estimate"]

    math = estimate(str(shared_data / "math/math_train_rllm.json"), f"math={shared_data / 'math/math_test.jsonl'}")
    assert math["flagged"] >= 0.02 and math["corpus_flag_rate_within_twice_the_estimate"], math
    gsm = estimate(str(shared_data / "gsm8k/train.jsonl"), f"gsm8k={shared_data / 'gsm8k/test.jsonl'}")
    assert gsm["flagged"] <= 0.005 and not gsm["corpus_flag_rate_within_twice_the_estimate"], gsm
