"""Exact and near-duplicate removal within and across sources, streaming, with an account of every row.

Two passes over the inputs. The first reads canonical rows in batches and keeps, per row, only
small features: a 128-bit key of the normalized text (exact), a MinHash signature (minhash) or a
sentence embedding (embedding), the text length and where the row came from. Duplicates are then
found on those arrays: rows with the same exact key first, then near duplicates among the exact
survivors (LSH candidates, optionally verified by true Jaccard; or embedding neighbours above a
cosine threshold), grouped into connected components. Each group keeps one row, chosen by the
``keep`` policy; the others point to it. The second pass streams the inputs again and writes each
row to ``kept.parquet`` or ``removed.parquet`` (with ``duplicate_of``, ``method`` and ``score``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.accounting import Account, QuarantineWriter
from thresher.convert import canonical_batches
from thresher.curation.lsh import Banding, components, jaccard_of_pairs, lsh_pairs, optimal_banding
from thresher.curation.minhash import MinHashParams, estimate_jaccard, signatures
from thresher.curation.ngrams import NGrams, ngram_hashes, text_keys
from thresher.curation.normalize import NormalizeConfig, normalize, words_of
from thresher.device import pick_compute_path
from thresher.errors import InputError
from thresher.io.sources import resolve_input
from thresher.io.writers import open_writer
from thresher.parallel import ordered_map
from thresher.records import Kind, schema_for, texts

Method = Literal["exact", "minhash", "embedding"]
KeepPolicy = Literal["first", "longest", "source-priority"]
TextField = Literal["all", "prompt"]
METHODS: tuple[str, ...] = ("exact", "minhash", "embedding")
KEEP_POLICIES: tuple[str, ...] = ("first", "longest", "source-priority")
DEFAULT_THRESHOLDS = {"exact": 1.0, "minhash": 0.8, "embedding": 0.95}
KEPT = -1


@dataclass(frozen=True)
class DedupConfig:
    """What counts as a duplicate and which copy stays."""

    method: Method = "minhash"
    threshold: float | None = None  # minhash: Jaccard; embedding: cosine; default per method
    keep: KeepPolicy = "first"
    text_field: TextField = "all"  # all message contents, or only the prompt side
    ngram: int = 5
    num_perm: int = 128
    seed: int = 1
    bands: int | None = None  # LSH bands x rows; derived from the threshold when not given
    rows_per_band: int | None = None
    verify: bool = False  # check LSH candidates by true Jaccard of their n-gram sets
    neighbours: int = 10  # embedding: k nearest neighbours searched per row
    embedding_model: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    batch_rows: int = 8192
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    workers: int | None = None  # batches worked on at once (default: the cores); outputs do not depend on it

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.keep not in KEEP_POLICIES:
            raise InputError(f"keep must be one of {', '.join(KEEP_POLICIES)}, not {self.keep!r}")
        if self.text_field not in ("all", "prompt"):
            raise InputError(f"field must be 'all' or 'prompt', not {self.text_field!r}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise InputError(f"threshold must be in (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows_per_band is None):
            raise InputError("give both bands and rows_per_band, or neither")
        for name, low in (("ngram", 1), ("num_perm", 1), ("neighbours", 1), ("batch_rows", 1), ("workers", 1)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise InputError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(self, name)}")
        if self.bands is not None and self.rows_per_band is not None:
            if self.bands < 1 or self.rows_per_band < 1:
                raise InputError(f"--bands needs at least 1 band of at least 1 row, got {self.bands}x{self.rows_per_band}")
            if self.bands * self.rows_per_band > self.num_perm:
                raise InputError(
                    f"--bands {self.bands}x{self.rows_per_band} needs {self.bands * self.rows_per_band} "
                    f"signature values, but --num-perm is {self.num_perm}"
                )

    @property
    def resolved_threshold(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.method]


def dedup_texts(table: pa.Table, kind: Kind, text_field: TextField = "all") -> pl.Series:
    """The text compared for each row: ``records.texts`` of all its turns, or of only the prompt side."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(texts(kind, text_field))["text"]


@dataclass
class Features:
    """Per-row features of every canonical row, in input order (the row's ordinal is its index)."""

    input_index: list[np.ndarray] = field(default_factory=list)
    source: list[pl.Series] = field(default_factory=list)
    ids: list[pl.Series] = field(default_factory=list)
    length: list[np.ndarray] = field(default_factory=list)
    exact: list[np.ndarray] = field(default_factory=list)
    signature: list[np.ndarray] = field(default_factory=list)
    texts: list[pl.Series] = field(default_factory=list)  # only kept for the embedding method

    def extend(self, other: Features) -> None:
        """Append ``other``'s rows after these."""
        for name in ("input_index", "source", "ids", "length", "exact", "signature", "texts"):
            getattr(self, name).extend(getattr(other, name))

    def finish(self) -> FeatureArrays:
        def cat(parts: list[np.ndarray], width: int | None = None, dtype: Any = np.int64) -> np.ndarray:
            if parts:
                return np.concatenate(parts)
            return np.zeros((0, width) if width else 0, dtype=dtype)

        return FeatureArrays(
            input_index=cat(self.input_index),
            source=pl.concat(self.source) if self.source else pl.Series("source", [], dtype=pl.String),
            ids=pl.concat(self.ids) if self.ids else pl.Series("id", [], dtype=pl.String),
            length=cat(self.length),
            exact=cat(self.exact, 2, np.uint64),
            signature=cat(self.signature, 1, np.uint32) if self.signature else None,
            texts=pl.concat(self.texts) if self.texts else None,
        )


@dataclass
class FeatureArrays:
    input_index: np.ndarray
    source: pl.Series
    ids: pl.Series
    length: np.ndarray
    exact: np.ndarray
    signature: np.ndarray | None
    texts: pl.Series | None

    def __len__(self) -> int:
        return len(self.length)


@dataclass
class Decisions:
    """For each row: the ordinal of the row it duplicates (``KEPT`` for kept rows), how, and how closely."""

    duplicate_of: np.ndarray
    method: np.ndarray  # object array of method names ("" for kept rows)
    score: np.ndarray


def _grams(normalized: pl.Series, config: DedupConfig) -> NGrams:
    return ngram_hashes(words_of(normalized).to_arrow(), config.ngram, short_rows="whole")


def add_text_features(texts: pl.Series, ids: list[str], sources: list[str], input_index: int, config: DedupConfig, into: Features) -> None:
    """Append the features of one batch of texts (the shared core of every execution path)."""
    normalized = normalize(texts, config.normalize)
    into.input_index.append(np.full(len(texts), input_index, dtype=np.int64))
    into.source.append(pl.Series("source", sources, dtype=pl.String))
    into.ids.append(pl.Series("id", ids, dtype=pl.String))
    into.length.append(texts.str.len_chars().to_numpy().astype(np.int64))
    into.exact.append(text_keys(normalized.to_arrow()))
    if config.method == "minhash":
        params = MinHashParams(config.num_perm, config.seed)
        device = pick_compute_path(config.device, announce=False).device
        if device == "cuda":  # everything after normalization on the GPU, bit-identical to the CPU path
            from thresher.curation.device_minhash import text_signatures

            into.signature.append(text_signatures(normalized, config.ngram, params, device))
        else:
            into.signature.append(signatures(_grams(normalized, config), len(texts), params, device))
    elif config.method == "embedding":
        into.texts.append(texts)


def _batch_features(table: pa.Table, kind: Kind, input_index: int, config: DedupConfig, into: Features) -> None:
    texts = dedup_texts(table, kind, config.text_field)
    add_text_features(texts, table.column("id").to_pylist(), table.column("source").to_pylist(), input_index, config, into)


class Spool:
    """The first pass's converted rows of every input that is not Parquet, kept in ``folder`` so that later passes
    read them back instead of converting again (and see exactly the rows the first pass saw)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[int, Path] = {}
        self._writers: dict[int, pq.ParquetWriter] = {}

    def add(self, index: int, table: pa.Table) -> None:
        if index not in self._writers:
            self.paths[index] = self.folder / f"{index}.parquet"
            self._writers[index] = pq.ParquetWriter(self.paths[index], table.schema, compression="lz4")
        self._writers[index].write_table(table)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def batches(self, index: int, batch_rows: int) -> Iterator[pa.Table]:
        for batch in pq.ParquetFile(self.paths[index]).iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])


def iter_inputs(
    inputs: list[str],
    kind: Kind | None,
    counts: dict[str, Account],
    quarantine: QuarantineWriter | None,
    batch_rows: int,
    skip_bad: bool = False,
    spool: Spool | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, Kind, pa.Table]]:
    """Canonical batches of every input in order, checking they are all of one kind. With ``spool``: the first
    pass (``skip_bad`` false) keeps what it converts there, later passes read it back."""
    seen_kind = kind
    for index, name in enumerate(inputs):
        if spool is not None and skip_bad and index in spool.paths:
            assert seen_kind is not None
            for table in spool.batches(index, batch_rows):
                yield index, seen_kind, table
            continue
        spec = resolve_input(name)
        keep = spool is not None and not skip_bad and spec.format != "parquet"
        counted = counts.setdefault(name, Account(name))
        for found, table in canonical_batches(spec, seen_kind, counted, quarantine, batch_rows, skip_bad, workers=workers):
            if seen_kind is None:
                seen_kind = found
            if found != seen_kind:
                raise InputError(f"{name}: rows are {found.value}, but earlier inputs are {seen_kind.value}; dedup one kind at a time")
            if keep:
                assert spool is not None
                spool.add(index, table)
            yield index, found, table


def scan(
    inputs: list[str],
    config: DedupConfig,
    kind: Kind | None = None,
    quarantine: QuarantineWriter | None = None,
    on_batch: Callable[[int], None] | None = None,
    spool: Spool | None = None,
) -> tuple[Kind, FeatureArrays, dict[str, Account]]:
    """First pass: features of every row (and, with ``spool``, the converted rows kept for the later passes)."""
    counts: dict[str, Account] = {}
    features = Features()
    found_kind = kind

    def batch_features(item: tuple[int, Kind, pa.Table]) -> tuple[Kind, int, Features]:
        index, batch_kind, table = item
        found = Features()
        _batch_features(table, batch_kind, index, config, found)
        return batch_kind, table.num_rows, found

    batches = iter_inputs(inputs, kind, counts, quarantine, config.batch_rows, spool=spool, workers=config.workers)
    for batch_kind, rows, found in ordered_map(batch_features, batches, config.workers):
        found_kind = batch_kind
        features.extend(found)
        if on_batch:
            on_batch(rows)
    return found_kind or Kind.SFT, features.finish(), counts


def keeper_rank(features: FeatureArrays, keep: KeepPolicy) -> np.ndarray:
    """Rank of every row as the one to keep (0 = best); ties go to the earlier row."""
    ordinal = np.arange(len(features))
    if keep == "first":
        order = ordinal
    elif keep == "longest":
        order = np.lexsort((ordinal, -features.length))
    else:  # source-priority: the earlier input wins, then the earlier row
        order = np.lexsort((ordinal, features.input_index))
    rank = np.empty(len(features), dtype=np.int64)
    rank[order] = np.arange(len(features))
    return rank


def keepers(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each row, the row of its group (same label) with the best rank."""
    if not len(labels):
        return labels
    order = np.lexsort((rank, labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    best_of_label = np.zeros(labels.max() + 1, dtype=np.int64)
    best_of_label[labels[order][first]] = order[first]
    return best_of_label[labels]


def _exact_labels(features: FeatureArrays) -> np.ndarray:
    frame = pl.DataFrame({"k0": features.exact[:, 0], "k1": features.exact[:, 1]})
    return frame.select(pl.struct("k0", "k1").rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()


Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows, kept rows) -> similarity of each pair


def _components(n: int, pairs: np.ndarray, config: DedupConfig) -> np.ndarray:
    """Connected components of the candidate pairs: on the GPU for minhash dedup there, else SciPy (same groups)."""
    if config.method == "minhash" and len(pairs) and pick_compute_path(config.device, announce=False).is_gpu:
        from thresher.curation.device_minhash import components_of

        return components_of(n, pairs)
    return components(n, pairs)


def banding_of(config: DedupConfig) -> Banding:
    """The LSH bands x rows: as given, else the best for the threshold and signature width."""
    if config.bands is not None and config.rows_per_band is not None:
        return Banding(config.bands, config.rows_per_band)
    return optimal_banding(config.resolved_threshold, config.num_perm)


def _near_pairs(
    features: FeatureArrays, alive: np.ndarray, config: DedupConfig, ngram_sets_of: Callable[[np.ndarray], pl.DataFrame] | None
) -> tuple[np.ndarray, Scorer]:
    """Near-duplicate edges among the ``alive`` rows (global ordinals), and how to score a pair of rows."""
    rows = np.flatnonzero(alive)
    if config.method == "minhash":
        sig = features.signature
        assert sig is not None
        find = lsh_pairs
        if pick_compute_path(config.device, announce=False).is_gpu:  # buckets by a sort on the GPU
            from thresher.curation import device_minhash

            find = device_minhash.lsh_pairs
        pairs = rows[find(sig[rows], banding_of(config))] if len(rows) else np.zeros((0, 2), np.int64)
        if not (config.verify and len(pairs)):
            return pairs, lambda a, b: estimate_jaccard(sig[a], sig[b])
        assert ngram_sets_of is not None
        sets = ngram_sets_of(np.unique(pairs))
        pairs = pairs[jaccard_of_pairs(pairs, sets) >= config.resolved_threshold]
        return pairs, lambda a, b: jaccard_of_pairs(np.stack([a, b], axis=1), sets)
    assert features.texts is not None
    from thresher.curation.embeddings import encode, similar_pairs

    vectors = encode(features.texts.gather(rows).to_list(), config.embedding_model, config.cache_dir, device=config.device)
    pairs, _ = similar_pairs(vectors, config.resolved_threshold, k=config.neighbours, device=config.device)
    local = np.zeros(len(features), dtype=np.int64)
    local[rows] = np.arange(len(rows))  # global ordinal -> row of ``vectors``
    return (rows[pairs] if len(pairs) else pairs), lambda a, b: np.einsum("ij,ij->i", vectors[local[a]], vectors[local[b]])


NearPairs = Callable[[np.ndarray], tuple[np.ndarray, Scorer]]  # alive mask -> (edges, scorer)


def decide(
    features: FeatureArrays,
    config: DedupConfig,
    ngram_sets_of: Callable[[np.ndarray], pl.DataFrame] | None = None,
    near: NearPairs | None = None,
) -> Decisions:
    """Which rows stay, and for each removed row the kept row it duplicates. ``near`` replaces the in-memory
    near-duplicate search (``_near_pairs``) with edges found elsewhere, e.g. band-sharded LSH over every row:
    edges may touch exact duplicates, which share their keeper's signature and so its buckets, so the
    components among the rows exact dedup keeps are the same."""
    n = len(features)
    rank = keeper_rank(features, config.keep)
    duplicate_of = np.full(n, KEPT, dtype=np.int64)
    method = np.full(n, "", dtype=object)
    score = np.full(n, np.nan, dtype=np.float64)
    # exact: identical normalized text
    best = keepers(_exact_labels(features), rank) if n else np.zeros(0, np.int64)
    exact_dup = best != np.arange(n)
    duplicate_of[exact_dup], method[exact_dup], score[exact_dup] = best[exact_dup], "exact", 1.0
    if config.method == "exact" or not n:
        return Decisions(duplicate_of, method, score)
    # near: among the rows exact dedup kept
    alive = ~exact_dup
    pairs, score_of = near(alive) if near is not None else _near_pairs(features, alive, config, ngram_sets_of)
    labels = _components(n, pairs, config)
    near_best = keepers(np.where(alive, labels, labels.max() + 1 + np.arange(n)), rank)
    near_dup = alive & (near_best != np.arange(n))
    rows, kept_rows = np.flatnonzero(near_dup), near_best[near_dup]
    duplicate_of[rows], method[rows], score[rows] = kept_rows, config.method, score_of(rows, kept_rows)
    # exact copies of a row that is itself a near duplicate follow it to its keeper
    moved = np.flatnonzero(exact_dup & near_dup[np.where(exact_dup, duplicate_of, 0)])
    twin = duplicate_of[moved]
    duplicate_of[moved], method[moved], score[moved] = duplicate_of[twin], config.method, score[twin]
    return Decisions(duplicate_of, method, score)


# duplicate_of is the kept row's id; ids need not be unique across inputs, so its input and row say which row it is
REMOVED_EXTRA = [
    pa.field("duplicate_of", pa.string()),
    pa.field("method", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("duplicate_of_input", pa.string()),
    pa.field("duplicate_of_row", pa.int64()),
]


@dataclass
class DedupReport:
    kind: Kind
    config: DedupConfig
    counts: dict[str, Account]
    per_source: dict[str, dict[str, Any]]
    total: dict[str, Any]
    seconds: float
    executor: dict[str, Any] | None = None  # where the stages ran (--executor), else in this process

    @property
    def account(self) -> Account:
        """in = kept + removed (by method) + quarantined (by category); ``dedup`` checks it before writing the summary."""
        quarantined = Account.summed("inputs", self.counts.values()).quarantined
        return Account.of("dedup", self.total["in"], self.total["kept"], self.total["removed_by_method"], quarantined)

    def as_dict(self) -> dict[str, Any]:
        config = asdict(self.config)
        return {
            "kind": self.kind.value,
            "config": config,
            "in": self.total["in"],
            "kept": self.total["kept"],
            "removed": self.total["removed"],
            "quarantined": self.total["quarantined"],
            "removed_by_method": self.total["removed_by_method"],
            "removed_across_sources": self.total["removed_across_sources"],
            "repeated_ids": self.total["repeated_ids"],
            "balanced": self.total["in"] == self.total["kept"] + self.total["removed"] + self.total["quarantined"],
            "sources": self.per_source,
            "inputs": {name: c.as_dict() for name, c in self.counts.items()},
            "seconds": round(self.seconds, 3),
            **({"executor": self.executor} if self.executor else {}),
        }


def summarize(features: FeatureArrays, decisions: Decisions, counts: dict[str, Account]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Counts per source (the rows' ``source``) and in total: in, kept, removed by method."""
    removed = decisions.duplicate_of != KEPT
    frame = pl.DataFrame(
        {
            "source": features.source,
            "removed": removed,
            "method": [m or None for m in decisions.method.tolist()],
            "across": removed & (features.source.to_numpy() != features.source.to_numpy()[np.where(removed, decisions.duplicate_of, 0)]),
        }
    )
    per_source: dict[str, dict[str, Any]] = {}
    for (source,), part in frame.group_by("source", maintain_order=True):
        methods = Counter(m for m in part["method"].to_list() if m)
        per_source[str(source)] = {
            "in": part.height,
            "kept": int((~part["removed"]).sum()),
            "removed": int(part["removed"].sum()),
            "removed_by_method": dict(sorted(methods.items())),
            "removed_across_sources": int(part["across"].sum()),
        }
    quarantined = sum(c.quarantined_total for c in counts.values())
    repeated = features.ids.filter(features.ids.is_duplicated()).unique().sort()
    total = {
        "in": len(features) + quarantined,
        "kept": int((~removed).sum()),
        "removed": int(removed.sum()),
        "quarantined": quarantined,
        "removed_by_method": dict(sorted(Counter(m for m in decisions.method.tolist() if m).items())),
        "removed_across_sources": int(frame["across"].sum()),
        # ids used by more than one row: outputs name such a row by input and row as well (duplicate_of_input/_row)
        "repeated_ids": {"count": repeated.len(), "examples": repeated.head(5).to_list()},
    }
    return per_source, total


def write_outputs(
    inputs: list[str],
    kind: Kind,
    features: FeatureArrays,
    decisions: Decisions,
    out_dir: Path,
    config: DedupConfig,
    on_batch: Callable[[int], None] | None = None,
    spool: Spool | None = None,
) -> None:
    """Second pass: every row to kept.parquet or removed.parquet, in input order, atomically."""
    schema = schema_for(kind)
    kept = open_writer(out_dir / "kept.parquet", kind)
    removed = open_writer(out_dir / "removed.parquet", kind, pa.schema(list(schema) + REMOVED_EXTRA))
    ids = features.ids.to_numpy()
    first_row = np.searchsorted(features.input_index, np.arange(len(inputs)))  # each input's first ordinal
    start = 0
    try:
        for _, _, table in iter_inputs(inputs, kind, {}, None, config.batch_rows, skip_bad=True, spool=spool):
            stop = start + table.num_rows
            dup = decisions.duplicate_of[start:stop]
            is_removed = dup != KEPT
            kept.write_table(table.filter(pa.array(~is_removed)))
            if is_removed.any():
                rows = np.flatnonzero(is_removed)
                part = table.take(pa.array(rows))
                part = part.append_column(REMOVED_EXTRA[0], pa.array(ids[dup[rows]], type=pa.string()))
                part = part.append_column(REMOVED_EXTRA[1], pa.array(decisions.method[start:stop][rows].tolist(), type=pa.string()))
                part = part.append_column(REMOVED_EXTRA[2], pa.array(decisions.score[start:stop][rows], type=pa.float64()))
                twin = dup[rows]
                twin_input = features.input_index[twin]
                part = part.append_column(REMOVED_EXTRA[3], pa.array(np.asarray(inputs, dtype=object)[twin_input], type=pa.string()))
                part = part.append_column(REMOVED_EXTRA[4], pa.array(twin - first_row[twin_input], type=pa.int64()))
                removed.write_table(part)
            start = stop
            if on_batch:
                on_batch(table.num_rows)
        if start != len(features):
            raise InputError(f"the inputs changed while deduplicating: read {start} rows the second time, {len(features)} the first")
        kept.close()
        removed.close()
    except BaseException:
        kept.abort()
        removed.abort()
        raise


def ngram_sets_reader(
    inputs: list[str], kind: Kind, config: DedupConfig, spool: Spool | None = None
) -> Callable[[np.ndarray], pl.DataFrame]:
    """A function giving the n-gram sets of chosen rows (global ordinals), re-reading the inputs."""

    def read(rows: np.ndarray) -> pl.DataFrame:
        parts = []
        start = 0
        for _, _, table in iter_inputs(inputs, kind, {}, None, config.batch_rows, skip_bad=True, spool=spool):
            stop = start + table.num_rows
            local = rows[(rows >= start) & (rows < stop)] - start
            if len(local):
                texts = dedup_texts(table.take(pa.array(local)), kind, config.text_field)
                grams = _grams(normalize(texts, config.normalize), config)
                parts.append(pl.DataFrame({"row": local[grams.row] + start, "hash": grams.hash}))
            start = stop
        if not parts:
            return pl.DataFrame({"row": [], "hash": []}, schema={"row": pl.Int64, "hash": pl.UInt64})
        return pl.concat(parts).unique()

    return read


def dedup(
    inputs: list[str],
    out_dir: str | Path,
    config: DedupConfig = DedupConfig(),
    kind: Kind | None = None,
    on_error: Literal["fail", "quarantine"] = "fail",
    on_rows: Callable[[str, int], None] | None = None,
    executor: Any = None,
) -> DedupReport:
    """Deduplicate ``inputs`` (within and across them) into ``out_dir``: kept/removed Parquet and summary.json.

    ``on_rows(stage, rows)`` is called after each batch of the "scan" and "write" passes. ``executor``
    (``thresher.executors.Executor``): run features, buckets and clusters on datatrove's local
    executor or on Ray instead of in this process; the outputs are the same.
    """
    if executor is not None:
        from thresher.curation.distributed import check_supported

        check_supported(config)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quarantine = QuarantineWriter(out / "quarantine.jsonl") if on_error == "quarantine" else None
    for stale in out.glob(".spool-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    spool = Spool(Path(tempfile.mkdtemp(prefix=".spool-", dir=out)))  # removed below, whatever happens
    try:
        try:
            scanned = (lambda rows: on_rows("scan", rows)) if on_rows else None
            if executor is None:
                found_kind, features, counts = scan(inputs, config, kind, quarantine, on_batch=scanned, spool=spool)
            else:
                from thresher.curation.distributed import spool_inputs

                found_kind, counts = spool_inputs(inputs, kind, quarantine, config.batch_rows, spool, scanned)
        finally:
            spool.close()
            if quarantine is not None:
                quarantine.close()
        if executor is None:
            reader = ngram_sets_reader(inputs, found_kind, config, spool) if config.verify else None
            decisions = decide(features, config, reader)
        else:
            from thresher.curation.distributed import run_stages

            features, decisions = run_stages(inputs, found_kind, config, spool, executor, out)
        written = (lambda rows: on_rows("write", rows)) if on_rows else None
        write_outputs(inputs, found_kind, features, decisions, out, config, on_batch=written, spool=spool)
    finally:
        shutil.rmtree(spool.folder, ignore_errors=True)
    per_source, total = summarize(features, decisions, counts)
    ran_on = asdict(executor) if executor is not None else None
    report = DedupReport(found_kind, config, counts, per_source, total, time.perf_counter() - started, ran_on)
    report.account.check()  # before the summary is written: a run that lost rows leaves no output
    (out / "summary.json").write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    return report
