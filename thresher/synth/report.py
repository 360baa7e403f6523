"""report.html of a synthesis run: generation and cache reuse, what each output kept and why prompts
were removed, and the pass rates of the prompts (RLVR difficulty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thresher.report.html import Markup, bars, escape, page, table


def _pairs(examples: list[dict[str, Any]]) -> str:
    parts = []
    for ex in examples:
        parts.append(
            f"<p><b>{escape(ex['id'])}</b>: {escape(ex['prompt'][:400])}</p><div class='pair'>"
            f"<div>chosen ({escape(ex['chosen_note'])})<pre>{escape(ex['chosen'][:1500])}</pre></div>"
            f"<div>rejected ({escape(ex['rejected_note'])})<pre>{escape(ex['rejected'][:1500])}</pre></div></div>"
        )
    return "".join(parts) or "<p>No pairs.</p>"


def write_report(manifest: dict[str, Any], path: Path, examples: list[dict[str, Any]] | None = None) -> None:
    gen_rows = [
        [name, g["requested"], g["reused"], g["generated"], g["tokens"], f"{g['tokens_per_s']:,.0f}"]
        for name, g in manifest["generation"].items()
    ]
    out_rows = [
        [name, o["in"], o["out"], o["removed"], "; ".join(f"{k}: {v}" for k, v in o["removed_by_reason"].items())]
        for name, o in manifest["outputs"].items()
    ]
    hist = manifest["pass_rate_histogram"]
    labels = [f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(len(hist))]
    total = max(sum(hist), 1)
    sources = [[s["name"], s["in"], s["out"], s["removed"], s["quarantined"]] for s in manifest["sources"]]
    body = "".join(
        [
            f"<p>{manifest['prompts']} prompts × {manifest['samples_per_prompt']} samples, {manifest['seconds']:.1f} s. "
            f"Request cache: {escape(manifest['cache']['path'])} ({manifest['cache']['stored']} completions).</p>",
            "<h2>Generation</h2>",
            table(["requests for", "completions", "reused from cache", "generated", "tokens", "tokens/s"], gen_rows),
            "<h2>Outputs</h2>",
            table(["output", "prompts in", "rows out", "removed", "removed by reason"], out_rows),
            "<h2>Pass rate per prompt</h2>",
            Markup(bars(labels, [h / total for h in hist], "share of prompts by verifier pass rate", x_label="share of prompts"))
            if sum(hist)
            else "<p>No verifier scores.</p>",
            "<h2>Prompt sources</h2>",
            table(["source", "in", "out", "removed", "quarantined"], sources),
            "<h2>Example pairs</h2>",
            _pairs(examples or []),
        ]
    )
    path.write_text(page(f"thresher synth — {manifest['model']}", body), encoding="utf-8")
