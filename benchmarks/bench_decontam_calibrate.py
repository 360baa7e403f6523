"""Literal leakage of short and templated items, and how well ``--calibrate`` predicts recall.

Corpus (clean, real): LIMA, the Alpaca demo set, Code Alpaca 2k and GSM8K *train* (hard negatives),
as one SFT JSONL. Benchmarks: GSM8K, MBPP, HumanEval, MMLU, BBH and IFEval.

1. ``run_audit(..., calibrate=N, seed A)``: the estimate, recall per variant and method.
2. A separately planted set: N more variants (seed B: other items, other host rows) planted into copies
   of corpus rows and *written into the training file* beside the clean corpus; the audit then runs as
   a user would run it. Measured: recall per variant (a planted row flagged with its own item) and per
   benchmark, precision (flagged planted rows with their item / every flagged row: clean rows flagged
   are false positives, though some are real leaks), the GSM8K-train flag rate, and the gap between
   the estimate and the measurement per variant.

    .venv/bin/python benchmarks/bench_decontam_calibrate.py [--planted 1500] [--methods ngram]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED  # noqa: E402

from thresher.decontam.audit import AuditConfig, combined_items, run_audit  # noqa: E402
from thresher.decontam.benchmarks import load_benchmarks  # noqa: E402
from thresher.decontam.calibrate import RowSample, plant  # noqa: E402
from thresher.decontam.matching import TrainBatch  # noqa: E402
from thresher.decontam.similarity import EmbeddingMatchConfig  # noqa: E402
from thresher.decontam.variants import VARIANTS  # noqa: E402

BENCHES = {
    "gsm8k": "gsm8k/test.jsonl",
    "mbpp": "mbpp/mbpp.jsonl",
    "humaneval": "humaneval/HumanEval.jsonl.gz",
    "mmlu": "mmlu/data",
    "bbh": "bbh",
    "ifeval": "ifeval/input_data.jsonl",
}
LITERAL = ["verbatim", "embedded", "noisy", "partial", "reformatted"]


def corpus() -> list[tuple[list[str], str]]:
    rows = []
    for name in ("sft/lima.json", "sft/alpaca_en_demo.json", "sft/code_alpaca_2k.json"):
        for r in json.loads((SHARED / name).read_text()):
            prompt = (r["instruction"] + ("\n" + r["input"] if r.get("input") else "")).strip()
            if prompt and r.get("output", "").strip():
                rows.append(([prompt, r["output"]], Path(name).stem))
    for line in (SHARED / "gsm8k/train.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        rows.append(([r["question"], r["answer"]], "gsm8k_train"))
    return rows


def write(path: Path, rows: list[tuple[list[str], str]]) -> None:
    with path.open("wb") as f:
        for i, (turns, _) in enumerate(rows):
            messages = [{"role": "user" if j % 2 == 0 else "assistant", "content": t} for j, t in enumerate(turns)]
            if len(messages) % 2:
                messages.append({"role": "assistant", "content": "Okay."})
            f.write(orjson.dumps({"id": f"r{i}", "messages": messages}) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planted", type=int, default=1500)
    parser.add_argument("--methods", default="ngram")
    parser.add_argument("--estimate-seed", type=int, default=1)
    parser.add_argument("--measure-seed", type=int, default=2)
    args = parser.parse_args()
    methods = tuple(args.methods.split(","))
    benches = load_benchmarks([f"{n}={SHARED / p}" for n, p in BENCHES.items()])
    items = combined_items(benches)
    clean = corpus()
    config = AuditConfig(methods=methods, embedding=EmbeddingMatchConfig(cache_dir=str(Path.home() / ".cache/thresher/embeddings")))
    variants = [v for v in VARIANTS if v != "rephrased" or "embedding" in methods]
    with tempfile.TemporaryDirectory() as tmp:
        clean_path = Path(tmp) / "clean.jsonl"
        write(clean_path, clean)
        started = time.perf_counter()
        estimate = run_audit(
            [str(clean_path)], benches, AuditConfig(**{**config.__dict__, "calibrate": args.planted, "calibrate_seed": args.estimate_seed})
        )
        print(f"audit with --calibrate {args.planted}: {time.perf_counter() - started:.1f} s over {len(clean)} rows")
        calibration = estimate.notes["calibration"]
        # the separately planted set: other hosts (another sample), other items (another seed), written into the file
        sample = RowSample(args.planted, seed=args.measure_seed)
        turns = pl.Series([t for t, _ in clean], dtype=pl.List(pl.String))
        sample.add(TrainBatch.of(turns.list.join("\n"), 0, turns=turns))
        planted_rows, labels = plant(items, sample.turns, args.planted, variants, seed=args.measure_seed)
        train_path = Path(tmp) / "train.jsonl"
        write(train_path, clean + [(t, "planted") for t in planted_rows])
        started = time.perf_counter()
        result = run_audit([str(train_path)], benches, config)
        print(f"audit of {len(clean) + len(planted_rows)} rows ({len(planted_rows)} planted): {time.perf_counter() - started:.1f} s")
    first = len(clean)
    labels = labels.with_columns(
        (pl.int_range(pl.len()) + first).alias("row"), pl.col("item").replace_strict(items["item"], items["bench"]).alias("bench")
    )
    flagged = result.matches.filter("flagged").select("row", "item", "method")
    source = pl.DataFrame({"row": range(first), "source": [s for _, s in clean]})
    print("\nrecall per variant: estimate (--calibrate, seed A) vs measured (planted in the file, seed B)")
    print("| variant | planted | " + " | ".join(f"{m} est. | {m} measured | gap" for m in methods) + " |")
    print("|---|---:|" + "---:|---:|---:|" * len(methods))
    summary: dict[str, dict] = {}
    for variant in variants:
        rows = labels.filter(pl.col("variant") == variant)
        cells = []
        for m in methods:
            found = rows.join(flagged.filter(pl.col("method") == m), on=["row", "item"])["row"].n_unique() / max(rows.height, 1)
            est = calibration["recall"][variant][m]
            summary.setdefault(variant, {})[m] = {"estimate": est, "measured": round(found, 4)}
            cells.append(f"{est:.3f} | {found:.3f} | {found - est:+.3f}")
        print(f"| {variant} | {rows.height} | " + " | ".join(cells) + " |")
    for m in methods:
        mine = flagged.filter(pl.col("method") == m)
        literal = labels.filter(pl.col("variant").is_in(LITERAL))
        hit = literal.join(mine, on=["row", "item"])["row"].n_unique()
        wrong_clean = mine.filter(pl.col("row") < first).join(source, on="row")
        clean_rows = wrong_clean["row"].n_unique()
        planted_wrong = mine.filter(pl.col("row") >= first).join(labels, on=["row", "item"], how="anti")["row"].n_unique()
        precision = hit / max(hit + clean_rows, 1)
        gsm = wrong_clean.filter(pl.col("source") == "gsm8k_train")["row"].n_unique() / sum(s == "gsm8k_train" for _, s in clean)
        print(
            f"\n{m}: literal recall {hit / literal.height:.4f} ({hit}/{literal.height}), precision {precision:.4f} "
            f"({clean_rows} clean rows flagged: "
            + ", ".join(f"{s} {c}" for s, c in wrong_clean.unique("row").group_by("source").len().sort("source").iter_rows())
            + f"), planted rows flagged with another item too: {planted_wrong}; GSM8K-train flagged {gsm:.4%}"
        )
        per_bench = []
        for (bench,), part in literal.group_by("bench", maintain_order=True):
            found = part.join(mine, on=["row", "item"])["row"].n_unique()
            per_bench.append(f"{bench} {found}/{part.height}")
        print("  literal recall per benchmark: " + ", ".join(sorted(per_bench)))
        missed = literal.join(mine, on=["row", "item"], how="anti").join(items.select("item", "bench_id", "question"), on="item")
        for r in missed.head(40).iter_rows(named=True):
            print(f"  missed {r['variant']:11s} {r['bench']}/{r['bench_id']}: {r['question'][:90]!r}")
        for r in (
            wrong_clean.unique("row")
            .head(6)
            .join(result.matches.filter("flagged").select("row", "bench", "bench_id", "evidence"), on="row")
            .unique("row")
            .iter_rows(named=True)
        ):
            print(f"  clean flagged {r['source']}: {r['bench']}/{r['bench_id']}: {r['evidence'][:90]!r}")
    print(json.dumps({"calibration_vs_measured": summary}, indent=None))


if __name__ == "__main__":
    main()
