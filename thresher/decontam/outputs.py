"""What an audit writes: matches.parquet, summary.json (the Tülu 3 table shape), and for decontamination
clean.parquet and removed.parquet, with ``in = clean + removed (+ quarantined)``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from thresher.accounting import Account
from thresher.convert import canonical_batches
from thresher.decontam.audit import AuditResult
from thresher.decontam.classes import BANDS, CLASSES
from thresher.errors import InputError
from thresher.io.sources import resolve_input
from thresher.io.writers import open_writer
from thresher.records import Kind, schema_for


def write_matches(result: AuditResult, path: Path) -> None:
    """One row per (training row, benchmark item, method) match."""
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".partial")
    pq.write_table(result.matches.drop("row", "item").to_arrow(), partial)
    partial.replace(path)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def thresholds(config: Any) -> dict[str, float]:
    return {m: config.threshold(m) for m in config.methods if m != "judge" or config.judge}


def summary(result: AuditResult) -> dict[str, Any]:
    """Per (training source x benchmark): items leaked and rows contaminated, as counts and shares; per method; totals."""
    flagged = result.matches.filter("flagged")
    items_per_bench = {b.name: b.items.height for b in result.benches}
    table = []
    for source, rows in sorted(result.rows_per_source.items()):
        for bench, items in items_per_bench.items():
            hits = flagged.filter((pl.col("train_source") == source) & (pl.col("bench") == bench))
            leaked, contaminated = hits["item"].n_unique(), hits["row"].n_unique()
            table.append(
                {
                    "source": source,
                    "bench": bench,
                    "items_leaked": leaked,
                    "items": items,
                    "items_leaked_share": _share(leaked, items),
                    "rows_contaminated": contaminated,
                    "rows": rows,
                    "rows_contaminated_share": _share(contaminated, rows),
                }
            )
    by_method = {}
    for method in result.config.methods:
        part = result.matches.filter(pl.col("method") == method)
        hit = part.filter("flagged")
        by_method[method] = {
            "threshold": result.config.threshold(method),
            "matches_recorded": part.height,
            "flagged": hit.height,
            "rows_contaminated": hit["row"].n_unique(),
            "items_leaked": hit["item"].n_unique(),
        }
    reached = result.matches.filter(pl.col("score") >= pl.col("method").replace_strict(thresholds(result.config), default=1.0))
    by_class = {
        c: {
            "matches": part.height,
            "flagged": part.filter("flagged").height,
            "rows": part["row"].n_unique(),
            "score_bands": {band: part.filter(pl.col("score") >= lo).filter(pl.col("score") < hi).height for band, lo, hi in BANDS},
        }
        for c in CLASSES
        for part in [reached.filter(pl.col("match_class") == c)]
    }
    quarantined = sum(c.quarantined_total for c in result.counts.values())
    total_rows = result.rows
    contaminated = flagged["row"].n_unique()
    return {
        "benchmarks": {
            b.name: {
                "items": b.items.height,
                "origin": b.origin,
                "skipped_without_text": b.skipped_empty,
                "items_leaked": flagged.filter(pl.col("bench") == b.name)["item"].n_unique(),
            }
            for b in result.benches
        },
        "sources": {
            s: {"rows": n, "rows_contaminated": flagged.filter(pl.col("train_source") == s)["row"].n_unique()}
            for s, n in sorted(result.rows_per_source.items())
        },
        "table": table,
        "methods": by_method,
        "classes": {"flag": list(result.config.flag), "at_threshold": by_class},
        "totals": {
            "rows_in": total_rows + quarantined,
            "rows_audited": total_rows,
            "rows_quarantined": quarantined,
            "rows_contaminated": contaminated,
            "rows_contaminated_share": _share(contaminated, total_rows),
            "items": sum(items_per_bench.values()),
            "items_leaked": flagged["item"].n_unique(),
        },
        "notes": result.notes,
        "config": asdict(result.config),
        "inputs": {name: c.as_dict() for name, c in result.counts.items()},
        "seconds": round(result.seconds, 3),
    }


REMOVED_EXTRA = [
    pa.field("bench", pa.string()),
    pa.field("bench_id", pa.string()),
    pa.field("method", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("evidence", pa.string()),
]


def write_split(result: AuditResult, train: list[str], out_dir: Path, kind: Kind | None = None) -> dict[str, int]:
    """Second pass: every audited row to clean.parquet or removed.parquet (with the match that removed it), in input order."""
    worst = result.flagged_rows()
    removed_rows = worst["row"].to_numpy()
    by_row = {name: worst[name].to_numpy() for name in ("bench", "bench_id", "method", "score", "evidence")}
    found_kind: Kind | None = kind
    clean = removed = None
    start = written_clean = written_removed = 0
    try:
        for name in train:
            for batch_kind, table in canonical_batches(
                resolve_input(name), found_kind, None, None, result.config.batch_rows, skip_bad=True
            ):
                if found_kind is None or clean is None:
                    found_kind = batch_kind
                    clean = open_writer(out_dir / "clean.parquet", batch_kind)
                    removed = open_writer(out_dir / "removed.parquet", batch_kind, pa.schema(list(schema_for(batch_kind)) + REMOVED_EXTRA))
                if batch_kind != found_kind:
                    raise InputError(
                        f"{name}: rows are {batch_kind.value}, but earlier inputs are {found_kind.value}; "
                        "decontaminate one kind at a time (audit takes mixed kinds)"
                    )
                stop = start + table.num_rows
                lo, hi = np.searchsorted(removed_rows, [start, stop])
                is_removed = np.zeros(table.num_rows, dtype=bool)
                is_removed[removed_rows[lo:hi] - start] = True
                clean.write_table(table.filter(pa.array(~is_removed)))
                written_clean += int((~is_removed).sum())
                if hi > lo:
                    part = table.take(pa.array(removed_rows[lo:hi] - start))
                    for extra in REMOVED_EXTRA:
                        part = part.append_column(extra, pa.array(by_row[extra.name][lo:hi], type=extra.type))
                    assert removed is not None
                    removed.write_table(part)
                    written_removed += hi - lo
                start = stop
        if start != result.rows:
            raise InputError(f"the inputs changed during decontamination: read {start} rows the second time, {result.rows} the first")
        if clean is None:  # no rows at all: empty outputs of the asked (or default) kind
            found_kind = found_kind or Kind.SFT
            clean = open_writer(out_dir / "clean.parquet", found_kind)
            removed = open_writer(out_dir / "removed.parquet", found_kind, pa.schema(list(schema_for(found_kind)) + REMOVED_EXTRA))
        clean.close()
        assert removed is not None
        removed.close()
    except BaseException:
        for writer in (clean, removed):
            if writer is not None:
                writer.abort()
        raise
    return {"clean": written_clean, "removed": written_removed}


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def audit_to_folder(
    train: list[str],
    bench: list[str],
    out: Path,
    bench_fields: list[str] | None,
    config: Any,
    kind: Kind | None = None,
    on_error: str = "fail",
    top: int = 40,
    split: bool = True,
    on_rows: Any = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Audit ``train`` against the benchmarks ``bench`` and write matches.parquet, summary.json and report.html into
    ``out``; with ``split`` also clean.parquet and removed.parquet (every row accounted for). With ``executor``
    (``thresher.executors.Executor``) the scan runs on datatrove's executors; the outputs are the same. The summary."""
    from thresher.accounting import QuarantineWriter
    from thresher.decontam.audit import run_audit
    from thresher.decontam.benchmarks import load_benchmarks
    from thresher.decontam.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    benches = load_benchmarks(bench, bench_fields)
    quarantine = QuarantineWriter(out / "quarantine.jsonl") if on_error == "quarantine" else None
    try:
        result = run_audit(train, benches, config, quarantine, kind, on_rows=on_rows, executor=executor, work_dir=out)
    finally:
        if quarantine is not None:
            quarantine.close()
    report = summary(result)
    if split:
        written = write_split(result, train, out, kind)
        quarantined = report["totals"]["rows_quarantined"]
        report["decontamination"] = {
            "in": report["totals"]["rows_in"],
            "clean": written["clean"],
            "removed": written["removed"],
            "quarantined": quarantined,
            "balanced": report["totals"]["rows_in"] == written["clean"] + written["removed"] + quarantined,
        }
        decontamination_account(report).check()
    write_matches(result, out / "matches.parquet")
    write_json(report, out / "summary.json")
    write_report(report, result.matches, result.items, out / "report.html", top=top)
    return report


def decontamination_account(report: dict[str, Any]) -> Account:
    """A decontamination's account from its summary: in = clean + removed (leaking a benchmark item) + quarantined (by category)."""
    d = report["decontamination"]
    quarantined = Account.summed("inputs", (Account.from_dict(a) for a in report["inputs"].values())).quarantined
    return Account.of("decontaminate", d["in"], d["clean"], {"leaks a benchmark item": d["removed"]}, quarantined)
