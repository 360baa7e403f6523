"""N-gram decontamination speed: Thresher's ``ngram`` audit against datatrove's NGramsDecontFilter, same rows and benchmarks.

Training rows: ``--rows`` real-text conversations (two random cuts of LIMA / Alpaca / Code Alpaca
paragraphs per row, ~700 characters), with 1,000 benchmark questions planted, converted once to
canonical Parquet (not timed). Benchmarks: every registered benchmark with a local copy in
../shared/data. Thresher audits every row (all turns) with n=8 coverage and writes no files.
datatrove indexes the same items (question and answer 8-grams, built with datatrove's own
normalizer, word tokenizer and hash) and runs its filter over the same row texts; it needs
``pip install -e .[bench]`` (spacy: its English word tokenizer) and is timed on the first ``--datatrove-rows``.

    .venv/bin/python benchmarks/bench_decontam_speed.py --rows 1000000 --datatrove-rows 100000

``--executors`` instead runs ``thresher decontaminate`` from the command line in process, with ``--executor
local`` and with ``--executor ray`` (a local Ray) on the same canonical file, and compares their output bytes.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHARED, paragraphs  # noqa: E402

from thresher.convert import convert  # noqa: E402
from thresher.decontam.audit import AuditConfig, run_audit  # noqa: E402
from thresher.decontam.benchmarks import load_benchmark  # noqa: E402

LOCAL = {
    "gsm8k": "gsm8k/test.jsonl",
    "math": "math/math_test.jsonl",
    "math500": "math/math500_test.jsonl",
    "humaneval": "humaneval/HumanEval.jsonl.gz",
    "mbpp": "mbpp/mbpp.jsonl",
    "mmlu": "mmlu/data",
    "ifeval": "ifeval/input_data.jsonl",
    "bbh": "bbh",
    "truthfulqa": "truthfulqa/v0_TruthfulQA.csv",
    "alpacaeval": "alpaca_eval/gpt4_1106_preview_model_outputs.json",
    "mt_bench": "mt_bench/question.jsonl",
    "aime": "rlvr/aime24_test.jsonl",
    "amc": "rlvr/amc23_test.jsonl",
}


def make_rows(path: Path, count: int, items: pl.DataFrame, seed: int = 0) -> None:
    rng = random.Random(seed)
    pool = paragraphs()
    planted = set(rng.sample(range(count), min(1000, count)))
    questions = items["question"].to_list()
    with path.open("wb") as f:
        for i in range(count):
            a, b = pool[rng.randrange(len(pool))], pool[rng.randrange(len(pool))]
            user = a[: rng.randint(80, 400)]
            if i in planted:
                user = questions[rng.randrange(len(questions))]
            f.write(
                orjson.dumps(
                    {
                        "id": f"r{i}",
                        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": b[: rng.randint(200, 700)]}],
                    }
                )
                + b"\n"
            )


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_datatrove(texts: list[str], items: pl.DataFrame, folder: Path, n: int) -> float:
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=n, find_query_ngrams=True)
    # the index, as NGramsDecontIndexer.compute_hashes builds it (that step itself also needs lighteval, for loading tasks)
    tokenizer, hash_func = load_word_tokenizer("en"), create_hash_func(config.hash_config)
    hashes = set()
    for question, answer in zip(items["question"].to_list(), items["answer"].to_list(), strict=True):
        for text in (question, answer):
            tokens = tokenizer.word_tokenize(simplify_text(text, config.norm_config))
            hashes.update(hash_func(" ".join(g)) for g in ngrams(tokens, n))
    np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(folder / "all.index.hashes")
    decont = NGramsDecontFilter(str(folder), config=config)
    decont.filter(Document(text="warm up", id="0"))  # loads the index
    started = time.perf_counter()
    flagged = sum(1 for i, t in enumerate(texts) if decont.filter(Document(text=t, id=str(i))) is not True)
    seconds = time.perf_counter() - started
    print(f"datatrove NGramsDecontFilter: {len(texts)} rows, {seconds:.1f} s, {len(texts) / seconds:,.0f} rows/s, flagged {flagged}")
    return len(texts) / seconds


def compare_executors(canonical: Path, folder: Path, tasks: int) -> None:
    """``thresher decontaminate`` as a user runs it, in process and on datatrove's executors: seconds, peak RSS of
    the command's own process, and whether clean/removed/matches are the same bytes."""
    import subprocess

    bench = [a for name, path in LOCAL.items() for a in ("-b", f"{name}={SHARED / path}")]
    runs = {"in process": [], "local": ["--executor", "local", "--tasks", str(tasks)], "ray": ["--executor", "ray", "--tasks", str(tasks)]}
    seconds, outputs = {}, {}
    for label, extra in runs.items():
        out = folder / f"out-{label.replace(' ', '-')}"
        command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "thresher.cli", "decontaminate", "-t", str(canonical), *bench]
        started = time.perf_counter()
        done = subprocess.run([*command, "-o", str(out), *extra], capture_output=True, text=True)
        seconds[label] = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        rss = int(done.stderr.strip().splitlines()[-1]) / 1024
        outputs[label] = {n: (out / n).read_bytes() for n in ("clean.parquet", "removed.parquet", "matches.parquet")}
        same = "—" if label == "in process" else ("same bytes" if outputs[label] == outputs["in process"] else "DIFFERENT")
        ratio = seconds[label] / seconds["in process"]
        print(f"{label:>10}: {seconds[label]:6.1f} s ({ratio:.2f}x in process), command peak RSS {rss:,.0f} MiB, {same}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--datatrove-rows", type=int, default=100_000)
    parser.add_argument("--executors", action="store_true", help="compare thresher decontaminate in process, local and ray")
    parser.add_argument("--tasks", type=int, default=2)
    args = parser.parse_args()
    benches = [load_benchmark(name, str(SHARED / path)) for name, path in LOCAL.items()]
    items = pl.concat([b.items for b in benches])
    print(f"benchmarks: {len(benches)}, {items.height} items")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = folder / "rows.jsonl"
        make_rows(raw, args.rows, items)
        canonical = folder / "rows.parquet"
        convert([str(raw)], str(canonical))
        raw.unlink()
        if args.executors:
            compare_executors(canonical, folder, args.tasks)
            return
        started = time.perf_counter()
        result = run_audit([str(canonical)], benches, AuditConfig(methods=("ngram",), batch_rows=16384))
        seconds = time.perf_counter() - started
        rate = result.rows / seconds
        flagged = result.flagged_rows().height
        print(
            f"thresher ngram audit: {result.rows} rows, {seconds:.1f} s, {rate:,.0f} rows/s, flagged {flagged} rows "
            f"(1000 planted), {result.matches.height} matches recorded, peak RSS {peak_mib():,.0f} MiB"
        )
        frame = pl.read_parquet(canonical, columns=["messages"]).head(args.datatrove_rows)
        texts = frame.select(pl.col("messages").list.eval(pl.element().struct.field("content")).list.join("\n"))["messages"].to_list()
        index_dir = folder / "dt_index"
        index_dir.mkdir()
        try:
            dt_rate = run_datatrove(texts, items, index_dir, 8)
            print(f"speed-up: {rate / dt_rate:.1f}x datatrove (rows/s, same rows and benchmark items)")
        except ImportError as e:
            print(f"datatrove skipped: {e}")


if __name__ == "__main__":
    main()
