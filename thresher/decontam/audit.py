"""The audit: every training row against every benchmark item, by each chosen method, with scores and evidence.

One streaming pass over the training inputs (canonical batches, any kind, mixed kinds allowed).
Each batch is normalized and split into words once and shown to every detector; detectors keep
only what may match, so memory grows with the matches, not the rows. Afterwards the optional
judge looks at embedding candidates, each match is flagged against its method's threshold, and
the match table is joined with where each row came from and which item it matched.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from thresher.accounting import Account, QuarantineWriter
from thresher.cache import folder_megabytes
from thresher.convert import canonical_batches
from thresher.decontam.benchmarks import BenchmarkItems
from thresher.decontam.calibrate import RowSample, calibrate
from thresher.decontam.classes import CLASSES, DEFAULT_FLAG, classify
from thresher.decontam.evidence import char_spans
from thresher.decontam.judge import JudgeConfig
from thresher.decontam.matching import Detector, TrainBatch
from thresher.decontam.ngram import NgramConfig, NgramDetector, span_evidence
from thresher.decontam.rephrase import RephraseConfig, rephrase_matches
from thresher.decontam.similarity import EmbeddingDetector, EmbeddingMatchConfig, MinhashDetector, MinhashMatchConfig
from thresher.errors import InputError
from thresher.executors import Executor
from thresher.io.sources import resolve_input
from thresher.parallel import ordered_map
from thresher.records import FIELDS, Fields, Kind, turns

METHODS: tuple[str, ...] = ("ngram", "minhash", "embedding", "rephrase", "judge")
_ON_EMBEDDINGS = ("rephrase", "judge")  # methods that re-score embedding candidates


def train_turns(table: pa.Table, kind: Kind, fields: Fields) -> pl.Series:
    """The turns of each training row that are matched (a list per row): ``records.turns``."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(turns(kind, fields))["turns"]


def train_texts(table: pa.Table, kind: Kind, fields: Fields) -> pl.Series:
    """The matched turns of each training row joined by newlines."""
    return train_turns(table, kind, fields).list.join("\n").alias("text")


@dataclass(frozen=True)
class AuditConfig:
    methods: tuple[str, ...] = ("ngram",)
    fields: Fields = "all"
    ngram: NgramConfig = field(default_factory=NgramConfig)
    minhash: MinhashMatchConfig = field(default_factory=MinhashMatchConfig)
    embedding: EmbeddingMatchConfig = field(default_factory=EmbeddingMatchConfig)
    rephrase: RephraseConfig = field(default_factory=RephraseConfig)
    judge: JudgeConfig | None = None
    batch_rows: int = 8192
    workers: int | None = None  # batches worked on at once (default: the cores); results do not depend on it
    calibrate: int = 0  # plant this many controlled item variants into copies of sampled rows and measure recall
    calibrate_seed: int = 0
    flag: tuple[str, ...] = DEFAULT_FLAG  # the match classes that make a row contaminated (thresher.decontam.classes)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(f"methods must be some of {', '.join(METHODS)}, got {', '.join(self.methods) or 'none'}")
        if self.fields not in FIELDS:
            raise InputError(f"fields must be one of {', '.join(FIELDS)}, not {self.fields!r}")
        if "judge" in self.methods and self.judge is None:
            raise InputError("the judge method needs a judge model (--judge-model)")
        wrong = [c for c in self.flag if c not in CLASSES]
        if wrong or not self.flag:
            raise InputError(f"--flag takes match classes: some of {', '.join(CLASSES)}; got {', '.join(self.flag) or 'none'}")
        if self.calibrate < 0:
            raise InputError(f"calibrate must be >= 0 planted rows, got {self.calibrate}")

    def threshold(self, method: str) -> float:
        if method == "judge":
            assert self.judge is not None
            return self.judge.threshold
        if method == "rephrase":
            return self.rephrase.threshold
        return {"ngram": self.ngram.threshold, "minhash": self.minhash.threshold, "embedding": self.embedding.threshold}[method]

    @property
    def detector_methods(self) -> list[str]:
        """The methods that scan rows: the judge and rephrase need embedding candidates, so they bring that method along."""
        wanted = [m for m in self.methods if m not in _ON_EMBEDDINGS]
        if any(m in self.methods for m in _ON_EMBEDDINGS) and "embedding" not in wanted:
            wanted.append("embedding")
        return wanted


def make_detector(method: str, items: pl.DataFrame, config: AuditConfig) -> Detector:
    if method == "ngram":
        return NgramDetector(items, config.ngram)
    if method == "minhash":
        return MinhashDetector(items, config.minhash)
    # record every pair the judge or the rephrase method may look at
    froms = [config.judge.candidates_from] if config.judge is not None and "judge" in config.methods else []
    froms += [config.rephrase.candidates_from] if "rephrase" in config.methods else []
    embedding = EmbeddingMatchConfig(**{**asdict(config.embedding), "floor": min([config.embedding.floor, *froms])})
    return EmbeddingDetector(items, embedding)


def combined_items(benches: list[BenchmarkItems]) -> pl.DataFrame:
    """All benchmarks' items in one table; the row index is the item number detectors use."""
    return pl.concat([b.items for b in benches]).with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))


LEDGER_SCHEMA = {
    "row": pl.Int64,
    "train_input": pl.String,
    "train_row": pl.Int64,
    "train_id": pl.String,
    "train_source": pl.String,
    "train_text": pl.String,
}


@dataclass
class RowLedger:
    """Where each candidate row came from, and its text; row counts per (input, source)."""

    frames: list[pl.DataFrame] = field(default_factory=list)
    rows_per_source: Counter[str] = field(default_factory=Counter)

    def add(self, batch: TrainBatch, table: pa.Table, input_name: str, first_in_input: int, rows: np.ndarray) -> None:
        self.count(table)
        self.keep(batch, table, input_name, first_in_input, rows)

    def count(self, table: pa.Table) -> None:
        """Count a batch's rows per source."""
        sources = pl.Series(table.column("source")).value_counts()
        self.rows_per_source.update({str(s): int(c) for s, c in sources.iter_rows()})

    def keep(self, batch: TrainBatch, table: pa.Table, input_name: str, first_in_input: int, rows: np.ndarray) -> None:
        """Keep where the batch's candidate ``rows`` (local) came from, and their texts."""
        if not len(rows):
            return
        take = pa.array(rows)
        self.frames.append(
            pl.DataFrame(
                {
                    "row": rows + batch.offset,
                    "train_input": input_name,
                    "train_row": rows + first_in_input,
                    "train_id": table.column("id").take(take).to_pylist(),
                    "train_source": table.column("source").take(take).to_pylist(),
                    "train_text": batch.texts.gather(rows),
                },
                schema=LEDGER_SCHEMA,
            )
        )

    def table(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=LEDGER_SCHEMA)
        return pl.concat(self.frames).unique("row", keep="first").sort("row")


@dataclass
class AuditResult:
    config: AuditConfig
    benches: list[BenchmarkItems]
    items: pl.DataFrame
    matches: pl.DataFrame  # one row per (training row, item, method), enriched
    rows_per_source: dict[str, int]
    counts: dict[str, Account]
    notes: dict[str, Any]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(self.rows_per_source.values())

    def flagged_rows(self) -> pl.DataFrame:
        """Each contaminated row (global ordinal) with its strongest flagged match."""
        return self.matches.filter("flagged").sort(["row", "score"], descending=[False, True]).unique("row", keep="first").sort("row")


def bench_texts(items: pl.DataFrame) -> pl.Expr:
    """Each item as one text: the question, its options (multiple choice), the answer."""
    options = pl.when(pl.col("options").str.len_chars() > 0).then(pl.col("options")) if "options" in items.columns else pl.lit(None)
    return pl.concat_str([pl.col("question"), options, pl.col("answer")], separator="\n", ignore_nulls=True).alias("bench_text")


def _judge(matches: pl.DataFrame, items: pl.DataFrame, ledger: pl.DataFrame, config: JudgeConfig) -> pl.DataFrame:
    """Judge matches for embedding candidates from ``candidates_from`` on."""
    from thresher.decontam.judge import TransformersJudge

    candidates = matches.filter((pl.col("method") == "embedding") & (pl.col("score") >= config.candidates_from))
    if candidates.is_empty():
        return candidates.head(0).with_columns(pl.lit("judge").alias("method"))
    texts = candidates.join(ledger.select("row", "train_text"), on="row").join(items.select("item", bench_texts(items)), on="item")
    judge = TransformersJudge(config)
    probability = judge.same_problem(list(zip(texts["train_text"].to_list(), texts["bench_text"].to_list(), strict=True)))
    return texts.select(candidates.columns).with_columns(pl.lit("judge").alias("method"), pl.Series("score", probability))


def _enrich(
    matches: pl.DataFrame, items: pl.DataFrame, ledger: pl.DataFrame, words: list[pl.Series] | None, config: AuditConfig
) -> pl.DataFrame:
    thresholds = pl.DataFrame(
        {"method": list(METHODS), "threshold": [config.threshold(m) if m != "judge" or config.judge else 1.0 for m in METHODS]}
    )
    evidence = span_evidence(matches, words) if words is not None else pl.Series("evidence", [""] * matches.height)
    enriched = (
        matches.with_columns(evidence.alias("evidence"))
        .join(thresholds, on="method")
        .join(ledger, on="row", how="left")
        .join(items.select("item", "bench", "bench_id", "question", bench_texts(items)), on="item")
    )
    enriched = classify(enriched, words).with_columns(
        ((pl.col("score") >= pl.col("threshold")) & pl.col("match_class").is_in(list(config.flag))).alias("flagged")
    )
    enriched = enriched.with_columns(char_spans(enriched, items))
    return enriched.select(
        "row",
        "train_input",
        "train_row",
        "train_id",
        "train_source",
        "bench",
        "bench_id",
        "item",
        "method",
        "score",
        "flagged",
        "match_class",
        "class_note",
        "question_score",
        "answer_score",
        "distinct_score",
        "spans",
        "char_spans",
        "evidence",
        "train_text",
        "bench_text",
    ).sort("row", "bench", "bench_id", "method")


def prepare_batch(detectors: list[Detector], config: AuditConfig, found: Kind, table: pa.Table) -> tuple[TrainBatch, list[Any]]:
    """A canonical batch as the detectors see it (offset 0 until it is placed), and what each prepares from it."""
    turns = train_turns(table, found, config.fields)
    batch = TrainBatch.of(turns.list.join("\n").alias("text"), 0, turns=turns)
    return batch, [d.prepare(batch) for d in detectors]


def scan_batch(detectors: list[Detector], batch: TrainBatch, prepared: list[Any]) -> np.ndarray:
    """Every detector scans the placed batch; the local rows any of them may match."""
    scanned = [d.scan(batch, p) for d, p in zip(detectors, prepared, strict=True)]
    return np.unique(np.concatenate(scanned)).astype(np.int64)  # every config has a detector


@dataclass(frozen=True)
class Place:
    """Where a canonical batch sits: its input, its first row there, and its first row in the whole stream."""

    input: str
    first_in_input: int
    offset: int


def placed_batches(
    train: list[str], kind: Kind | None, config: AuditConfig, counts: dict[str, Account], quarantine: QuarantineWriter | None
) -> Iterator[tuple[Place, Kind, pa.Table]]:
    """Every canonical batch of the training inputs in order, with its place; ``counts`` and ``quarantine`` fill as
    the inputs are read."""
    offset = 0
    for name in train:
        counted = counts.setdefault(name, Account(name))
        first_in_input = 0
        for found, table in canonical_batches(resolve_input(name), kind, counted, quarantine, config.batch_rows, workers=config.workers):
            yield Place(name, first_in_input, offset), found, table
            offset += table.num_rows
            first_in_input += table.num_rows


def _scan_here(
    train: list[str],
    kind: Kind | None,
    config: AuditConfig,
    detectors: list[Detector],
    ledger: RowLedger,
    sample: RowSample,
    counts: dict[str, Account],
    quarantine: QuarantineWriter | None,
    on_rows: Callable[[int], None] | None,
) -> None:
    """The scan in this process: batches prepared on ``config.workers`` threads, scanned in input order."""
    batches = placed_batches(train, kind, config, counts, quarantine)
    prepared_batches = ordered_map(lambda b: (b[0], b[2], *prepare_batch(detectors, config, b[1], b[2])), batches, config.workers)
    for place, table, batch, prepared in prepared_batches:
        batch.offset = place.offset
        ledger.add(batch, table, place.input, place.first_in_input, scan_batch(detectors, batch, prepared))
        sample.add(batch)
        if on_rows:
            on_rows(len(batch))


def run_audit(
    train: list[str],
    benches: list[BenchmarkItems],
    config: AuditConfig = AuditConfig(),
    quarantine: QuarantineWriter | None = None,
    kind: Kind | None = None,
    on_rows: Callable[[int], None] | None = None,
    executor: Executor | None = None,
    work_dir: Path | None = None,
) -> AuditResult:
    """Audit the training inputs ``train`` against ``benches``. With ``executor``, the scan runs as datatrove
    tasks there (work files in a hidden folder of ``work_dir``); the matches are the same."""
    started = time.perf_counter()
    if not benches:
        raise InputError("no benchmarks to audit against (give --bench)")
    items = combined_items(benches)
    detectors = [make_detector(m, items, config) for m in config.detector_methods]
    ledger = RowLedger()
    sample = RowSample(config.calibrate, config.calibrate_seed)
    counts: dict[str, Account] = {}
    notes: dict[str, Any] = {}
    if executor is None:
        _scan_here(train, kind, config, detectors, ledger, sample, counts, quarantine, on_rows)
    else:
        from thresher.decontam.distributed import scan_on_executor

        scan_on_executor(
            train, kind, config, items, detectors, ledger, sample, counts, quarantine, on_rows, executor, work_dir or Path(".")
        )
        notes["executor"] = asdict(executor)
    rows_table = ledger.table()
    matches = pl.concat([d.finish() for d in detectors])
    evidence = None
    if "rephrase" in config.methods:
        rescored, evidence = rephrase_matches(matches, items, rows_table, config.rephrase)
        matches = pl.concat([matches, rescored])
    if config.judge is not None and "judge" in config.methods:
        matches = pl.concat([matches, _judge(matches, items, rows_table, config.judge)])
    if "embedding" not in config.methods:
        matches = matches.filter(pl.col("method") != "embedding")
    ngram = next((d for d in detectors if isinstance(d, NgramDetector)), None)
    enriched = _enrich(matches, items, rows_table, ngram.index.words if ngram else None, config)
    if evidence is not None:  # the rephrase method's features, as its evidence
        enriched = (
            enriched.join(evidence, on=["row", "item", "method"], how="left")
            .with_columns(pl.coalesce("features", "evidence").alias("evidence"))
            .drop("features")
        )
    if ngram is not None:
        notes["ngram"] = {
            "indexed_ngrams": len(ngram.index.keys),
            "boilerplate_ngrams_skipped": ngram.index.boilerplate,
            "boilerplate_ngrams_in_training": int((ngram.train_df > config.ngram.max_train_df).sum()),
            "questions_too_short": ngram.index.unindexed_questions,
        }
    engines = {d.name: getattr(getattr(d, "index", None), "engine", None) for d in detectors}
    if any(engines.values()):  # which k-NN search ran (FAISS on the GPU or CPU, or torch's exact search)
        notes["embedding_search"] = {name: engine for name, engine in engines.items() if engine}
    if any(m in config.methods for m in ("embedding", *_ON_EMBEDDINGS)):
        where = config.embedding.cache_dir
        notes["embedding_cache"] = {"path": where, "megabytes": folder_megabytes(Path(where)) if where else 0.0}
    if config.calibrate:
        rescorers = {}
        if "rephrase" in config.methods:
            rescorers["rephrase"] = lambda found, texts: rephrase_matches(found, items, texts, config.rephrase)[0]
        notes["calibration"] = calibrate(
            detectors,
            items,
            sample,
            config.calibrate,
            {m: config.threshold(m) for m in [*(d.name for d in detectors), *rescorers]},
            config.calibrate_seed,
            rescorers,
            build=lambda fake: [make_detector(m, fake, config) for m in config.detector_methods],
            # items copied whole are no decoy material (a half would match the copy); template siblings stay in
            exclude=set(enriched.filter(pl.col("flagged") & pl.col("match_class").is_in(["verbatim", "reformatted"]))["item"].to_list()),
        )
    return AuditResult(config, benches, items, enriched, dict(ledger.rows_per_source), counts, notes, time.perf_counter() - started)
