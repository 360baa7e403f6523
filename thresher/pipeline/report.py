"""The pipeline's one report: every stage's accounting and results, with plots, linking each stage's own report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thresher.pipeline.stages import REPORTS, read_metrics
from thresher.report.html import Markup, bars, line_plot, page, paired_bars, table


def _link(stage: Any, report_path: Path) -> str:
    own = REPORTS.get(stage.run)
    if own and (stage.folder / own).is_file():
        return f" <a href='{os.path.relpath(stage.folder / own, report_path.parent)}'>stage report</a>"
    return ""


def _dedup(summary: dict[str, Any]) -> str:
    rows = [[name, s["in"], s["kept"], s["removed"], s.get("quarantined", 0)] for name, s in summary.get("sources", {}).items()]
    rows.append(["all", summary["in"], summary["kept"], summary["removed"], summary["quarantined"]])
    return table(["source", "in", "kept", "removed", "quarantined"], rows)


def _decontaminate(summary: dict[str, Any]) -> str:
    d = summary["decontamination"]
    parts = [f"<p>in {d['in']} = clean {d['clean']} + removed {d['removed']} + quarantined {d['quarantined']}</p>"]
    benches = summary["benchmarks"]
    cells = {(r["source"], r["bench"]): r for r in summary["table"]}
    sources = sorted({r["source"] for r in summary["table"]})
    parts.append("<p>items leaked / training rows contaminated, per source and benchmark</p>")
    parts.append(table(["source", *benches], [[s, *(f"{cells[(s, b)]['items_leaked']} / {cells[(s, b)]['rows_contaminated']}"
                                                     if (s, b) in cells else "-" for b in benches)] for s in sources]))
    return "".join(parts)


def _top_matches(folder: Path, limit: int = 10) -> str:
    import polars as pl

    path = folder / "matches.parquet"
    if not path.is_file():
        return ""
    matches = pl.read_parquet(path)
    if "flagged" in matches.columns:
        matches = matches.filter(pl.col("flagged"))
    if matches.is_empty():
        return "<p>no flagged matches</p>"
    shown = [c for c in ("train_id", "bench", "bench_id", "method", "score", "train_text", "bench_text") if c in matches.columns]
    rows = matches.sort("score", descending=True).head(limit).select(shown).rows() if "score" in shown else matches.head(limit).rows()
    return "<p>top flagged matches</p>" + table(shown, [[f"{v:.3f}" if isinstance(v, float) else str(v)[:160] for v in row]
                                                        for row in rows], left=len(shown))


def _mix(summary: dict[str, Any]) -> str:
    achieved = summary["achieved"]
    targets = summary["targets"].get("skills", {})
    key = "token_share" if summary["targets"].get("unit") == "tokens" else "row_share"
    skills = list(achieved["per_skill"])
    plot = paired_bars(skills, [targets.get(s, {}).get("share") for s in skills],
                       [achieved["per_skill"][s][key] or 0.0 for s in skills], "mixture shares by skill: target vs achieved")
    steps = [[s.get("stage"), s.get("in", s.get("rows_in", "")), s.get("out", s.get("rows_out", "")),
              ", ".join(f"{k}={v}" for k, v in (s.get("removed") or {}).items()) if isinstance(s.get("removed"), dict)
              else s.get("removed", "")] for s in summary.get("accounting") or []]
    return f"<p>{achieved['rows']} rows</p>{plot}" + (table(["step", "in", "out", "removed"], steps) if steps else "")


def _synth(summary: dict[str, Any]) -> str:
    rows = [[name, o["in"], o["out"], o["removed"], ", ".join(f"{k}={v}" for k, v in (o.get("removed_by_reason") or {}).items())]
            for name, o in summary["outputs"].items()]
    gen = [[name, g.get("requested"), g.get("reused"), g.get("generated")] for name, g in summary["generation"].items()]
    hist = summary.get("pass_rate_histogram") or []
    plot = bars([f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(len(hist))], [h / max(sum(hist), 1) for h in hist],
                "share of verifier-scored prompts by pass rate") if sum(hist) else ""
    return table(["output", "prompts in", "rows out", "removed", "why"], rows) + \
        table(["generator", "requested", "reused", "generated"], gen) + plot


CURVES = {"sft": [("loss", ["loss"]), ("held-out loss", ["eval_loss"])],
          "dpo": [("loss", ["loss"]), ("reward accuracy", ["reward_accuracy", "eval_reward_accuracy"])],
          "rlvr": [("reward", ["reward_mean"]), ("KL", ["kl"]), ("held-out pass@1", ["eval_pass@1"]),
                   ("response length", ["response_length"])]}


def _training(stage: Any) -> str:
    records = read_metrics(stage.folder)
    plots = []
    for title, keys in CURVES[stage.run]:
        series = {k: ([r["step"] for r in records if k in r], [r[k] for r in records if k in r]) for k in keys}
        series = {k: v for k, v in series.items() if v[0]}
        if series:
            plots.append(line_plot(series, title))
    evals = stage.summary.get("evals") or []
    last = evals[-1][1] if evals else {}
    text = f"<p>{stage.summary.get('steps')} steps" + (f"; resumed from {stage.summary['resumed_from']}" if stage.summary.get("resumed_from") else "")
    text += "".join(f"; {k} {v:.4g}" for k, v in last.items() if isinstance(v, int | float)) + "</p>"
    return text + f"<div class='plots'>{''.join(plots)}</div>"


def write_report(stages: list[Any], path: Path) -> Path:
    overview = table(["stage", "runs", "state", "seconds", "folder"],
                     [[s.name, s.run, s.state, f"{s.seconds:.1f}" if s.seconds else "-",
                       Markup(f"<a href='{os.path.relpath(s.folder, path.parent)}'>{s.folder.name}</a>")] for s in stages])
    sections = [f"<h2>stages</h2>{overview}"]
    for stage in stages:
        body = {"dedup": lambda s: _dedup(s.summary), "decontaminate": lambda s: _decontaminate(s.summary) + _top_matches(s.folder),
                "mix": lambda s: _mix(s.summary), "synth": lambda s: _synth(s.summary)}.get(stage.run, _training)(stage)
        sections.append(f"<h2>{stage.name} ({stage.run}){_link(stage, path)}</h2>{body}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page("Thresher pipeline", "".join(sections)), encoding="utf-8")
    return path
