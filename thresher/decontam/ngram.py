"""N-gram coverage (Tülu 3 style): the share of a benchmark item's words covered by n-grams it shares with one training row.

The benchmark side is indexed once: the word n-grams of every item's question and answer, with
their positions. A question shorter than ``n`` words is indexed whole, and found as a run of
exactly that many words inside training rows, so short items are not missed. N-grams that occur
in more than ``max_bench_df`` items (boilerplate such as "which of the following statements is
correct") are not indexed, and those found in more than ``max_train_df`` training rows are
dropped at the end. Training rows are hashed batch by batch and looked up in the sorted index
with one ``searchsorted``; coverage counts distinct covered item positions per (row, item, part).
A multiple-choice item is also indexed as its question with the options (a third part, "prompt"),
and its bare question only when it has at least ``n`` words ("Sound travels in" says nothing
without its options). Scores: ``question_score`` (question, or question with options) and
``answer_score`` are the covered shares, ``score`` the larger of the two after weighting. An
answer shorter than ``min_answer_tokens`` words (a final number, a textbook three-line function)
is not evidence on its own and is not indexed. Candidate windows are screened with a bitmap of
the index keys' low bits before the binary search.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import polars as pl

from thresher.curation.ngrams import PREFIX_BITS, ngram_hashes, prefix_key, token_hashes, window_hashes
from thresher.decontam.matching import MATCH_SCHEMA, PARTS, SPAN, TrainBatch, empty_matches, item_words, word_rarity
from thresher.errors import InputError

_U64 = np.uint64
_BITMAP_SIZE = 1 << 24


@dataclass(frozen=True)
class NgramConfig:
    n: int = 8
    threshold: float = 0.5
    question_weight: float = 1.0
    answer_weight: float = 0.6  # an answer alone must cover >= 0.5 / 0.6 = 83% of its words to reach 0.5
    min_tokens: int = 3  # questions with fewer words are too short to tell apart; they are reported, not indexed
    min_answer_tokens: int = 20  # a shorter answer (a number, a textbook gcd) is no evidence on its own
    max_bench_df: int = 10  # an n-gram in more benchmark items than this is boilerplate
    max_train_df: int = 100  # an n-gram in more training rows than this is boilerplate
    floor: float = 0.2  # matches scoring below this are not recorded
    min_words: int = 10  # a part counts only with this many shared words (or all of a shorter one): one 8-gram is a phrase, not a copy
    idf: bool = True  # weigh each word by its rarity among the benchmark items ("depth" counts, "the" barely)
    # shared text (for the shared_boilerplate class): an n-gram in at least ``shared_items`` benchmark items and two
    # training rows, or in at least max(``shared_rows``, ``shared_copies`` x the part's copy count) training rows; the
    # copy count of an item's question (or answer) is the fewest training rows any of its n-grams is in (a question
    # copied into 6 rows is not shared text)
    shared_items: int = 3
    shared_rows: int = 5
    shared_copies: float = 2.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InputError(f"n must be at least 1, got {self.n}")
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"ngram threshold must be in (0, 1], got {self.threshold}")
        if min(self.question_weight, self.answer_weight) < 0 or max(self.question_weight, self.answer_weight) == 0:
            raise InputError("weights must be >= 0 and not both 0")

    @property
    def weights(self) -> tuple[float, float, float]:
        """Per part: question, answer, prompt (question with options)."""
        return self.question_weight, self.answer_weight, self.question_weight


@dataclass(frozen=True)
class PositionWeights:
    """The n-grams that count (``postings``), each word position's weight, and their sums per (item, part)."""

    postings: pl.DataFrame
    weight: np.ndarray
    part_weight: np.ndarray  # (items, parts)
    informative: np.ndarray  # (items, parts): positions some counted n-gram covers


class NgramIndex:
    """Sorted distinct n-gram hashes of the benchmark items, with their postings (item, part, position, length)."""

    def __init__(self, items: pl.DataFrame, config: NgramConfig) -> None:
        self.config = config
        n = config.n
        frames = []
        self.part_tokens = np.zeros((items.height, len(PARTS)), dtype=np.int64)
        self.words: list[pl.Series] = []
        options = items["options"] if "options" in items.columns else pl.Series([""] * items.height)
        has_options = (options.str.len_chars() > 0).to_numpy()
        prompts = items.select(pl.concat_str([pl.col("question"), options], separator="\n"))["question"]
        for part, texts in enumerate((items["question"], items["answer"], prompts)):
            words = item_words(texts)
            self.words.append(pl.Series("words", words))
            counts = np.diff(np.asarray(words.offsets, dtype=np.int64))
            self.part_tokens[:, part] = counts
            if part == 0:  # a short multiple-choice stem ("Sound travels in") says little without its options
                shortest = np.where(has_options, n, config.min_tokens)
            else:
                shortest = np.full(len(counts), max(n, config.min_answer_tokens) if part == 1 else config.min_tokens)
            usable = (counts >= shortest) & (config.weights[part] > 0) & (has_options if part == 2 else True)
            grams = ngram_hashes(words, n, short_rows="whole")
            keep = usable[grams.row]
            frames.append(
                pl.DataFrame(
                    {
                        "hash": grams.hash[keep],
                        "item": grams.row[keep],
                        "part": np.full(int(keep.sum()), part, np.int8),
                        "position": grams.position[keep],
                        "length": grams.length[keep].astype(np.int8),
                    }
                )
            )
        postings = pl.concat(frames)
        item_df = postings.group_by("hash").agg(pl.col("item").n_unique().alias("df"))
        self.boilerplate = int((item_df["df"] > config.max_bench_df).sum())
        postings = postings.join(item_df.filter(pl.col("df") <= config.max_bench_df), on="hash")
        self._positions(items.height)
        self.keys, gram = np.unique(postings["hash"].to_numpy(), return_inverse=True)
        self.bench_df = np.zeros(len(self.keys), np.int64)
        self.bench_df[gram] = postings["df"].to_numpy()  # benchmark items each indexed n-gram is in
        postings = postings.drop("df")
        # two bitmaps over independent bits of the keys: most training windows are rejected by two
        # gathers, and only the few that pass both are binary-searched, in sorted order (a random-order
        # searchsorted over millions of keys is cache-bound)
        self.low = np.zeros(_BITMAP_SIZE, dtype=bool)
        self.low[self.keys & _U64(_BITMAP_SIZE - 1)] = True
        self.high = np.zeros(_BITMAP_SIZE, dtype=bool)
        self.high[(self.keys >> _U64(40)) & _U64(_BITMAP_SIZE - 1)] = True
        self.postings = postings.with_columns(pl.Series("gram", gram, dtype=pl.Int64)).drop("hash")
        self.weights = self.weights_over(self.postings)
        self.weight, self.part_weight, self.part_informative = self.weights.weight, self.weights.part_weight, self.weights.informative
        short = self.postings.filter(pl.col("length") < n)
        self.lengths = sorted({n, *(int(x) for x in short["length"].unique().to_list())})
        # the first two words of every short item: training windows shorter than n are hashed only where they start so
        self.prefix_screen = np.zeros(1 << PREFIX_BITS, dtype=bool)
        for (index,), frame in short.group_by("part"):
            hashes, offsets = token_hashes(self.words[int(index)].to_arrow(), 0)
            first = offsets[frame["item"].to_numpy()]
            self.prefix_screen[prefix_key(hashes[first], hashes[first + 1])] = True
        self.unindexed_questions = int(
            ((self.part_tokens[:, 0] < config.min_tokens) & ~has_options).sum()
            + (self.part_tokens[:, 2] < config.min_tokens)[has_options].sum()
        )

    def _positions(self, count: int) -> None:
        """Every word position of every (item, part) in one flat array: its owner and its rarity."""
        lengths = [w.list.len().fill_null(0).to_numpy().astype(np.int64) for w in self.words]
        owner_item = np.concatenate([np.repeat(np.arange(count), n) for n in lengths])
        owner_part = np.concatenate([np.full(int(n.sum()), p) for p, n in enumerate(lengths)])
        self._size, self._count = len(owner_item), count
        part_base = np.cumsum([0] + [int(n.sum()) for n in lengths])[:-1]
        self.start = np.stack([part_base[p] + np.cumsum(n) - n for p, n in enumerate(lengths)], axis=1)  # (item, part) -> flat
        self._owner = owner_part * count + owner_item
        if self.config.idf:
            owners = pl.DataFrame({"item": owner_item, "word": pl.concat([pl.Series(w.to_arrow().flatten()) for w in self.words])})
            self._rarity = owners.join(word_rarity(owners, count), on="word", how="left", maintain_order="left")["rarity"].to_numpy()
        else:
            self._rarity = np.ones(self._size)

    def weights_over(self, postings: pl.DataFrame) -> PositionWeights:
        """Position weights counting only the n-grams in ``postings``: 0 where none of them covers a word (a shared
        template is no evidence, so it leaves the denominator too), else the word's rarity
        ``log(1 + items / items-with-the-word)`` (or 1 without ``idf``); summed per item and part."""
        size, count = self._size, self._count
        # how many of the n-grams cover each flat position: +1 where a gram starts, -1 past its end
        first = self.start[postings["item"].to_numpy(), postings["part"].to_numpy()] + postings["position"].to_numpy()
        last = first + postings["length"].to_numpy().astype(np.int64)
        informative = np.cumsum(np.bincount(first, minlength=size + 1) - np.bincount(last, minlength=size + 1))[:size] > 0
        weight = np.where(informative, self._rarity, 0.0)
        shape = (len(PARTS), count)
        part_weight = np.bincount(self._owner, weights=weight, minlength=len(PARTS) * count).reshape(shape).T
        part_informative = np.bincount(self._owner, weights=informative, minlength=len(PARTS) * count).reshape(shape).T
        return PositionWeights(postings, weight, part_weight, part_informative)

    def lookup(self, batch: TrainBatch) -> pl.DataFrame:
        """Every window of a training batch found in the index: local row, position, length, gram id."""
        frames = []
        windows = window_hashes(batch.words, self.lengths, prefix_screen=self.prefix_screen, screen_below=self.config.n)
        for length, grams in windows.items():
            if not len(grams) or not len(self.keys):
                continue
            maybe = np.flatnonzero(self.low[grams.hash & _U64(_BITMAP_SIZE - 1)])
            maybe = maybe[self.high[(grams.hash[maybe] >> _U64(40)) & _U64(_BITMAP_SIZE - 1)]]
            maybe = maybe[np.argsort(grams.hash[maybe])]
            at = np.minimum(np.searchsorted(self.keys, grams.hash[maybe]), len(self.keys) - 1)
            hit = self.keys[at] == grams.hash[maybe]
            found = maybe[hit]
            frames.append(
                pl.DataFrame(
                    {
                        "row": grams.row[found],
                        "train_position": grams.position[found],
                        "train_length": np.full(len(found), length, np.int8),
                        "gram": at[hit].astype(np.int64),
                    }
                )
            )
        if not frames:
            return pl.DataFrame(schema={"row": pl.Int64, "train_position": pl.Int64, "train_length": pl.Int8, "gram": pl.Int64})
        return pl.concat(frames)


def _coverage(hits: pl.DataFrame, index: NgramIndex, weights: PositionWeights | None = None) -> pl.DataFrame:
    """Per (row, item): covered share of the question and of the answer, and the weighted score; with ``weights``,
    counting only their n-grams and positions."""
    weights = weights or index.weights
    joined = hits.join(weights.postings, on="gram")
    positions = (
        joined.select("row", "item", "part", pl.int_ranges("position", pl.col("position") + pl.col("length")).alias("pos"))
        .explode("pos")
        .unique()
        .sort("row", "item", "part", "pos")
    )
    keys = positions.select("row", "item", "part")
    key_array = keys.to_numpy()
    flat = index.start[positions["item"].to_numpy(), positions["part"].to_numpy()] + positions["pos"].to_numpy()
    weight = weights.weight[flat]
    # sums in a fixed order (NumPy over sorted positions): the same scores, to the last bit, on every run
    first = np.flatnonzero(np.r_[True, np.any(key_array[1:] != key_array[:-1], axis=1)]) if len(keys) else np.zeros(0, np.int64)
    covered = keys[first].with_columns(
        pl.Series("covered", np.add.reduceat(weight, first) if len(first) else np.zeros(0)),
        pl.Series("words", np.add.reduceat((weight > 0).astype(np.int64), first) if len(first) else np.zeros(0, np.int64)),
    )
    totals = pl.DataFrame(
        {
            "item": np.repeat(np.arange(len(weights.part_weight)), len(PARTS)),
            "part": np.tile(np.arange(len(PARTS), dtype=np.int8), len(weights.part_weight)),
            "total": weights.part_weight.ravel(),
            "informative": weights.informative.ravel(),
        }
    )
    wq, wa, _ = index.config.weights
    needed = pl.min_horizontal(pl.col("informative"), index.config.min_words)
    share = covered.join(totals, on=["item", "part"]).with_columns(
        pl.when((pl.col("total") <= 0) | (pl.col("words") < needed))
        .then(0.0)
        .when(pl.col("words") >= pl.col("informative"))
        .then(1.0)  # all of it (exactly 1, whatever the float sum says)
        .otherwise(pl.col("covered") / pl.col("total"))
        .clip(0, 1)
        .alias("share")
    )
    wide = share.group_by("row", "item").agg(
        pl.col("share").filter(pl.col("part") != 1).max().alias("question_score"),  # the question, alone or with its options
        pl.col("share").filter(pl.col("part") == 1).max().alias("answer_score"),
    )
    return wide.with_columns(
        pl.max_horizontal(pl.col("question_score").fill_null(0) * wq, pl.col("answer_score").fill_null(0) * wa).clip(0, 1).alias("score")
    )


def _spans(hits: pl.DataFrame, index: NgramIndex, pairs: pl.DataFrame) -> pl.DataFrame:
    """Aligned runs of shared words for the chosen (row, item) pairs: overlapping n-grams on one diagonal merge."""
    joined = hits.join(index.postings, on="gram").join(pairs.select("row", "item"), on=["row", "item"])
    keys = ["row", "item", "part", "diagonal"]
    runs = (
        joined.with_columns(
            (pl.col("train_position") - pl.col("position")).alias("diagonal"),
            (pl.col("position") + pl.col("length").cast(pl.Int64)).alias("end"),
        )
        .sort([*keys, "position"])
        .with_columns(pl.col("end").cum_max().shift(1).over(keys).alias("reach"))
        .with_columns((pl.col("reach").is_null() | (pl.col("position") > pl.col("reach"))).cum_sum().over(keys).alias("run"))
        .group_by([*keys, "run"])
        .agg(pl.col("position").min().alias("bench_start"), pl.col("end").max().alias("bench_end"))
        .sort(["row", "item", "part", "bench_start", "diagonal"])  # unique keys: the same order every run
    )
    spans = runs.select(
        "row",
        "item",
        pl.struct(
            pl.col("part").replace_strict(dict(enumerate(PARTS)), return_dtype=pl.String).alias("part"),
            (pl.col("bench_start") + pl.col("diagonal")).alias("train_start"),
            (pl.col("bench_end") + pl.col("diagonal")).alias("train_end"),
            "bench_start",
            "bench_end",
        )
        .cast(SPAN)
        .alias("span"),
    )
    return spans.group_by("row", "item", maintain_order=True).agg(pl.col("span").alias("spans"))


class NgramDetector:
    """The ``ngram`` method over a stream of training batches."""

    name = "ngram"

    def __init__(self, items: pl.DataFrame, config: NgramConfig = NgramConfig()) -> None:
        self.config = config
        self.index = NgramIndex(items, config)
        self.train_df = np.zeros(len(self.index.keys), dtype=np.int64)
        self.kept_hits: list[pl.DataFrame] = []

    def prepare(self, batch: TrainBatch) -> pl.DataFrame:
        return self.index.lookup(batch)

    def scan(self, batch: TrainBatch, prepared: pl.DataFrame | None = None) -> np.ndarray:
        hits = prepared if prepared is not None else self.index.lookup(batch)
        if hits.is_empty():
            return np.zeros(0, dtype=np.int64)
        distinct = hits.select("row", "gram").unique()["gram"].to_numpy()
        self.train_df += np.bincount(distinct, minlength=len(self.train_df))
        hits = hits.filter(pl.Series(self.train_df[hits["gram"].to_numpy()] <= self.config.max_train_df))
        # the train-df cap only ever removes n-grams, so a row under the floor now stays under it
        scores = _coverage(hits, self.index).filter(pl.col("score") >= self.config.floor)
        rows = scores["row"].unique().sort().to_numpy()
        kept = hits.filter(pl.col("row").is_in(rows)).with_columns(pl.col("row") + batch.offset)
        self.kept_hits.append(kept)
        return rows

    def finish(self) -> pl.DataFrame:
        if not self.kept_hits:
            return empty_matches()
        hits = pl.concat(self.kept_hits)
        hits = hits.filter(pl.Series(self.train_df[hits["gram"].to_numpy()] <= self.config.max_train_df))
        scores = _coverage(hits, self.index).filter(pl.col("score") >= self.config.floor)
        if scores.is_empty():
            return empty_matches()
        spans = _spans(hits, self.index, scores)
        out = (
            scores.join(spans, on=["row", "item"], how="left")
            .join(self._distinct_scores(hits, scores), on=["row", "item"], how="left")
            .with_columns(pl.lit(self.name).alias("method"))
        )
        return out.select(list(MATCH_SCHEMA)).cast(MATCH_SCHEMA).sort("row", "item")  # type: ignore[arg-type]

    def shared_postings(self, postings: pl.DataFrame) -> pl.Series:
        """For every posting (of the index, or all postings of some items): is its n-gram shared text
        (``NgramConfig.shared_items`` and ``shared_rows``/``shared_copies``, on the training-side counts so far)?"""
        config = self.config
        gram = postings["gram"].to_numpy()
        rows = self.train_df[gram]
        item, part = postings["item"].to_numpy(), postings["part"].to_numpy()
        copies = np.full(self.index.part_weight.shape, np.iinfo(np.int64).max)
        np.minimum.at(copies, (item, part), rows)  # the fewest rows any n-gram of the item's part is in
        limit = np.maximum(config.shared_rows, config.shared_copies * copies[item, part])
        # text several benchmark items share is boilerplate only where the corpus repeats it too (a passage three
        # MMLU items share, copied once, is a leak of that passage)
        return pl.Series("shared", ((self.index.bench_df[gram] >= config.shared_items) & (rows >= 2)) | (rows >= limit))

    def _distinct_scores(self, hits: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
        """Per match: the score counting only the item's words that are not shared text; an item made only of
        shared text keeps its score (then it is the item itself that many rows repeat)."""
        postings = self.index.postings.filter(pl.col("item").is_in(scores["item"].unique().implode()))  # the matched items'
        distinct = self.index.weights_over(postings.filter(~self.shared_postings(postings)))
        covered = _coverage(hits.join(scores.select("row", "item"), on="row", how="semi"), self.index, distinct)
        has_distinct = distinct.part_weight.sum(axis=1) > 0
        return (
            scores.select("row", "item", "score")
            .join(covered.select("row", "item", pl.col("score").alias("distinct")), on=["row", "item"], how="left")
            .with_columns(pl.Series("has", has_distinct[scores["item"].to_numpy()]))
            .select("row", "item", pl.when("has").then(pl.col("distinct").fill_null(0.0)).otherwise("score").alias("distinct_score"))
        )

    def drain(self) -> pl.DataFrame:
        """The matches of the batches scanned since the last drain (a streaming filter's view: the
        training-side cap then counts only the rows seen so far)."""
        matches = self.finish()
        self.kept_hits = []
        return matches

    def fresh(self) -> NgramDetector:
        """A detector sharing this index, with no training rows seen."""
        clone = copy.copy(self)
        clone.train_df = np.zeros(len(self.index.keys), dtype=np.int64)
        clone.kept_hits = []
        return clone

    def state(self) -> tuple[np.ndarray, list[pl.DataFrame]]:
        return self.train_df, self.kept_hits

    def absorb(self, state: tuple[np.ndarray, list[pl.DataFrame]]) -> None:
        # Each part kept the hits of the rows that passed the floor under its own (partial) training-side
        # counts: a superset of what one pass would keep, since counts only grow. ``finish`` filters every hit
        # by the summed counts and scores again, so the matches are the same as one pass's.
        train_df, kept_hits = state
        self.train_df = self.train_df + train_df
        self.kept_hits.extend(kept_hits)

    def evidence(self, matches: pl.DataFrame) -> pl.Series:
        """The benchmark words each match's spans cover, runs separated by " … "."""
        return span_evidence(matches, self.index.words)


def span_evidence(matches: pl.DataFrame, words: list[pl.Series]) -> pl.Series:
    """Benchmark words under each match's spans (``words[part][item]``), runs joined by " … "."""
    if matches.is_empty():
        return pl.Series("evidence", [], dtype=pl.String)
    exploded = (
        matches.select(pl.int_range(pl.len()).alias("match"), "item", "spans")
        .explode("spans")
        .unnest("spans")
        .filter(pl.col("part").is_not_null())
    )
    texts = []
    for part_index, part in enumerate(PARTS):
        sel = exploded.filter(pl.col("part") == part)
        if sel.is_empty():
            continue
        lists = words[part_index].gather(sel["item"])
        run = pl.DataFrame({"match": sel["match"], "words": lists, "s": sel["bench_start"], "e": sel["bench_end"]})
        texts.append(run.select("match", pl.col("words").list.slice(pl.col("s"), pl.col("e") - pl.col("s")).list.join(" ").alias("run")))
    if not texts:
        return pl.Series("evidence", [""] * matches.height, dtype=pl.String)
    joined = pl.concat(texts).group_by("match").agg(pl.col("run").str.join(" … ").alias("evidence"))
    full = pl.DataFrame({"match": np.arange(matches.height)}).join(joined, on="match", how="left")
    return full.sort("match")["evidence"].fill_null("")
