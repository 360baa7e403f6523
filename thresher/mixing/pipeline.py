"""``thresher mix``: load every source, give rows their skills, run the steps, draw the mixture, and
write it with its manifest and report. Each stage's result is cached under the hash of what it
depends on, so a re-run reads the cache and a changed step recomputes only itself and what follows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

import thresher
from thresher.accounting import QuarantineWriter
from thresher.config import resolve_path
from thresher.io.hashing import file_hash
from thresher.mixing.apportion import Draw, MixError, Pool, allocate, largest_remainder, source_rng
from thresher.mixing.cache import StageStore, key_of
from thresher.mixing.ledger import account, sample_account
from thresher.mixing.load import ROW, TokenCounter, load_source, resolve_source
from thresher.mixing.skills import classify
from thresher.mixing.spec import ClassifierSpec, DecontaminateStep, MixSpec, SourceSpec, load_spec
from thresher.mixing.steps import StepContext, resolve_benchmarks, run_step
from thresher.records import schema_for

REMOVED_COLUMNS = ["source", "id", ROW, "skill", "chars", "tokens", "reason", "detail"]
OUTPUT_EXTRA = ["skill", "skill_from", "skill_score", "tokens", "copy"]
Log = Callable[[str], None]


@dataclass
class Stage:
    """One stage's rows after it, the rows it removed, and its cache key."""

    name: str
    key: str
    kept: pl.DataFrame
    removed: pl.DataFrame
    cached: bool
    account: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class MixResult:
    out_dir: Path
    manifest: dict[str, Any]
    files: list[Path]
    stages: list[Stage]
    seconds: float
    output_seconds: float = 0.0  # drawing the rows and writing every output

    @property
    def cached(self) -> list[str]:
        return [s.name for s in self.stages if s.cached]


def _removed_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(REMOVED_COLUMNS)


def input_hash(source: SourceSpec, base: Path) -> str:
    """The content hash of a local source; a hub source is named by its id, config and split."""
    spec = resolve_source(source, base)
    if spec.format == "hf_hub":
        return f"hub:{spec.path}:{spec.split}"
    return file_hash(Path(spec.path))


def _tokenizer_hash(spec: MixSpec, base: Path) -> str | None:
    if spec.tokenizer is None:
        return None
    local = resolve_path(spec.tokenizer.path, base)
    return file_hash(local) if local.exists() else f"hub:{spec.tokenizer.path}"


def _bench_hashes(step: DecontaminateStep, base: Path) -> dict[str, str]:
    hashes = {}
    for resolved in resolve_benchmarks(step, base):
        name, _, path = resolved.partition("=")
        hashes[name] = file_hash(Path(path)) if path and Path(path).exists() else f"hub:{path or name}"
    return hashes


class Mixer:
    """Runs one spec: every stage through the cache, then sampling and the outputs."""

    def __init__(self, spec: MixSpec, base: Path, store: StageStore, log: Log) -> None:
        self.spec, self.base, self.store, self.log = spec, base, store, log
        self.tokens = TokenCounter(spec.tokenizer, base) if spec.tokenizer else None
        self.tokenizer_hash = _tokenizer_hash(spec, base)
        self.inputs = {s.name: input_hash(s, base) for s in spec.sources}
        self.quarantine = b""
        self.benchmarks: dict[str, dict[str, str]] = {}

    def load(self) -> Stage:
        frames, removed, quarantined, keys, hits = [], [], {}, [], []
        names = ("rows.parquet", "removed.parquet", "counts.json", "quarantine.jsonl")
        for source in self.spec.sources:
            key = key_of("load", self.spec.kind.value, source.model_dump(mode="json"), self.inputs[source.name], self.tokenizer_hash)
            found = self.store.get(key, names)
            hits.append(found is not None)
            if found is None:
                tmp = self.store.root / f"quarantine-{key}.jsonl"
                writer = QuarantineWriter(tmp)
                try:
                    rows, gone, counts = load_source(source, self.spec.kind, self.base, writer, self.tokens)
                finally:
                    writer.close()
                found = {
                    "rows.parquet": rows,
                    "removed.parquet": gone.with_columns(pl.lit("").alias("detail")),
                    "counts.json": {f"quarantined: {k}": v for k, v in sorted(counts.quarantined.items())},
                    "quarantine.jsonl": tmp.read_bytes() if tmp.exists() else b"",
                }
                tmp.unlink(missing_ok=True)
                self.store.put(key, found)
            self.log(f"load {source.name}: {found['rows.parquet'].height} rows{' (cached)' if hits[-1] else ''}")
            frames.append(found["rows.parquet"])
            removed.append(found["removed.parquet"])
            if found["counts.json"]:
                quarantined[source.name] = found["counts.json"]
            self.quarantine += found["quarantine.jsonl"]
            keys.append(key)
        kept = pl.concat(frames)
        gone = pl.concat(removed)
        stage = Stage("load", key_of("loaded", keys), kept, _removed_rows(gone), cached=all(hits))
        stage.account = account(pl.concat([kept, gone.drop("reason", "detail")]), kept, gone, quarantined)
        return stage

    def classify(self, before: Stage) -> Stage:
        skills = self.spec.skills
        classifier = skills.classifier if skills else ClassifierSpec(method="rules")
        targets = set(skills.targets) if skills else None
        key = key_of("classify", before.key, classifier.model_dump(mode="json"), sorted(targets or []), self.spec.seed)
        found = self.store.get(key, ("rows.parquet",))
        cached = found is not None
        if found is None:
            found = {"rows.parquet": classify(before.kept, self.spec.kind, classifier, self.spec.seed, self.base, targets)}
            self.store.put(key, found)
        kept = found["rows.parquet"]
        decided = kept.group_by("skill", "skill_from").agg(pl.len().alias("rows")).sort("skill", "skill_from")
        stage = Stage("classify", key, kept, _removed_rows(kept.head(0).with_columns(reason=pl.lit(""), detail=pl.lit(""))), cached)
        stage.account = {"decided_by": {f"{s} ({f})": n for s, f, n in decided.iter_rows()}}
        return stage

    def step(self, index: int, before: Stage) -> Stage:
        item = self.spec.steps[index]
        extra: dict[str, Any] = {}
        if isinstance(item.body, DecontaminateStep):
            extra = self.benchmarks[f"{index}:{item.name}"] = _bench_hashes(item.body, self.base)
        key = key_of(
            "step", before.key, item.name, item.body.model_dump(mode="json"), extra, [(s.name, s.priority) for s in self.spec.sources]
        )
        found = self.store.get(key, ("rows.parquet", "removed.parquet"))
        cached = found is not None
        if found is None:
            ctx = StepContext(self.spec.kind, self.base, self.spec.sources, self.tokens)
            result = run_step(before.kept, item.body, ctx)
            found = {"rows.parquet": result.kept, "removed.parquet": _removed_rows(result.removed)}
            self.store.put(key, found)
        name = f"{index + 1}:{item.name}"
        stage = Stage(name, key, found["rows.parquet"], found["removed.parquet"], cached)
        stage.account = account(before.kept, stage.kept, stage.removed)
        self.log(f"step {name}: {stage.kept.height} rows kept, {stage.removed.height} removed{' (cached)' if cached else ''}")
        return stage


def pools_for(spec: MixSpec, frame: pl.DataFrame) -> list[tuple[str | None, list[tuple[Pool, pl.DataFrame]]]]:
    """The pools to draw from, grouped by skill when the spec sets skill targets (else one group)."""

    def pool(name: str, source: SourceSpec, rows: pl.DataFrame) -> Pool:
        amount = source.amount
        tokens = (
            rows["tokens"].to_numpy()
            if rows.height and rows["tokens"].null_count() == 0
            else (np.zeros(0, dtype=np.int64) if spec.tokenizer else None)
        )
        if amount is None:
            return Pool(name, rows.height, tokens, "natural", 1.0, source.max_repetition)
        return Pool(name, rows.height, tokens, amount.key, float(getattr(amount, amount.key)), source.max_repetition)  # type: ignore[arg-type]

    by_source = {s.name: frame.filter(pl.col("source") == s.name) for s in spec.sources}
    if spec.skills is None:
        return [(None, [(pool(s.name, s, by_source[s.name]), by_source[s.name]) for s in spec.sources])]
    groups: list[tuple[str | None, list[tuple[Pool, pl.DataFrame]]]] = []
    for skill in spec.skills.targets:
        members = []
        for s in spec.sources:
            rows = by_source[s.name].filter(pl.col("skill") == skill)
            if s.skill is None and s.amount is not None and s.amount.key in ("count", "tokens") and rows.height:
                raise MixError(
                    f"source {s.name!r} has no declared skill, so its rows spread over skills; "
                    f"give it a weight or a fraction, not a {s.amount.key}"
                )
            if rows.height or s.skill == skill:
                members.append((pool(f"{s.name}/{skill}", s, rows), rows))
        groups.append((skill, members))
    return groups


def _with_copies(rows: pl.DataFrame, indices: np.ndarray) -> pl.DataFrame:
    picked = rows[indices].with_columns(pl.Series("_pick", indices))
    return picked.with_columns(pl.int_range(pl.len()).over("_pick").cast(pl.Int32).alias("copy")).drop("_pick")


def draw_mixture(spec: MixSpec, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The mixture's rows (shuffled when the spec says so) and the targets against what was achieved."""
    unit = spec.skills.by if spec.skills else (spec.total.unit if spec.total else "rows")
    total = spec.total.value if spec.total else None
    parts, asked = [], {}
    groups = pools_for(spec, frame)
    skill_budgets: dict[str, int] = {}
    if spec.skills is not None:
        assert total is not None
        skill_budgets = dict(zip(spec.skills.targets, largest_remainder(total, list(spec.skills.targets.values())), strict=True))
    for skill, members in groups:
        pools = [p for p, _ in members]
        budget = skill_budgets[skill] if skill is not None else total
        if skill is not None and not pools and budget:
            raise MixError(f"skill {skill!r} should get {budget} {unit} but no source has rows of it")
        draws: dict[str, Draw] = allocate(pools, spec.seed, unit, budget, what=f"skill {skill!r}" if skill else "the mixture")
        for pool, rows in members:
            draw = draws[pool.name]
            asked[pool.name] = {"asked": draw.asked, "unit": draw.unit, "rows": int(len(draw.indices)), "tokens": draw.tokens}
            parts.append(_with_copies(rows, draw.indices))
    mixture = pl.concat(parts) if parts else frame.head(0).with_columns(pl.lit(0, dtype=pl.Int32).alias("copy"))
    if spec.output.shuffle and mixture.height:
        mixture = mixture[source_rng(spec.seed, "shuffle").permutation(mixture.height)]
    targets = {"unit": unit, "total": total, "pools": asked}
    if spec.skills is not None:
        targets["skills"] = {s: {"share": share, "budget": skill_budgets[s]} for s, share in spec.skills.targets.items()}
    return mixture, targets


def output_table(spec: MixSpec, mixture: pl.DataFrame) -> pl.DataFrame:
    return mixture.select([*schema_for(spec.kind).names, *OUTPUT_EXTRA])


def write_shards(frame: pl.DataFrame, out_dir: Path, shard_rows: int) -> list[Path]:
    """The mixture as ``mixture-00000-of-0000N.parquet`` files of at most ``shard_rows`` rows each."""
    for old in out_dir.glob("mixture-*.parquet"):
        old.unlink()
    shards = max(1, -(-frame.height // shard_rows))
    paths = []
    for i in range(shards):
        path = out_dir / f"mixture-{i:05d}-of-{shards:05d}.parquet"
        frame.slice(i * shard_rows, shard_rows).write_parquet(path, compression="zstd", statistics=True)
        paths.append(path)
    return paths


def achieved(mixture: pl.DataFrame, by: str) -> dict[str, dict[str, Any]]:
    if mixture.is_empty():
        return {}
    grouped = mixture.group_by(by).agg(pl.len().alias("rows"), pl.col("tokens").sum().alias("tokens")).sort(by)
    has_tokens = mixture["tokens"].null_count() == 0
    total_tokens = int(mixture["tokens"].sum()) if has_tokens else None
    return {
        str(k): {
            "rows": int(r),
            "tokens": int(t) if has_tokens else None,
            "row_share": r / mixture.height,
            "token_share": (t / total_tokens if total_tokens else None) if has_tokens else None,
        }
        for k, r, t in grouped.iter_rows()
    }


def run_mix(
    spec: MixSpec | str | Path,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
    on_stage: Callable[[str], None] | None = None,
    base: Path | None = None,
) -> MixResult:
    """Build the mixture ``spec`` (a validated MixSpec, or the path of a spec file) describes into ``out_dir``;
    relative paths in the spec are resolved against ``base`` (default: the spec file's folder; needed with a MixSpec)."""
    from thresher.mixing.report import write_report

    started = time.perf_counter()
    out = Path(out_dir)
    if not isinstance(spec, MixSpec):
        base = base or Path(spec).parent
        spec = load_spec(spec)
    assert isinstance(spec, MixSpec)
    if base is None:
        raise TypeError("run_mix needs base (where the spec's relative paths start) when given a MixSpec")
    out.mkdir(parents=True, exist_ok=True)
    store = StageStore(Path(cache_dir) if cache_dir else out / "cache")
    say = log or (lambda _: None)
    mixer = Mixer(spec, base, store, say)
    stages: list[Stage] = []
    runs = [mixer.load, lambda: mixer.classify(stages[-1])] + [(lambda i=i: mixer.step(i, stages[-1])) for i in range(len(spec.steps))]
    for run in runs:
        began = time.perf_counter()
        stages.append(run())
        stages[-1].seconds = time.perf_counter() - began
        if on_stage:
            on_stage(stages[-1].name)
    available = stages[-1].kept
    began = time.perf_counter()
    mixture, targets = draw_mixture(spec, available)
    files = write_shards(output_table(spec, mixture), out, spec.output.shard_rows)
    removed = pl.concat([s.removed.with_columns(pl.lit(s.name).alias("stage")) for s in stages]).select("stage", *REMOVED_COLUMNS)
    removed.write_parquet(out / "removed.parquet", compression="zstd")
    quarantine = out / "quarantine.jsonl"
    quarantine.unlink(missing_ok=True)
    if mixer.quarantine:
        quarantine.write_bytes(mixer.quarantine)
    manifest = {
        "thresher": thresher.__version__,
        "spec_hash": spec.hash(),
        "spec": spec.model_dump(mode="json") | {"steps": [{s.name: s.body.model_dump(mode="json")} for s in spec.steps]},
        "inputs": {s.name: {"where": s.path or f"hub:{s.hub}", "content_hash": mixer.inputs[s.name]} for s in spec.sources},
        "tokenizer": {"where": spec.tokenizer.path, "content_hash": mixer.tokenizer_hash} if spec.tokenizer else None,
        "benchmarks": mixer.benchmarks,
        "stages": [{"stage": s.name, **s.account} for s in stages] + [{"stage": "sample", **sample_account(available, mixture)}],
        "targets": targets,
        "achieved": {
            "rows": mixture.height,
            "tokens": int(mixture["tokens"].sum()) if mixture["tokens"].null_count() == 0 else None,
            "per_source": achieved(mixture, "source"),
            "per_skill": achieved(mixture, "skill"),
        },
        "files": [{"name": p.name, "content_hash": file_hash(p)} for p in files]
        + [{"name": "removed.parquet", "content_hash": file_hash(out / "removed.parquet")}],
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")
    write_report(manifest, out / "report.html")
    return MixResult(out, manifest, files, stages, time.perf_counter() - started, time.perf_counter() - began)
