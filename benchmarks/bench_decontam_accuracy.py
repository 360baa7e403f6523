"""Decontamination accuracy on a contamination test set built from real data in ../shared/data.

Training rows (SFT conversations, JSONL):
- clean: LIMA, the Alpaca demo set, Code Alpaca 2k, and GSM8K *train* (hard negatives: the same
  style and topics as GSM8K test);
- planted: GSM8K / MATH / HumanEval / MMLU *test* items, and short TruthfulQA questions (< 8 words),
  injected verbatim, with case/punctuation/whitespace noise, inside a longer conversation, and
  partially (the first 60-80% of the question's characters);
- rephrased (LLM Decontaminator study): GSM8K, HumanEval in Python / C / JavaScript, MMLU English
  rephrases and Chinese translations (three subjects), each row aligned with its original item.

Each planted or rephrased row knows its benchmark item. A row counts as found when a method flags
it with that item; precision counts every flagged row, so clean rows flagged are the false
positives. Prints recall per variant and method, precision per method, the GSM8K-train false
positive rate, and a threshold sweep.

    .venv/bin/python benchmarks/bench_decontam_accuracy.py [--per-bench 200] [--methods ngram,minhash,embedding]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED  # noqa: E402

from thresher.decontam.audit import AuditConfig, run_audit  # noqa: E402
from thresher.decontam.benchmarks import load_benchmark  # noqa: E402
from thresher.decontam.ngram import NgramConfig  # noqa: E402
from thresher.decontam.similarity import EmbeddingMatchConfig, MinhashMatchConfig  # noqa: E402
from thresher.decontam.variants import POSTAMBLES, PREAMBLES, noisy, prefix  # noqa: E402

REPHRASE = SHARED / "contamination/llm-decontaminator/rephrase"
WORDS = re.compile(r"[^\W_]+")


def conversation(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def clean_rows() -> list[tuple[dict, str]]:
    rows = []
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json"):
        for r in json.loads((SHARED / name).read_text()):
            prompt = (r["instruction"] + ("\n" + r["input"] if r.get("input") else "")).strip()
            if prompt and r.get("output", "").strip():
                rows.append((conversation(prompt, r["output"]), f"clean:{Path(name).stem}"))
    for line in (SHARED / "gsm8k/train.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        rows.append((conversation(r["question"], r["answer"]), "clean:gsm8k_train"))
    return rows


def planted_rows(items: dict[str, pl.DataFrame], per_bench: int, rng: random.Random) -> list[tuple[dict, str, str, str]]:
    """(row, variant, bench, bench_id) for every planted copy."""
    fillers = [r["output"] for r in json.loads((SHARED / "sft/lima.json").read_text())]
    out = []
    for bench in ("gsm8k", "math", "humaneval", "mmlu"):
        frame = items[bench]
        for row in frame.sample(min(per_bench, frame.height), seed=rng.randrange(1 << 30)).iter_rows(named=True):
            bid = row["bench_id"]
            q = row["question"] + ("\n" + row["options"] if row["options"] else "")  # multiple choice: as a training row shows it
            out.append((conversation(q, row["answer"] or "See above."), "verbatim", bench, bid))
            out.append((conversation(noisy(q, rng), "Sure."), "noisy", bench, bid))
            inside = f"{rng.choice(PREAMBLES)}\n\n{q}\n\n{rng.choice(POSTAMBLES)}"
            out.append((conversation(inside, rng.choice(fillers)), "in_conversation", bench, bid))
            cut = "partial" if len(WORDS.findall(q)) >= 16 else "partial_of_short"  # a 60-80% prefix of < 16 words holds < 2 8-grams
            out.append((conversation(prefix(q, rng), "Go on."), cut, bench, bid))
    short = items["truthfulqa"].filter(pl.col("question").str.split(" ").list.len() < 8)
    for row in short.iter_rows(named=True):
        q = row["question"]
        out.append((conversation(q, "Let me think."), "short_verbatim", "truthfulqa", row["bench_id"]))
        out.append(
            (
                conversation(f"{rng.choice(PREAMBLES)} {q} {rng.choice(POSTAMBLES)}", "Ok."),
                "short_in_conversation",
                "truthfulqa",
                row["bench_id"],
            )
        )
    return out


def _texts(path: Path) -> list[str]:
    return [orjson.loads(line)["text"] for line in path.read_bytes().splitlines()]


def rephrased_rows(items: dict[str, pl.DataFrame]) -> list[tuple[dict, str, str, str]]:
    out = []
    gsm_ids = items["gsm8k"]["bench_id"].to_list()
    for i, text in enumerate(_texts(REPHRASE / "rephrase_gsm8k.jsonl")):
        out.append((conversation(text, "Let me solve it."), "rephrase_gsm8k", "gsm8k", gsm_ids[i]))
    he_ids = items["humaneval"]["bench_id"].to_list()
    for lang in ("python", "c", "js"):
        for i, text in enumerate(_texts(REPHRASE / f"humaneval_{lang}.jsonl")):
            if not text.strip():
                continue
            out.append((conversation("Write this function.", text), f"rephrase_humaneval_{lang}", "humaneval", he_ids[i]))
    for subject in ("abstract_algebra", "high_school_us_history", "sociology"):
        for variant, suffix in (
            ("rephrase_mmlu_english", "rephrase_english_filtered_question"),
            ("mmlu_chinese", "chinese_filtered_question"),
        ):
            for i, text in enumerate(_texts(REPHRASE / f"{subject}_test_{suffix}.jsonl")):
                if text.strip():  # some rephrases are empty upstream
                    out.append((conversation(text, "The answer is"), variant, "mmlu", f"{subject}_test/{i}"))
    return out


def build(folder: Path, per_bench: int, seed: int) -> tuple[list[str], pl.DataFrame, dict[str, str]]:
    rng = random.Random(seed)
    specs = {
        "gsm8k": "gsm8k/test.jsonl",
        "math": "math/math_test.jsonl",
        "humaneval": "humaneval/HumanEval.jsonl.gz",
        "mmlu": "mmlu/data",
        "truthfulqa": "truthfulqa/v0_TruthfulQA.csv",
    }
    benches = {name: f"{name}={SHARED / path}" for name, path in specs.items()}
    items = {name: load_benchmark(name, str(SHARED / path)).items for name, path in specs.items()}
    labelled = [(row, variant, "", "") for row, variant in clean_rows()]
    labelled += planted_rows(items, per_bench, rng) + rephrased_rows(items)
    path = folder / "train.jsonl"
    with path.open("wb") as f:
        for i, (row, *_rest) in enumerate(labelled):
            f.write(orjson.dumps({"id": f"r{i}", **row}) + b"\n")
    labels = pl.DataFrame(
        {
            "train_id": [f"r{i}" for i in range(len(labelled))],
            "variant": [v for _, v, _, _ in labelled],
            "true_bench": [b for _, _, b, _ in labelled],
            "true_id": [i for _, _, _, i in labelled],
        }
    )
    return [str(path)], labels, benches


def evaluate(matches: pl.DataFrame, labels: pl.DataFrame, method: str, threshold: float) -> dict:
    flagged = matches.filter((pl.col("method") == method) & (pl.col("score") >= threshold))
    right = flagged.join(labels, on="train_id").filter(
        (pl.col("bench") == pl.col("true_bench")) & (pl.col("bench_id") == pl.col("true_id"))
    )
    found = set(right["train_id"].to_list())
    flagged_rows = set(flagged["train_id"].to_list())
    positives = labels.filter(pl.col("true_bench") != "")
    recall = {}
    for (variant,), part in positives.group_by("variant", maintain_order=True):
        ids = part["train_id"].to_list()
        recall[variant] = sum(i in found for i in ids) / len(ids)
    clean = labels.filter(pl.col("true_bench") == "")
    false_pos = {}
    for (variant,), part in clean.group_by("variant", maintain_order=True):
        ids = part["train_id"].to_list()
        false_pos[variant] = sum(i in flagged_rows for i in ids)
    return {"recall": recall, "false_positives": false_pos, "flagged": len(flagged_rows), "found": len(found)}


def precision_on(result: dict, labels: pl.DataFrame, variants: list[str]) -> tuple[float, float]:
    """Recall over ``variants`` and precision counting their found rows against every clean row flagged."""
    positives = labels.filter(pl.col("variant").is_in(variants))
    total = positives.height
    found = sum(result["recall"][v] * positives.filter(pl.col("variant") == v).height for v in variants)
    fp = sum(result["false_positives"].values())
    return found / total, found / (found + fp) if found + fp else 1.0


LITERAL = ["verbatim", "noisy", "in_conversation", "partial", "short_verbatim", "short_in_conversation"]  # partial_of_short apart
ENGLISH_REPHRASE = ["rephrase_gsm8k", "rephrase_humaneval_python", "rephrase_mmlu_english"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-bench", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="ngram,minhash,embedding")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "thresher-bench-emb"))
    args = parser.parse_args()
    from thresher.decontam.benchmarks import load_benchmarks

    with tempfile.TemporaryDirectory() as tmp:
        train, labels, benches = build(Path(tmp), args.per_bench, args.seed)
        print(
            f"training rows: {labels.height} ({labels.filter(pl.col('true_bench') == '').height} clean); variants:",
            dict(labels.group_by("variant").len().sort("variant").iter_rows()),
        )
        methods = tuple(args.methods.split(","))
        config = AuditConfig(
            methods=methods,
            fields="all",
            ngram=NgramConfig(floor=0.1),
            minhash=MinhashMatchConfig(threshold=0.5),
            embedding=EmbeddingMatchConfig(floor=0.5, cache_dir=args.cache_dir),
        )
        started = time.perf_counter()
        result = run_audit(train, load_benchmarks(list(benches.values())), config)
        print(f"audit: {time.perf_counter() - started:.1f} s, {result.matches.height} matches recorded")
        matches = result.matches
    variants = [v for v in labels["variant"].unique(maintain_order=True).to_list() if not v.startswith("clean:")]
    rows = []
    for method in methods:
        default = config.threshold(method)
        res = evaluate(matches, labels, method, default)
        lit_r, lit_p = precision_on(res, labels, LITERAL)
        reph_r, reph_p = precision_on(res, labels, ENGLISH_REPHRASE)
        gsm_fp = res["false_positives"].get("clean:gsm8k_train", 0) / labels.filter(pl.col("variant") == "clean:gsm8k_train").height
        rows.append(
            {
                "method": method,
                "threshold": default,
                **{v: round(res["recall"].get(v, 0.0), 3) for v in variants},
                "literal_recall": round(lit_r, 4),
                "literal_precision": round(lit_p, 4),
                "en_rephrase_recall": round(reph_r, 4),
                "en_rephrase_precision": round(reph_p, 4),
                "gsm8k_train_fp_rate": round(gsm_fp, 4),
                "false_positives": res["false_positives"],
            }
        )
    print(json.dumps(rows, indent=1))
    print("\nrecall per variant (row flagged with its own item), at each method's default threshold:")
    header = ["variant", *methods]
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for v in variants:
        print(f"| {v} | " + " | ".join(f"{r[v]:.3f}" for r in rows) + " |")
    for key in ("literal_recall", "literal_precision", "en_rephrase_recall", "en_rephrase_precision", "gsm8k_train_fp_rate"):
        print(f"| **{key}** | " + " | ".join(f"{r[key]:.4f}" for r in rows) + " |")
    print("| clean rows flagged | " + " | ".join(str(sum(r["false_positives"].values())) for r in rows) + " |")
    print("\nthreshold sweep (literal = verbatim/noisy/partial/short; en = English rephrases):")
    for method in methods:
        grid = {"ngram": [0.3, 0.4, 0.5, 0.6, 0.7], "minhash": [0.3, 0.4, 0.5, 0.6], "embedding": [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]}[
            method
        ]
        for t in grid:
            res = evaluate(matches, labels, method, t)
            lr, lp = precision_on(res, labels, LITERAL)
            er, ep = precision_on(res, labels, ENGLISH_REPHRASE)
            gsm = res["false_positives"].get("clean:gsm8k_train", 0)
            print(
                f"  {method:9s} >= {t:.2f}: literal R {lr:.4f} P {lp:.4f} | en-rephrase R {er:.4f} P {ep:.4f} | "
                f"clean flagged {sum(res['false_positives'].values())} (gsm8k train {gsm})"
            )
    fp_examples = matches.join(labels, on="train_id").filter((pl.col("true_bench") == "") & pl.col("flagged"))
    print("\nclean rows flagged (first 12):")
    for r in fp_examples.sort("score", descending=True).head(12).iter_rows(named=True):
        shown = re.sub(r"\s+", " ", r["evidence"] or r["train_text"])[:110]
        print(f"  {r['variant']:22s} {r['method']:9s} {r['score']:.3f} {r['bench']}/{r['bench_id']}: {shown}")


if __name__ == "__main__":
    main()
