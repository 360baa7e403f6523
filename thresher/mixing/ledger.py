"""The account of a mixture: per stage, per source and per skill, rows and tokens in and out and the
rows removed by reason. Every stage must balance (``in = out + removed``) or the mix stops."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from thresher.accounting import Account
from thresher.errors import AccountingError

GROUPS = ("source", "skill")


class LedgerError(AccountingError):
    """A mixing step that lost or invented rows: a bug, never a user error."""


def _sums(frame: pl.DataFrame, by: str) -> dict[str, dict[str, int | None]]:
    if frame.is_empty():
        return {}
    has_tokens = frame["tokens"].null_count() < frame.height
    grouped = frame.group_by(by).agg(pl.len().alias("rows"), pl.col("tokens").sum().alias("tokens")).sort(by)
    return {str(key): {"rows": int(rows), "tokens": int(tokens) if has_tokens else None} for key, rows, tokens in grouped.iter_rows()}


def _reasons(removed: pl.DataFrame, by: str) -> dict[str, dict[str, int]]:
    if removed.is_empty():
        return {}
    grouped = removed.group_by(by, "reason").agg(pl.len().alias("rows")).sort(by, "reason")
    out: dict[str, dict[str, int]] = {}
    for key, reason, rows in grouped.iter_rows():
        out.setdefault(str(key), {})[reason] = int(rows)
    return out


def _zero() -> dict[str, int | None]:
    return {"rows": 0, "tokens": None}


def account(
    before: pl.DataFrame, kept: pl.DataFrame, removed: pl.DataFrame, extra_in: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    """Rows and tokens in, out and removed (by reason) per source and per skill, checked to balance.
    ``extra_in`` adds rows that never became frame rows (quarantined at load), by source and reason."""
    result: dict[str, Any] = {}
    for by in GROUPS:
        ins, outs, gone = _sums(before, by), _sums(kept, by), _sums(removed, by)
        reasons = _reasons(removed, by)
        if by == "source" and extra_in:
            for source, by_reason in extra_in.items():
                for reason, rows in by_reason.items():
                    reasons.setdefault(source, {})[reason] = rows
                    ins.setdefault(source, _zero())
                    ins[source] = {"rows": int(ins[source]["rows"] or 0) + rows, "tokens": ins[source]["tokens"]}
                    gone.setdefault(source, _zero())
                    gone[source] = {"rows": int(gone[source]["rows"] or 0) + rows, "tokens": gone[source]["tokens"]}
        table = {}
        for key in sorted(set(ins) | set(outs) | set(gone)):
            rows_in, rows_out = ins.get(key, _zero()), outs.get(key, _zero())
            rows_gone = gone.get(key, _zero())
            entry = {"in": rows_in, "out": rows_out, "removed": {**rows_gone, "by_reason": dict(sorted(reasons.get(key, {}).items()))}}
            entry["balanced"] = rows_in["rows"] == int(rows_out["rows"] or 0) + int(rows_gone["rows"] or 0)
            if not entry["balanced"]:
                raise LedgerError(f"{by} {key}: {rows_in['rows']} rows in, {rows_out['rows']} out, {rows_gone['rows']} removed")
            table[key] = entry
        result[f"per_{by}"] = table
    total_in = before.height + sum(sum(r.values()) for r in (extra_in or {}).values())
    result["total"] = {"in": total_in, "out": kept.height, "removed": total_in - kept.height}
    if total_in != kept.height + removed.height + sum(sum(r.values()) for r in (extra_in or {}).values()):
        raise LedgerError(f"{total_in} rows in, {kept.height} out, {removed.height} removed")
    return result


def sample_account(available: pl.DataFrame, mixture: pl.DataFrame) -> dict[str, Any]:
    """What sampling did per source and per skill: rows available, drawn (with repeats), distinct rows
    drawn, extra copies from upsampling, and rows not drawn (available = distinct + not drawn)."""
    result: dict[str, Any] = {}
    firsts = mixture.filter(pl.col("copy") == 0)
    for by in GROUPS:
        have, drawn, distinct = _sums(available, by), _sums(mixture, by), _sums(firsts, by)
        table = {}
        for key in sorted(set(have) | set(drawn)):
            n_have = int(have.get(key, _zero())["rows"] or 0)
            n_distinct = int(distinct.get(key, _zero())["rows"] or 0)
            n_drawn = int(drawn.get(key, _zero())["rows"] or 0)
            table[key] = {
                "available": have.get(key, _zero()),
                "out": drawn.get(key, _zero()),
                "distinct": n_distinct,
                "copies": n_drawn - n_distinct,
                "not_drawn": n_have - n_distinct,
            }
            if n_distinct > n_have:
                raise LedgerError(f"{by} {key}: {n_distinct} distinct rows drawn from {n_have}")
        result[f"per_{by}"] = table
    return result


def step_account(entry: dict[str, Any]) -> Account | None:
    """The ``Account`` of one step as ``account`` recorded it in the manifest (rows in = out + removed by reason;
    rows quarantined at load are removed with their reason); None for a step that moves no rows (classify, sample)."""
    if "total" not in entry:
        return None
    reasons: Counter[str] = Counter()
    for source in entry.get("per_source", {}).values():
        reasons.update(source["removed"]["by_reason"])
    total = entry["total"]
    return Account.of(entry["stage"], total["in"], total["out"], dict(reasons)).check()
