"""report.html of an audit: the Tülu 3 leakage table, score histograms per method, per-source bars,
and the strongest matches side by side with their shared words highlighted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from thresher.curation.normalize import normalize, words_of
from thresher.decontam.classes import BANDS
from thresher.decontam.matching import matchable
from thresher.report.html import Markup, bars, escape, heat, highlight_chars, highlight_words, histogram, page, table


def _leak_table(summary: dict[str, Any]) -> str:
    benches = list(summary["benchmarks"])
    sources = list(summary["sources"])
    cells = {(r["source"], r["bench"]): r for r in summary["table"]}
    rows, styles = [], []
    for source in sources:
        row: list[object] = [source, summary["sources"][source]["rows"]]
        style = ["", ""]
        for bench in benches:
            cell = cells[(source, bench)]
            if not cell["items_leaked"] and not cell["rows_contaminated"]:
                row.append("0")  # nothing leaked: one subdued 0, so the cells that matter stand out
                style.append("")
                continue
            rows_word = "row" if cell["rows_contaminated"] == 1 else "rows"
            row.append(
                Markup(
                    f"{100 * cell['items_leaked_share']:.1f}% <span class='muted'>({cell['items_leaked']})</span>"
                    f"<br>{100 * cell['rows_contaminated_share']:.2f}% <span class='muted'>({cell['rows_contaminated']} {rows_word})</span>"
                )
            )
            style.append(heat(cell["items_leaked_share"]))
        rows.append(row)
        styles.append(style)
    header = ["training source", "rows", *[f"{b} ({summary['benchmarks'][b]['items']} items)" for b in benches]]
    return table(header, rows, cell_style=styles)


def _words(texts: pl.Series) -> list[list[str]]:
    return words_of(normalize(matchable(texts))).to_list()


def _pairs(matches: pl.DataFrame, items: pl.DataFrame, top: int) -> str:
    """The first ``top`` of ``matches`` by score (one per training row and item), side by side."""
    flagged = matches.sort("score", descending=True).unique(["train_id", "bench", "bench_id"], keep="first", maintain_order=True).head(top)
    if flagged.is_empty():
        return "<p>No matches.</p>"
    parts = flagged.select("item").join(items, on="item", how="left")
    options = parts["options"] if "options" in parts.columns else pl.Series([""] * parts.height)
    prompts = parts.select(pl.concat_str([pl.col("question"), options], separator="\n"))["question"]
    train_words = _words(flagged["train_text"])
    part_words = {"question": _words(parts["question"]), "answer": _words(parts["answer"]), "prompt": _words(prompts)}
    blocks = []
    for i, m in enumerate(flagged.iter_rows(named=True)):
        spans = m["spans"] or []
        chars = m.get("char_spans") or []
        if chars:  # n-gram evidence in the original texts, shared runs marked
            left = highlight_chars(m["train_text"], [(s["train_start"], s["train_end"]) for s in chars])
            right = ""
            originals = {"question": parts["question"][i], "answer": parts["answer"][i], "prompt": prompts[i]}
            for part in [p for p in ("question", "prompt", "answer") if any(s["part"] == p for s in chars)]:
                marked = [(s["bench_start"], s["bench_end"]) for s in chars if s["part"] == part]
                right += f"<span class='muted'>{part}:</span> {highlight_chars(originals[part] or '', marked)}\n\n"
        elif spans:  # n-gram evidence: the shared words in both texts, normalized
            left = highlight_words(train_words[i], [(s["train_start"], s["train_end"]) for s in spans])
            right = ""
            shown = [p for p in ("question", "prompt", "answer") if any(s["part"] == p for s in spans)]
            for part in shown or ["question"]:
                words = part_words[part][i]
                if words:
                    marked = [(s["bench_start"], s["bench_end"]) for s in spans if s["part"] == part]
                    right += f"<span class='muted'>{part}:</span> {highlight_words(words, marked)}\n\n"
        else:
            left, right = escape(m["train_text"][:3000]), escape(m["bench_text"][:3000])
        scores = f"score {m['score']:.3f}"
        if m["question_score"] is not None or m["answer_score"] is not None:
            scores += f" (question {m['question_score'] or 0:.2f}, answer {m['answer_score'] or 0:.2f})"
        label = escape(m["match_class"]) + (f": {escape(m['class_note'])}" if m["class_note"] else "")
        blocks.append(
            f"<h3>{escape(m['bench'])} / {escape(m['bench_id'])} ← {escape(m['train_source'])} / {escape(m['train_id'])}"
            f" <span class='muted'>{escape(m['method'])}, {scores}, {label}</span></h3>"
            f"<div class='pair'><pre>{left}</pre><pre>{right}</pre></div>"
        )
    return "".join(blocks)


def _classes(summary: dict[str, Any], matches: pl.DataFrame, items: pl.DataFrame, top: int) -> str:
    """Every match at its method's threshold, grouped by class; each group browsable (its first ``top`` pairs)."""
    classes = summary["classes"]
    flag = set(classes["flag"])
    bands = list(next(iter(classes["at_threshold"].values()))["score_bands"])
    rows = [
        [c, "yes" if c in flag else "no", v["matches"], v["rows"], *[v["score_bands"][b] for b in bands]]
        for c, v in classes["at_threshold"].items()
    ]
    out = table(["class", "flags a row", "matches", "training rows", *[f"score {b}" for b in bands]], rows)
    at = matches.filter(pl.col("score") >= pl.col("method").replace_strict(_thresholds(summary), default=1.0))
    for c, v in classes["at_threshold"].items():
        if not v["matches"]:
            continue
        inner = ""
        for band, lo, hi in BANDS:
            count = v["score_bands"][band]
            if not count:
                continue
            shown = min(top, count)
            where = f"score >= {lo}" if hi > 1 else f"{lo} <= score < {hi}"
            rest = f"; all {count} in matches.parquet (match_class == '{c}', {where})" if shown < count else ""
            group = at.filter((pl.col("match_class") == c) & (pl.col("score") >= lo) & (pl.col("score") < hi))
            inner += (
                f"<details class='band'><summary>score {escape(band)}: {count} matches, the first {shown} by score"
                f"{escape(rest)}</summary>{_pairs(group, items, top)}</details>"
            )
        out += (
            f"<details><summary><b>{escape(c)}</b> — {v['matches']} matches, {v['rows']} rows"
            f"{'' if c in flag else ' (not flagged)'}</summary>{inner}</details>"
        )
    return out


def _thresholds(summary: dict[str, Any]) -> dict[str, float]:
    return {m: float(v["threshold"]) for m, v in summary["methods"].items()}


def _cache_note(summary: dict[str, Any]) -> str:
    cache = summary.get("notes", {}).get("embedding_cache")
    if not cache:
        return ""
    if not cache.get("path"):
        return " Embeddings: not cached (--no-cache)."
    return f" Embedding cache: {escape(str(cache['path']))}, {cache['megabytes']:.1f} MB."


def _calibration(summary: dict[str, Any]) -> str:
    calibration = summary.get("notes", {}).get("calibration")
    if not calibration:
        return ""
    methods = [m for m in calibration["unplanted_flagged"] if m != "any"]
    rows = [[variant, r["rows"], *[f"{r[m]:.3f}" for m in methods], f"{r['any']:.3f}"] for variant, r in calibration["recall"].items()]
    rows.append(
        [
            "corpus flag rate (untouched sampled rows)",
            calibration["unplanted_rows"],
            *[f"{calibration['unplanted_flagged'][m]:.2%}" for m in [*methods, "any"]],
        ]
    )
    estimate = calibration.get("false_positive_estimate")
    if estimate:
        rows.append(
            [
                f"false-positive estimate ({estimate['rows_matching_decoys']:.2%} of the rows match {estimate['decoys']} decoys, "
                f"scaled to {estimate['items']} items)",
                estimate["rows"],
                *["" for _ in methods],
                f"{estimate['flagged']:.2%}",
            ]
        )
    return (
        "<h2>Calibration on this corpus</h2><p class='muted'>Controlled variants of benchmark items planted into copies of "
        f"{calibration['unplanted_rows']} sampled training rows ({calibration['planted']} planted, seed {calibration['seed']}), "
        "scanned by the same detectors: the share of each variant each method finds. The last row: the share of the sampled "
        "rows, untouched, that are flagged — the corpus's own flag rate (real leaks and false positives together), not a "
        "false-positive rate. The false-positive estimate scans the same rows against decoys (the first half of one "
        "item joined to the second half of another: the benchmark's format and templates in text no corpus holds); a flag "
        "rate within twice that estimate is mostly template overlap. Planted rows are never written out.</p>"
        + table(["variant", "planted", *methods, "any method"], rows)
    )


def write_report(summary: dict[str, Any], matches: pl.DataFrame, items: pl.DataFrame, path: Path, top: int = 40) -> None:
    """The audit report as one self-contained HTML file."""
    totals = summary["totals"]
    methods = ", ".join(f"{m} (≥ {v['threshold']})" for m, v in summary["methods"].items())
    intro = (
        f"<p>{totals['rows_audited']} training rows ({totals['rows_quarantined']} quarantined) against "
        f"{totals['items']} benchmark items; <b>{totals['rows_contaminated']}</b> rows "
        f"({100 * totals['rows_contaminated_share']:.2f}%) match <b>{totals['items_leaked']}</b> items. "
        f"Methods: {escape(methods)}. "
        f"{summary['seconds']} s.{_cache_note(summary)}</p>"
    )
    method_table = table(
        ["method", "threshold", "matches recorded", "flagged", "rows contaminated", "items leaked"],
        [
            [m, v["threshold"], v["matches_recorded"], v["flagged"], v["rows_contaminated"], v["items_leaked"]]
            for m, v in summary["methods"].items()
        ],
    )
    plots = []
    for method, info in summary["methods"].items():
        scores = matches.filter(pl.col("method") == method)["score"].to_numpy()
        plots.append(
            histogram(
                scores, f"{method}: scores of recorded matches", threshold=info["threshold"], x_label=f"{method} score", y_label="matches"
            )
        )
    sources = list(summary["sources"])
    source_bars = bars(
        sources,
        [summary["sources"][s]["rows_contaminated"] / max(summary["sources"][s]["rows"], 1) for s in sources],
        "contaminated rows per training source",
        x_label="share of the source's rows",
    )
    bench_names = list(summary["benchmarks"])
    bench_bars = bars(
        bench_names,
        [summary["benchmarks"][b]["items_leaked"] / max(summary["benchmarks"][b]["items"], 1) for b in bench_names],
        "leaked items per benchmark",
        x_label="share of the benchmark's items",
    )
    body = (
        intro + "<h2>Leakage by training source and benchmark</h2><p class='muted'>Each cell: share of the benchmark's items "
        "found in the source (count), and share of the source's rows that contain one (count); 0: none.</p>"
        + _leak_table(summary)
        + "<h2>Methods</h2>"
        + method_table
        + f"<div class='plots'>{''.join(plots)}</div>"
        + _calibration(summary)
        + f"<h2>Sources and benchmarks</h2><div class='plots'>{source_bars}{bench_bars}</div>"
        + "<h2>Matches by class</h2><p class='muted'>What kind of leak each match at its method's threshold is: "
        "verbatim, reformatted (same words after layout and LaTeX normalization), numbers_changed (the item's template "
        "with other numbers), partial, rephrase (found by meaning), shared_boilerplate (only text many items or rows "
        "share). Open a class to see its pairs: left the training row, right the benchmark item, shared runs marked.</p>"
        + _classes(summary, matches, items, top)
        + f"<h2>Strongest flagged matches (top {top})</h2>"
        + _pairs(matches.filter("flagged"), items, top)
    )
    partial = path.with_name(path.name + ".partial")
    partial.write_text(page("Thresher contamination audit", body), encoding="utf-8")
    partial.replace(path)
