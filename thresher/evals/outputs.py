"""What an eval writes: ``items.jsonl`` (one line per item: prompt, responses, verdicts), ``summary.json`` (per
benchmark: pass@1 ± standard error, pass@k, lengths, times) and ``report.html`` (the same, with the score
distribution and the first failed and passed answers to read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from thresher.evals.run import BenchResult, EvalConfig
from thresher.report.html import Markup, bars, escape, page, table

SUMMARY_COLUMNS = ("bench", "items", "samples", "pass@1", "± se", "mean score", "tokens", "cut", "seconds")


def summary_row(s: dict[str, Any]) -> list[object]:
    return [
        s["bench"],
        s["items"],
        s["samples"],
        f"{s['pass@1']:.3f}",
        f"{s['pass@1_se']:.3f}",
        f"{s['mean_score']:.3f}",
        f"{s['response_tokens']:.0f}",
        f"{s['cut_at_max_tokens']:.1%}",
        f"{s['generation_s'] + s['scoring_s']:.0f}",
    ]


def _examples(items: list[dict[str, Any]], limit: int = 3) -> str:
    """The first failed and passed items, prompt and first answer side by side."""
    parts = []
    for title, wanted in (("failed", False), ("passed", True)):
        chosen = [it for it in items if (it["solved"] > 0) == wanted][:limit]
        if not chosen:
            continue
        parts.append(f"<h3>first {title} items</h3>")
        for it in chosen:
            parts.append(
                f"<p class='muted'>{escape(it['id'])}: {escape(it['reasons'][0])}</p>"
                f"<div class='pair'><pre>{escape(it['prompt'])}</pre><pre>{escape(it['responses'][0])}</pre></div>"
            )
    return "".join(parts)


def report_html(config: EvalConfig, results: list[BenchResult]) -> str:
    body = [
        f"<p>model <code>{escape(config.model)}</code>; {config.samples} sample(s) per item at temperature "
        f"{config.sampling_temperature():g}; at most {config.max_new_tokens} new tokens"
        + "".join(f" ({n}: {t})" for n, t in config.max_new_tokens_for.items())
        + f"; seed {config.seed}</p>",
        table(list(SUMMARY_COLUMNS), [summary_row(r.summary) for r in results]),
    ]
    for r in results:
        s = r.summary
        body.append(f"<h2>{escape(r.name)}</h2><p class='muted'>{escape(r.path)}: {s['items']} items scored")
        body.append(f" of {s['readable_rows']} readable rows ({s['unreadable_rows']} unreadable)</p>")
        counts = [sum(1 for it in r.items if round(it["solved"] * s["samples"]) == c) for c in range(s["samples"] + 1)]
        body.append(
            bars(
                [f"{c}/{s['samples']}" for c in range(s["samples"] + 1)],
                [c / max(len(r.items), 1) for c in counts],
                "items by samples solved",
                x_label="share of items",
            )
        )
        body.append(Markup(_examples(r.items)))
    return page("eval", "".join(body))


def write_results(folder: Path, config: EvalConfig, results: list[BenchResult]) -> dict[str, Any]:
    """Write the three files into ``folder``; returns the summary (also the pipeline stage's)."""
    with (folder / "items.jsonl").open("wb") as out:
        for r in results:
            for item in r.items:
                out.write(orjson.dumps(item) + b"\n")
    summary = {"model": config.model, "config": config.model_dump(mode="json"), "benches": {r.name: r.summary for r in results}}
    (folder / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    (folder / "report.html").write_text(report_html(config, results), encoding="utf-8")
    return summary


def read_items(folder: Path) -> list[dict[str, Any]]:
    """The per-item results an eval wrote into ``folder``."""
    return [orjson.loads(line) for line in (folder / "items.jsonl").read_bytes().splitlines()]


def solved_by_bench(folder: Path) -> dict[str, dict[str, float]]:
    """Benchmark → item id → share of samples solved, from the eval in ``folder`` (empty when it wrote none):
    what paired comparisons of two evals read."""
    solved: dict[str, dict[str, float]] = {}
    for it in read_items(folder) if (folder / "items.jsonl").is_file() else []:
        solved.setdefault(it["bench"], {})[it["id"]] = it["solved"]
    return solved
