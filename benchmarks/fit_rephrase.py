"""Fit (and check) the ``rephrase`` method's logistic model on the dev rephrase sets.

Rows: the LLM Decontaminator's English rephrases of GSM8K test (1,319), HumanEval (Python, 164) and
MMLU (abstract algebra, US history, sociology; 505), each aligned with its item; negatives: GSM8K
*train* (7,473: the same style and topics), LIMA, the Alpaca demo set and Code Alpaca 2k (code that is not HumanEval). Items: GSM8K test,
HumanEval and all of MMLU (14,042). One embedding audit (candidates from cosine 0.6) gives the
pairs; a pair is positive when the row is a rephrase of that very item. Fit on the pairs whose row
belongs to an even item (negatives: even rows), check on the odd half, and print the coefficients
for ``thresher/decontam/rephrase.py``, recall per set and precision on the held-out half, against
the plain embedding method at its threshold.

    .venv/bin/python benchmarks/fit_rephrase.py [--cache /tmp/rephrase]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED  # noqa: E402

from thresher.decontam.audit import AuditConfig, run_audit  # noqa: E402
from thresher.decontam.benchmarks import load_benchmarks  # noqa: E402
from thresher.decontam.rephrase import COEFFICIENTS, FEATURES, features, fit, item_rarity, probability, short_answer  # noqa: E402
from thresher.decontam.similarity import EmbeddingMatchConfig  # noqa: E402

REPHRASE = SHARED / "contamination/llm-decontaminator/rephrase"


def _texts(path: Path) -> list[str]:
    return [orjson.loads(line)["text"] for line in path.read_bytes().splitlines()]


def rows(items: pl.DataFrame) -> list[tuple[str, str, str, str]]:
    """(user text, set, bench, bench_id); bench "" for negatives."""
    out = []
    gsm = items.filter(pl.col("bench") == "gsm8k")["bench_id"].to_list()
    out += [(t, "rephrase_gsm8k", "gsm8k", gsm[i]) for i, t in enumerate(_texts(REPHRASE / "rephrase_gsm8k.jsonl"))]
    he = items.filter(pl.col("bench") == "humaneval")["bench_id"].to_list()
    out += [(t, "rephrase_humaneval", "humaneval", he[i]) for i, t in enumerate(_texts(REPHRASE / "humaneval_python.jsonl")) if t.strip()]
    for subject in ("abstract_algebra", "high_school_us_history", "sociology"):
        texts = _texts(REPHRASE / f"{subject}_test_rephrase_english_filtered_question.jsonl")
        out += [(t, "rephrase_mmlu", "mmlu", f"{subject}_test/{i}") for i, t in enumerate(texts) if t.strip()]
    for line in (SHARED / "gsm8k/train.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        out.append((r["question"] + "\n" + r["answer"], "neg_gsm8k_train", "", ""))
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json"):  # Code Alpaca: code that is not HumanEval
        for r in json.loads((SHARED / name).read_text()):
            text = (r["instruction"] + ("\n" + r["input"] if r.get("input") else "") + "\n" + r.get("output", "")).strip()
            if text:
                out.append((text, f"neg_{Path(name).stem}", "", ""))
    return out


def candidate_pairs(threshold_from: float = 0.6) -> tuple[pl.DataFrame, pl.DataFrame]:
    benches = load_benchmarks(
        [f"gsm8k={SHARED / 'gsm8k/test.jsonl'}", f"humaneval={SHARED / 'humaneval/HumanEval.jsonl.gz'}", f"mmlu={SHARED / 'mmlu/data'}"]
    )
    items = pl.concat([b.items for b in benches]).with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    labelled = rows(items)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        with path.open("wb") as f:
            for i, (text, *_rest) in enumerate(labelled):
                f.write(
                    orjson.dumps(
                        {"id": f"r{i}", "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Okay."}]}
                    )
                    + b"\n"
                )
        started = time.perf_counter()
        config = AuditConfig(
            methods=("embedding",),
            fields="prompt",
            embedding=EmbeddingMatchConfig(floor=threshold_from, cache_dir=str(Path.home() / ".cache/thresher/embeddings")),
        )
        result = run_audit([str(path)], benches, config)
        print(f"embedding audit of {len(labelled)} rows: {time.perf_counter() - started:.0f} s, {result.matches.height} candidate pairs")
    labels = pl.DataFrame(
        {
            "train_id": [f"r{i}" for i in range(len(labelled))],
            "set": [s for _, s, _, _ in labelled],
            "true_bench": [b for _, _, b, _ in labelled],
            "true_id": [i for _, _, _, i in labelled],
        }
    )
    true_item = labels.join(
        items.select(pl.col("bench").alias("true_bench"), pl.col("bench_id").alias("true_id"), pl.col("item").alias("true_item")),
        on=["true_bench", "true_id"],
        how="left",
    )
    pairs = (
        result.matches.select("train_id", "train_text", "item", pl.col("score").alias("cosine"))
        .join(true_item, on="train_id")
        .join(items.select("item", "question", "answer", "options"), on="item")
        .with_columns((pl.col("item") == pl.col("true_item")).fill_null(False).alias("label"))
    )
    return pairs, labels


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, help="keep the candidate pairs here (Parquet) and reuse them: refits take seconds")
    args = parser.parse_args()
    if args.cache and args.cache.with_suffix(".pairs.parquet").exists():
        pairs = pl.read_parquet(args.cache.with_suffix(".pairs.parquet"))
        labels = pl.read_parquet(args.cache.with_suffix(".labels.parquet"))
    else:
        pairs, labels = candidate_pairs()
        if args.cache:
            pairs.write_parquet(args.cache.with_suffix(".pairs.parquet"))
            labels.write_parquet(args.cache.with_suffix(".labels.parquet"))
    rarity = item_rarity(pairs.select("item", "question", "options").unique("item"))
    pairs = pairs.with_columns(short_answer(pairs["answer"]))
    x = features(pairs.select("train_text", "question", "short_answer", "cosine", "answer"), rarity)
    # halves by item for rephrases (a rephrase's item never crosses), by row for negatives
    number = pl.col("train_id").str.slice(1).cast(pl.Int64)
    pairs = pairs.with_columns((pl.coalesce(pl.col("true_item"), number) % 2 == 1).alias("held"))
    even = ~pairs["held"].to_numpy()
    y = pairs["label"].to_numpy().astype(np.float64)
    w = fit(x.to_numpy()[even], y[even])
    print("coefficients (" + ", ".join(FEATURES) + ", intercept):")
    print("COEFFICIENTS = (" + ", ".join(f"{v:.4f}" for v in w) + ")")
    print("in use:       ", COEFFICIENTS)
    scored = pairs.with_columns(pl.Series("p", probability(x, tuple(w))))
    sets = labels.filter(pl.col("set").str.starts_with("rephrase"))
    # a rephrase row's half follows its item even when it has no candidate pair
    sets = sets.join(
        pairs.select("true_bench", "true_id", "held").unique(["true_bench", "true_id"]), on=["true_bench", "true_id"], how="left"
    )
    for name, score, threshold in (
        ("embedding 0.85", "cosine", 0.85),
        ("embedding 0.80", "cosine", 0.80),
        ("rephrase 0.5", "p", 0.5),
        ("rephrase 0.7", "p", 0.7),
        ("rephrase 0.9", "p", 0.9),
    ):
        for part, held in (("fit half", False), ("held-out half", True)):
            flagged = scored.filter((pl.col("held") == held) & (pl.col(score) >= threshold))
            right = flagged.filter("label")
            per_set = []
            for (s,), rows_of in sets.filter(pl.col("held").fill_null(False) == held).group_by("set", maintain_order=True):
                found = right.filter(pl.col("set") == s)["train_id"].n_unique()
                per_set.append(f"{s} {found}/{rows_of.height} = {found / max(rows_of.height, 1):.3f}")
            gsm = flagged.filter(pl.col("set") == "neg_gsm8k_train")["train_id"].n_unique()
            precision = right["train_id"].n_unique() / max(flagged["train_id"].n_unique(), 1)
            print(
                f"{name:15s} {part:14s} precision {precision:.3f}; recall: "
                + "; ".join(per_set)
                + f"; GSM8K-train rows flagged {gsm} (of ~3,700)"
            )


if __name__ == "__main__":
    main()
