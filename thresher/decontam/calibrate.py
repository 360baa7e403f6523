"""``--calibrate N``: recall measured on the user's own corpus.

During the audit's one pass a uniform sample of rows is kept (bottom-k by a seeded hash of the row
ordinal: the same rows whatever the batch size). Afterwards ``N`` controlled variants of benchmark
items (``variants``: verbatim, embedded in a longer turn, noisy, partial, reformatted, numbers
changed, and with the embedding method a template rephrasing) are planted into copies of those rows,
the first turn replaced by (or, for ``embedded``, followed by) the item. Fresh copies of the audit's
own detectors (same indexes, same thresholds, no state) scan the planted rows and, apart, the sampled
rows untouched. The result: recall per variant and method (and for any method, which is what
``decontaminate`` removes), and the share of untouched sampled rows flagged — an upper bound on the
false-positive rate, as some of them may be real leaks. Planted rows live only in memory: they never
reach matches.parquet, the split outputs or the counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from thresher.curation.ngrams import fmix64
from thresher.decontam.matching import Detector, TrainBatch
from thresher.decontam.variants import VARIANTS, item_text

_U64 = np.uint64


@dataclass
class RowSample:
    """A uniform sample of ``size`` rows of a stream: the rows whose seeded hash is smallest."""

    size: int
    seed: int = 0
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=_U64))
    turns: list[list[str]] = field(default_factory=list)

    def add(self, batch: TrainBatch) -> None:
        if batch.turns is not None:
            self.add_turns(batch.offset, batch.turns)

    def add_turns(self, offset: int, turns: pl.Series) -> None:
        """Rows ``offset``, ``offset + 1``, … with these turns (a list of strings per row)."""
        if self.size <= 0:
            return
        ordinals = np.arange(offset, offset + len(turns), dtype=np.int64).astype(_U64)
        keys = fmix64(ordinals ^ fmix64(np.array([self.seed], dtype=_U64)))
        candidates = np.flatnonzero(keys < self.keys.max()) if len(self.keys) >= self.size else np.arange(len(turns))
        if not len(candidates):
            return
        new_turns = turns.gather(candidates).to_list()
        merged_keys = np.concatenate([self.keys, keys[candidates]])
        merged_turns = self.turns + [[t for t in (turns or []) if t] for turns in new_turns]
        keep = np.argsort(merged_keys, kind="stable")[: self.size]
        self.keys = merged_keys[keep]
        self.turns = [merged_turns[i] for i in keep]


def plant(
    items: pl.DataFrame, hosts: Sequence[list[str]], count: int, variants: Sequence[str], seed: int = 0
) -> tuple[list[list[str]], pl.DataFrame]:
    """``count`` planted rows (turn lists) and their labels (``variant``, ``item``): variants in turn,
    benchmarks in turn, a random item of that benchmark the variant applies to, a random host row."""
    rng = random.Random(seed)
    benches = items["bench"].unique(maintain_order=True).to_list()
    by_bench = {b: np.flatnonzero((items["bench"] == b).to_numpy()) for b in benches}
    questions = items["question"].to_list()
    options = items["options"].to_list() if "options" in items.columns else [""] * items.height
    rows: list[list[str]] = []
    labels: dict[str, list[Any]] = {"variant": [], "item": []}
    for i in range(count):
        variant = variants[i % len(variants)]
        pool = by_bench[benches[(i // len(variants)) % len(benches)]]
        for attempt in range(250):  # an item the variant applies to (a partial copy needs >= 16 words), from any benchmark at last
            item = int(pool[rng.randrange(len(pool))]) if attempt < 50 else rng.randrange(items.height)
            text = VARIANTS[variant](item_text(questions[item], options[item] or ""), rng)
            if text:
                break
        else:
            continue
        host = list(hosts[rng.randrange(len(hosts))]) if hosts else []
        first = host[0] if host else ""
        turns = [f"{first}\n\n{text}" if variant == "embedded" and first else text, *host[1:]]
        rows.append(turns)
        labels["variant"].append(variant)
        labels["item"].append(item)
    return rows, pl.DataFrame(labels, schema={"variant": pl.String, "item": pl.Int64})


DECOYS = 2000  # decoy items at most (the estimate is scaled to the whole item set)
Rescorer = Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]  # (matches, row texts) -> matches of its own method


def _flagged(
    detectors: list[Detector], turns: list[list[str]], thresholds: dict[str, float], rescorers: dict[str, Rescorer]
) -> pl.DataFrame:
    """(row, item, method) flagged by fresh copies of ``detectors`` over ``turns``, and by the methods that
    re-score their matches (``rephrase``)."""
    if not turns:
        return pl.DataFrame(schema={"row": pl.Int64, "item": pl.Int64, "method": pl.String})
    series = pl.Series("turns", turns, dtype=pl.List(pl.String))
    batch = TrainBatch.of(series.list.join("\n"), 0, turns=series)
    texts = pl.DataFrame({"row": np.arange(len(turns), dtype=np.int64), "train_text": batch.texts})
    every = []
    for detector in detectors:
        fresh = detector.fresh()
        fresh.scan(batch)
        every.append(fresh.finish())
    matches = pl.concat(every)
    matches = pl.concat([matches, *[rescore(matches, texts) for rescore in rescorers.values()]])
    flagged = matches.join(pl.DataFrame({"method": list(thresholds), "threshold": list(thresholds.values())}), on="method")
    # as the default policy: a match whose overlap is shared text alone (distinct score under the threshold) does not flag
    unshared = pl.col("distinct_score").is_null() | (pl.col("distinct_score") >= pl.col("threshold"))
    return flagged.filter((pl.col("score") >= pl.col("threshold")) & unshared).select("row", "item", "method")


def decoys(items: pl.DataFrame, count: int, exclude: set[int], seed: int = 0) -> pl.DataFrame:
    """``count`` decoy items, benchmarks in turn: the first half (by words) of one item's question joined to the
    second half of another's, with the second's answer and options, neither of them an item the corpus holds whole
    (``exclude``). They have the benchmark's format, templates and vocabulary, in text no corpus holds: whatever
    matches them is a false positive."""
    rng = random.Random(seed + 1)
    benches = items["bench"].unique(maintain_order=True).to_list()
    free = np.setdiff1d(np.arange(items.height), np.fromiter(exclude, np.int64, len(exclude)))
    by_bench = {b: free[(items["bench"].gather(free) == b).to_numpy()] for b in benches} if len(free) else {}
    pools = [p for p in by_bench.values() if len(p) >= 2]
    questions = items["question"].to_list()
    firsts, seconds, texts = [], [], []
    for i in range(count if pools else 0):
        pool = pools[i % len(pools)]
        a, b = (int(x) for x in rng.sample(list(pool), 2))
        head, tail = questions[a].split(" "), questions[b].split(" ")
        firsts.append(a)
        seconds.append(b)
        texts.append(" ".join(head[: max(1, len(head) // 2)] + tail[len(tail) // 2 :]))
    made = (
        items.drop("item")
        .gather(seconds)
        .with_columns(pl.Series("question", texts, dtype=pl.String), pl.format("decoy-{}", pl.int_range(pl.len())).alias("bench_id"))
    )
    return made.with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))


def calibrate(
    detectors: list[Detector],
    items: pl.DataFrame,
    sample: RowSample,
    count: int,
    thresholds: dict[str, float],
    seed: int = 0,
    rescorers: dict[str, Rescorer] | None = None,
    build: Callable[[pl.DataFrame], list[Detector]] | None = None,
    exclude: set[int] | None = None,
) -> dict[str, Any]:
    """Plant ``count`` variants into copies of the sampled rows and measure what each method finds. With ``build``
    (detectors for other items), also scan the sampled rows against ``decoys`` of the items not in ``exclude``
    (the items copied whole): a false-positive estimate to read the corpus's own flag rate against."""
    rescorers = rescorers or {}
    methods = [d.name for d in detectors] + list(rescorers)
    variants = [v for v in VARIANTS if v != "rephrased" or "embedding" in methods]
    rows, labels = plant(items, sample.turns, count, variants, seed)
    flagged = _flagged(detectors, rows, thresholds, rescorers)
    right = labels.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64)).join(flagged, on=["row", "item"])
    recall: dict[str, dict[str, Any]] = {}
    for variant in variants:
        planted = max(labels.filter(pl.col("variant") == variant).height, 1)
        hit = right.filter(pl.col("variant") == variant)
        recall[variant] = {
            "rows": labels.filter(pl.col("variant") == variant).height,
            **{m: round(hit.filter(pl.col("method") == m)["row"].n_unique() / planted, 4) for m in methods},
            "any": round(hit["row"].n_unique() / planted, 4),
        }
    untouched = _flagged(detectors, sample.turns, thresholds, rescorers)
    size = len(sample.turns)
    estimate: dict[str, Any] = {}
    if build is not None and size:
        fake = decoys(items, min(items.height, DECOYS), exclude or set(), seed)
        found = _flagged(build(fake), sample.turns, {m: t for m, t in thresholds.items() if m not in rescorers}, {})
        matched = found["row"].n_unique() / size
        # a row meets as many templates as there are items: scaled from the decoys to the whole benchmark set
        rate = min(1.0, matched * items.height / max(fake.height, 1))
        corpus = untouched["row"].n_unique() / size
        estimate = {
            "false_positive_estimate": {
                "decoys": fake.height,
                "items": items.height,
                "rows": size,
                "rows_matching_decoys": round(matched, 4),
                "flagged": round(rate, 4),
                "corpus_flag_rate_within_twice_the_estimate": bool(corpus <= 2 * rate and rate > 0),
            }
        }
    return {
        **estimate,
        "planted": len(rows),
        "seed": seed,
        "variants": variants,
        "recall": recall,
        "unplanted_rows": size,
        "unplanted_flagged": {
            **{m: round(untouched.filter(pl.col("method") == m)["row"].n_unique() / max(size, 1), 4) for m in methods},
            "any": round(untouched["row"].n_unique() / max(size, 1), 4),
        },
    }
