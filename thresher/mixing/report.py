"""report.html of a mixture: target against achieved shares per skill and per source (tables and
bars), the rows of every source through each stage, and what each stage removed and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thresher.report.html import Markup, escape, page, paired_bars, table


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def _num(value: int | float | None) -> str:
    return "" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


def _skills(manifest: dict[str, Any]) -> str:
    got = manifest["achieved"]["per_skill"]
    targets = manifest["targets"].get("skills", {})
    unit = manifest["targets"]["unit"]
    share_key = "token_share" if unit == "tokens" else "row_share"
    names = list(targets) + sorted(set(got) - set(targets))
    rows = [
        [
            s,
            _pct(targets[s]["share"]) if s in targets else "",
            _num(targets[s]["budget"]) if s in targets else "",
            _num(got.get(s, {}).get("rows", 0)),
            _num(got.get(s, {}).get("tokens")),
            _pct(got.get(s, {}).get(share_key, 0.0)),
        ]
        for s in names
    ]
    header = ["skill", "target share", f"target {unit}", "rows", "tokens", f"achieved share ({unit})"]
    plot = paired_bars(
        names,
        [targets[s]["share"] if s in targets else None for s in names],
        [got.get(s, {}).get(share_key) or 0.0 for s in names],
        f"skill shares by {unit}",
    )
    return table(header, rows) + plot


def _sources(manifest: dict[str, Any]) -> str:
    pools = manifest["targets"]["pools"]
    got = manifest["achieved"]["per_source"]
    rows = [[name, p["unit"], _num(p["asked"]), _num(p["rows"]), _num(p["tokens"])] for name, p in pools.items()]
    pool_table = table(["pool", "asked in", "asked", "rows drawn", "tokens drawn"], rows)
    unit = manifest["targets"]["unit"]
    share_key = "token_share" if unit == "tokens" else "row_share"
    names = sorted(got)
    plot = paired_bars(names, [None] * len(names), [got[n][share_key] or 0.0 for n in names], f"source shares by {unit}")
    return pool_table + plot


def _funnel(manifest: dict[str, Any]) -> str:
    stages = [s for s in manifest["stages"] if "per_source" in s and s["stage"] != "sample"]
    sample = next(s for s in manifest["stages"] if s["stage"] == "sample")
    sources = list(manifest["inputs"])
    header = ["source", "read", *[s["stage"] for s in stages], "drawn (distinct)", "copies"]
    rows = []
    for source in sources:
        row: list[object] = [source, _num(stages[0]["per_source"].get(source, {}).get("in", {}).get("rows", 0))]
        row += [_num(s["per_source"].get(source, {}).get("out", {}).get("rows", 0)) for s in stages]
        drawn = sample["per_source"].get(source, {})
        row += [_num(drawn.get("distinct", 0)), _num(drawn.get("copies", 0))]
        rows.append(row)
    return table(header, rows)


def _removed(manifest: dict[str, Any]) -> str:
    rows = []
    for stage in manifest["stages"]:
        for source, entry in stage.get("per_source", {}).items():
            for reason, n in entry.get("removed", {}).get("by_reason", {}).items():
                rows.append([stage["stage"], source, reason, _num(n)])
    if not rows:
        return "<p class='muted'>No stage removed any row.</p>"
    return table(["stage", "source", "reason", "rows"], rows, left=3)


def _classified(manifest: dict[str, Any]) -> str:
    stage = next((s for s in manifest["stages"] if s["stage"] == "classify"), None)
    if not stage or not stage.get("decided_by"):
        return ""
    rows = [[k, _num(v)] for k, v in stage["decided_by"].items()]
    return "<h2>How rows got their skill</h2>" + table(["skill (decided by)", "rows"], rows)


def write_report(manifest: dict[str, Any], path: Path) -> None:
    achieved = manifest["achieved"]
    spec = manifest["spec"]
    summary = (
        f"<p>{_num(achieved['rows'])} {escape(spec['kind'])} rows"
        + (f", {_num(achieved['tokens'])} tokens" if achieved["tokens"] is not None else "")
        + f"; seed {spec['seed']}; spec hash <code>{manifest['spec_hash']}</code>.</p>"
    )
    body = [
        summary,
        "<h2>Skills: target and achieved</h2>",
        _skills(manifest),
        "<h2>Sources: asked and drawn</h2>",
        _sources(manifest),
        "<h2>Rows of each source through the stages</h2>",
        _funnel(manifest),
        "<h2>Removed rows by stage and reason</h2>",
        _removed(manifest),
        _classified(manifest),
        "<h2>Files</h2>",
        table(["file", "content hash"], [[f["name"], Markup(f"<code>{f['content_hash']}</code>")] for f in manifest["files"]]),
    ]
    path.write_text(page("Thresher mixture report", "".join(body)), encoding="utf-8")
