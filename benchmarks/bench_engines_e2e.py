"""End to end, files in → files out, each tool in its own process (wall time and peak RSS its own), on real text
with planted duplicates and planted benchmark leaks (issue 23, part 6): sections ``dedup``, ``audit``, ``convert``.

Corpus: ``--rows`` SFT chats (JSONL) of real ~1 KB documents (../shared/data paragraphs, ``corpus.documents``),
10% of them planted copies of other rows: half exact (re-cased), half near (1–10% of words replaced). The
truth: a planted pair is a duplicate when the true Jaccard of its word 5-gram sets is ≥ the threshold.
A tool finds a pair when it removes either row of it (recall over those pairs); precision is the share of
removed rows that belong to a planted pair, and the next column the share that belong to one below the
threshold (an edited copy, but less alike than asked for).

- ``thresher dedup IN.jsonl --out D --method minhash --threshold 0.8`` (the CLI);
- datasketch: ``MinHash.bulk`` over Python word 5-gram shingles, ``MinHashLSH`` insert + query, connected
  components, the first row of each kept;
- rensa: its R-MinHash digest matrix and ``RMinHashLSH`` (README: threshold 0.8, 8 bands), same components;
- datatrove: its MinHash pipeline (signatures, buckets, clusters, filter) on ``LocalPipelineExecutor``.

Audit: the same corpus with 1,000 rows whose user turn is replaced by a GSM8K / MATH / HumanEval / MMLU test
question (the planted leaks). ``thresher audit --train IN.jsonl --bench NAME=PATH ... --methods ngram`` (the
CLI: start-up, index build, writing matches, summary and report included) against datatrove's
``NGramsDecontFilter`` over the same rows with an index of the same items (built with datatrove's own
normalizer, tokenizer and hash, as ``bench_decontam_speed.py`` does; index build included), on at most
``--datatrove-rows`` rows. allenai's decon is a Rust tool that is not on PyPI (the PyPI ``decon`` is an
unrelated 2019 stub), so it is not in the table.

Convert: ``thresher convert IN.jsonl OUT.parquet`` against ``datasets.load_dataset("json")`` + ``to_parquet`` and
``polars.read_ndjson`` + ``write_parquet`` (neither checks a row).

    python benchmarks/bench_engines_e2e.py --rows 120000
    python benchmarks/bench_engines_e2e.py --rows 1000000 --sections dedup,convert --tools "thresher dedup (CLI),rensa RMinHashLSH"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import SHARED as SHARED_DATA  # noqa: E402
from corpus import documents  # noqa: E402

THRESHOLD = 0.8
DISTINCT_UP_TO = 200_000


def distinct_documents(count: int, seed: int) -> list[str]:
    """``count`` real documents no two of which are near duplicates (true Jaccard of word 5-grams < 0.7): runs of
    real paragraphs repeat now and then, and such natural duplicates would blur the planted truth. Candidates
    come from LSH at 0.5 (many bands), each checked by its true Jaccard."""
    from thresher.curation.lsh import jaccard_of_pairs, lsh_pairs, ngram_sets, optimal_banding
    from thresher.curation.minhash import MinHashParams, signatures
    from thresher.curation.ngrams import ngram_hashes
    from thresher.curation.normalize import word_tokens

    docs = documents(int(count * 1.5) + 100, seed=seed)
    grams = ngram_hashes(word_tokens(docs).to_arrow(), 5)
    pairs = lsh_pairs(signatures(grams, len(docs), MinHashParams(128, seed=7)), optimal_banding(0.5, 128))
    alike = pairs[jaccard_of_pairs(pairs, ngram_sets(grams)) >= 0.7] if len(pairs) else pairs
    dropped = set(alike[:, 1].tolist()) if len(alike) else set()
    kept = [d for i, d in enumerate(docs) if i not in dropped]
    if len(kept) < count:
        raise SystemExit(f"only {len(kept)} distinct documents of {count} wanted")
    return kept[:count]


def build(path: Path, rows: int, seed: int = 0) -> list[tuple[int, int]]:
    """The JSONL corpus; returns the planted (original, copy) row pairs."""
    rng = random.Random(seed)
    unique = int(rows * 0.9)
    # Above DISTINCT_UP_TO rows the filter's own LSH at 0.5 needs more than this machine's 24 GB (the corpus reuses a
    # pool of ~10k real paragraphs, so candidates abound): natural near duplicates then stay in, which lowers every
    # tool's precision alike; recall on the planted pairs is measured as before.
    docs = distinct_documents(unique, seed) if rows <= DISTINCT_UP_TO else documents(unique, seed=seed)
    texts = list(docs)
    planted = []
    originals = rng.sample(range(unique), rows - unique)
    for k, original in enumerate(originals):
        if k % 2 == 0:
            text = docs[original].upper()
        else:
            words = docs[original].split()
            rate = 0.01 + 0.09 * rng.random()
            text = " ".join(rng.choice(words) if rng.random() < rate else w for w in words)
        planted.append((original, len(texts)))
        texts.append(text)
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            chat = [{"role": "user", "content": text[:200]}, {"role": "assistant", "content": text[200:] or "."}]
            f.write(json.dumps({"id": f"row-{i}", "messages": chat}) + "\n")
    return planted


RUNNERS = {
    "datasketch MinHashLSH": """
from datasketch import MinHash, MinHashLSH
hashes = MinHash.bulk([[s.encode() for s in doc] for doc in shingles(texts())], num_perm=128)
lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
for i, m in enumerate(hashes):
    lsh.insert(i, m)
pairs = [(i, j) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i]
write_removed(removed_of(pairs, len(hashes)))
""",
    "thresher dedup (CLI)": "thresher",
    "rensa RMinHashLSH": """
import rensa
docs = texts()
matrix = rensa.RMinHash.digest_matrix_from_token_sets(shingles(docs), 128, 1)
lsh = rensa.RMinHashLSH(THRESHOLD, 128, 8)
lsh.insert_matrix(matrix)
minhashes = rensa.RMinHash.from_token_sets(shingles(docs), 128, 1)
pairs = [(i, j) for i, found in enumerate(lsh.query_all(minhashes)) for j in found if j != i]
write_removed(removed_of(pairs, len(docs)))
""",
    "datatrove MinHash pipeline": """
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
    MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
config = MinhashConfig(n_grams=5, num_buckets=9, hashes_per_bucket=13)
work = WORK + "/datatrove"
def adapter(self, data, path, id_in_file):
    return {"text": "\\n".join(m["content"] for m in data["messages"]), "id": data["id"]}
reader = lambda: JsonlReader(INPUT_DIR, adapter=adapter, glob_pattern="*.jsonl")
import os
for stage, (steps, tasks) in enumerate((([reader(), MinhashDedupSignature(work + "/sigs", config=config)], 1),
              ([MinhashDedupBuckets(work + "/sigs", work + "/buckets", config=config)], config.num_buckets),
              ([MinhashDedupCluster(work + "/buckets", work + "/remove_ids", config=config)], 1),
              ([reader(), MinhashDedupFilter(work + "/remove_ids", exclusion_writer=JsonlWriter(work + "/removed")),
               JsonlWriter(work + "/kept")], 1))):
    LocalPipelineExecutor(steps, tasks=tasks, workers=os.cpu_count(), logging_dir=f"{work}/logs{stage}", skip_completed=False).run()
import glob, gzip
removed = [int(json.loads(line)["id"].split("-")[1]) for f in glob.glob(work + "/removed/*") for line in gzip.open(f, "rt")]
write_removed(removed)
""",
}

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if done.returncode:
    sys.exit(done.stderr[-3000:])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

PRELUDE = """
import json, re, sys
sys.path.insert(0, HERE)
WORD = re.compile(r"[^\\W_]+")
def texts():
    with open(INPUT) as f:
        return ["\\n".join(m["content"] for m in json.loads(line)["messages"]) for line in f]
def shingles(docs, n=5):
    out = []
    for text in docs:
        words = WORD.findall(text.lower())
        out.append([" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))])
    return out
def removed_of(pairs, n):
    parent = list(range(n))
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [i for i in range(n) if find(i) != i]
def write_removed(rows):
    with open(REMOVED, "w") as f:
        json.dump(sorted(set(rows)), f)
"""


def run(name: str, input_path: Path, work: Path) -> tuple[float, float, list[int]]:
    """Wall seconds, peak RSS (MiB) and removed rows of one tool, run in a fresh process."""
    removed = work / f"{len(name)}-{abs(hash(name))}.json"
    if RUNNERS[name] == "thresher":
        out = work / "thresher-out"
        command = [sys.executable, "-m", "thresher.cli", "dedup", str(input_path), "--out", str(out), "--method", "minhash",
                   "--threshold", str(THRESHOLD), "--overwrite"]  # fmt: skip
    else:
        code = (f"HERE={str(HERE)!r}\nINPUT={str(input_path)!r}\nINPUT_DIR={str(input_path.parent)!r}\nWORK={str(work)!r}\n"
                f"REMOVED={str(removed)!r}\nTHRESHOLD={THRESHOLD}\n" + PRELUDE + RUNNERS[name])  # fmt: skip
        command = [sys.executable, "-c", code]
    # a small launcher runs the tool: its children's peak RSS is the tool's own (a child forked from this
    # process would count this process's pages too)
    seconds, rss = measured(command)
    if RUNNERS[name] == "thresher":
        import polars as pl

        rows = pl.read_parquet(work / "thresher-out" / "removed.parquet")["id"].str.split("-").list.get(1).cast(pl.Int64).to_list()
    else:
        rows = json.loads(removed.read_text())
    return seconds, rss, rows


BENCHES = {"gsm8k": "gsm8k/test.jsonl", "math": "math/math_test.jsonl", "humaneval": "humaneval/HumanEval.jsonl.gz", "mmlu": "mmlu/data"}
LEAKS = 1000


def measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command, run by a small launcher (its children are the command only)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{done.stderr[-3000:]}")
    seconds, peak_kib = (float(x) for x in done.stdout.split()[-2:])
    return seconds, peak_kib / 1024


def plant_leaks(source: Path, target: Path, seed: int = 1) -> set[str]:
    """``source`` with the user turn of ``LEAKS`` random rows replaced by a benchmark question; their ids."""
    from corpus import SHARED

    from thresher.decontam.benchmarks import load_benchmark

    questions = []
    for name, path in BENCHES.items():
        questions += load_benchmark(name, str(SHARED / path)).items["question"].to_list()
    rng = random.Random(seed)
    lines = source.read_text().splitlines()
    leaked = set(rng.sample(range(len(lines)), min(LEAKS, len(lines))))
    with open(target, "w", encoding="utf-8") as f:
        for i, line in enumerate(lines):
            if i in leaked:
                row = json.loads(line)
                row["messages"][0]["content"] = rng.choice(questions)
                line = json.dumps(row)
            f.write(line + "\n")
    return {f"row-{i}" for i in leaked}


DATATROVE_AUDIT = """
import json, sys, time
sys.path.insert(0, HERE)
import polars as pl
from pathlib import Path
from bench_decontam_speed import run_datatrove
from corpus import SHARED
from thresher.decontam.benchmarks import load_benchmark
items = pl.concat([load_benchmark(name, str(SHARED / path)).items for name, path in BENCHES.items()])
rows = []
with open(INPUT) as f:
    for line in f:
        rows.append(json.loads(line))
        if len(rows) == LIMIT:
            break
texts = ["\\n".join(m["content"] for m in r["messages"]) for r in rows]
folder = Path(WORK) / "dt_index"
folder.mkdir(exist_ok=True)
from datatrove.data import Document
from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
run_datatrove(texts[:10], items, folder, 8)  # builds the index file
decont = NGramsDecontFilter(str(folder), config=NGramsDecontConfig(n_grams=8, find_query_ngrams=True))
flagged = [r["id"] for r, t in zip(rows, texts) if decont.filter(Document(text=t, id=r["id"])) is not True]
json.dump(flagged, open(REMOVED, "w"))
"""


def audit_section(corpus: Path, work: Path, rows: int, datatrove_rows: int) -> None:
    leaky = work / "in-audit" / "chats.jsonl"
    leaky.parent.mkdir(exist_ok=True)
    leaked = plant_leaks(corpus, leaky)
    print(f"\naudit: {rows:,} chats, {len(leaked):,} planted leaks from {', '.join(BENCHES)}; n-gram 8, threshold 0.5")
    print("| tool | rows | seconds | rows/s | peak RSS MiB | flagged | recall on planted | vs datatrove |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out = work / "audit-out"
    benches = [arg for name, path in BENCHES.items() for arg in ("--bench", f"{name}={SHARED_DATA / path}")]
    seconds, rss = measured(
        [sys.executable, "-m", "thresher.cli", "audit", "--train", str(leaky), *benches, "--methods", "ngram", "--out", str(out)]
    )
    import polars as pl

    found = set(pl.read_parquet(out / "matches.parquet").filter("flagged")["train_id"].to_list())
    ours = rows / seconds
    results = [("thresher audit --methods ngram (CLI)", rows, seconds, rss, found, leaked)]
    limit = min(rows, datatrove_rows)
    removed = work / "datatrove-audit.json"
    code = (f"HERE={str(HERE)!r}\nINPUT={str(leaky)!r}\nWORK={str(work)!r}\nREMOVED={str(removed)!r}\nLIMIT={limit}\n"
            f"BENCHES={BENCHES!r}\n" + DATATROVE_AUDIT)  # fmt: skip
    try:
        seconds_dt, rss_dt = measured([sys.executable, "-c", code])
        in_limit = {f"row-{i}" for i in range(limit)}
        results.append(("datatrove NGramsDecontFilter", limit, seconds_dt, rss_dt, set(json.loads(removed.read_text())), leaked & in_limit))
    except SystemExit as e:
        print(f"datatrove skipped: {str(e)[-300:]}")
    for name, n, secs, peak, flagged, truth in results:
        recall = len(flagged & truth) / len(truth) if truth else 1.0
        speed = f"{ours / (n / secs):.1f}x" if name.startswith("datatrove") else "-"
        print(f"| {name} | {n:,} | {secs:.1f} | {n / secs:,.0f} | {peak:,.0f} | {len(flagged):,} | {recall:.3f} | {speed} |")


CONVERTERS = {
    "thresher convert (CLI)": None,
    "datasets load_dataset + to_parquet": """
import datasets
datasets.disable_progress_bars()
ds = datasets.load_dataset("json", data_files=INPUT, split="train", cache_dir=WORK + "/hf_cache")
ds.to_parquet(OUT)
""",
    "polars read_ndjson + write_parquet": """
import polars as pl
pl.read_ndjson(INPUT).write_parquet(OUT)
""",
}


def convert_section(corpus: Path, work: Path, rows: int) -> None:
    print(f"\nconvert: {rows:,} chats, {corpus.stat().st_size / 2**20:.0f} MiB JSONL → Parquet")
    print("| tool | seconds | rows/s | peak RSS MiB | checks rows | thresher speed × |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    timings = {}
    for name, code in CONVERTERS.items():
        out = work / f"convert-{len(timings)}.parquet"
        if code is None:
            command = [sys.executable, "-m", "thresher.cli", "convert", str(corpus), "--out", str(out)]
        else:
            command = [sys.executable, "-c", f"INPUT={str(corpus)!r}\nOUT={str(out)!r}\nWORK={str(work)!r}\n" + code]
        seconds, rss = measured(command)
        timings[name] = seconds
        first = timings["thresher convert (CLI)"]
        checks = "yes" if code is None else "no"
        print(f"| {name} | {seconds:.2f} | {rows / seconds:,.0f} | {rss:,.0f} | {checks} | {seconds / first:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--sections", default="dedup,audit,convert", help="comma-separated subset of: dedup, audit, convert")
    parser.add_argument("--tools", default=",".join(RUNNERS), help="dedup tools, comma-separated subset of: " + ", ".join(RUNNERS))
    parser.add_argument("--datatrove-rows", type=int, default=120_000, help="rows datatrove's n-gram filter audits (it is slow)")
    args = parser.parse_args()
    sections = {s.strip() for s in args.sections.split(",")}
    from thresher.curation.lsh import jaccard_of_pairs, ngram_sets
    from thresher.curation.ngrams import ngram_hashes
    from thresher.curation.normalize import word_tokens

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        input_path = work / "in" / "chats.jsonl"
        planted = build(input_path, args.rows)
        texts = ["\n".join(m["content"] for m in json.loads(line)["messages"]) for line in input_path.read_text().splitlines()]
        pairs = np.array(planted, dtype=np.int64)
        involved = np.unique(pairs)  # only the rows of planted pairs: the n-gram sets of a 1M corpus need > 24 GB
        local = np.searchsorted(involved, pairs)
        true_j = jaccard_of_pairs(local, ngram_sets(ngram_hashes(word_tokens([texts[i] for i in involved]).to_arrow(), 5)))
        positive = pairs[true_j >= THRESHOLD]
        in_pairs = set(positive.ravel().tolist())
        in_planted = set(pairs.ravel().tolist()) - (set(pairs[:, 0].tolist()) & set(pairs[:, 1].tolist()))
        size = input_path.stat().st_size / 2**20
        if "convert" in sections:
            convert_section(input_path, work, args.rows)
        if "audit" in sections:
            audit_section(input_path, work, args.rows, args.datatrove_rows)
        if "dedup" not in sections:
            return
        print(f"\ndedup: {args.rows:,} chats ({size:.0f} MiB JSONL), {len(planted):,} planted copies, {len(positive):,} of them at "
              f"true Jaccard ≥ {THRESHOLD}; {os.cpu_count()} cores")  # fmt: skip
        print("| tool | seconds | rows/s | peak RSS MiB | removed | recall (J ≥ 0.8) | precision | of which J < 0.8 | vs datasketch |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        results = {}
        for name in [t.strip() for t in args.tools.split(",")]:
            seconds, rss, removed = run(name, input_path, work)
            gone = set(removed)
            recall = float(np.mean([a in gone or b in gone for a, b in positive.tolist()])) if len(positive) else 1.0
            precision = len(gone & in_planted) / len(gone) if gone else 1.0
            weak = len(gone & (in_planted - in_pairs)) / len(gone) if gone else 0.0
            results[name] = seconds
            speed = f"{results['datasketch MinHashLSH'] / seconds:.1f}x" if "datasketch MinHashLSH" in results else "-"
            print(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {rss:,.0f} | {len(gone):,} | {recall:.3f} | {precision:.3f} "
                  f"| {weak:.3f} | {speed} |")  # fmt: skip


if __name__ == "__main__":
    main()
