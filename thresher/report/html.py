"""Self-contained HTML reports: tables, inline SVG plots, no JavaScript and no network."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}.muted{color:#777}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;margin:1em 0 2em}
.pair pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;border:1px solid #e4e4e4;padding:.6em;margin:0;max-height:22em;overflow:auto}
mark{background:#ffd54f}.plots{display:flex;flex-wrap:wrap;gap:1.5em}
td.z{color:#bbb}.nodata{color:#777;font-style:italic;border:1px dashed #ccc;padding:.6em 1em;display:inline-block}
"""


def escape(value: object) -> str:
    return html.escape(str(value))


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1, cell_style: Sequence[Sequence[str]] | None = None) -> str:
    """A table whose first ``left`` columns are left-aligned; cells are escaped unless they are already markup (``Markup``)."""
    head = "".join(f"<th class='{'l' if i < left else ''}'>{escape(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, value in enumerate(row):
            style = f" style='{cell_style[r][i]}'" if cell_style and cell_style[r][i] else ""
            text = value if isinstance(value, Markup) else escape(value)
            classes = ("l " if i < left else "") + ("z" if not isinstance(value, Markup) and is_zero(value) else "")
            cells.append(f"<td class='{classes.strip()}'{style}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class Markup(str):
    """Text that is already HTML."""


_ZERO = re.compile(r"0(?:\.0+)?%?(?: \(0(?: rows)?\))?|-")


def is_zero(value: object) -> bool:
    """A cell that says nothing happened (0, 0.0%, 0.00% (0 rows), -): shown subdued so the others stand out."""
    return bool(_ZERO.fullmatch(str(value).strip()))


def no_data(title: str, why: str = "no data") -> str:
    """What a chart shows instead of empty axes."""
    return f"<div class='nodata' role='img' aria-label='{escape(title)}'>{escape(title)}: {escape(why)}</div>"


def _axis_titles(width: int, height: int, x_label: str, y_label: str, axis_y: float, pad_l: int) -> list[str]:
    parts = []
    if x_label:
        parts.append(
            f"<text x='{pad_l + (width - pad_l) / 2:.0f}' y='{axis_y + 26:.0f}' text-anchor='middle' font-size='11' fill='#555'>{escape(x_label)}</text>"
        )
    if y_label:
        mid = (axis_y + 22) / 2
        parts.append(
            f"<text x='11' y='{mid:.0f}' text-anchor='middle' font-size='11' fill='#555' transform='rotate(-90 11 {mid:.0f})'>{escape(y_label)}</text>"
        )
    return parts


def heat(share: float) -> str:
    """A background from white (0) to red (1) for a share."""
    level = int(255 - 155 * min(max(share, 0.0), 1.0) ** 0.5) if share > 0 else 255
    return f"background:rgb(255,{level},{level})"


def histogram(
    values: np.ndarray,
    title: str,
    threshold: float | None = None,
    bins: int = 20,
    lo: float = 0.0,
    hi: float = 1.0,
    width: int = 360,
    height: int = 196,
    x_label: str = "score",
    y_label: str = "count",
) -> str:
    """An SVG histogram of ``values`` on [lo, hi], with a dashed line at ``threshold`` and axis titles."""
    if len(values) == 0:
        return no_data(title)
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    pad_l, pad_b, pad_t = 48, 44, 22
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    top = max(int(counts.max()) if len(counts) else 0, 1)
    bar_w = plot_w / bins
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
        f"<text x='{width / 2}' y='14' text-anchor='middle' font-size='13'>{escape(title)}</text>",
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / top
        parts.append(
            f"<rect x='{pad_l + i * bar_w:.1f}' y='{pad_t + plot_h - h:.1f}' width='{bar_w - 1:.1f}' height='{h:.1f}' fill='#5c7cfa'>"
            f"<title>{edges[i]:.2f}–{edges[i + 1]:.2f}: {c}</title></rect>"
        )
    axis_y = pad_t + plot_h
    parts.append(f"<line x1='{pad_l}' y1='{axis_y}' x2='{pad_l + plot_w}' y2='{axis_y}' stroke='#444'/>")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pad_l + plot_w * frac
        parts.append(f"<text x='{x:.1f}' y='{axis_y + 16}' text-anchor='middle' font-size='11'>{lo + (hi - lo) * frac:.2f}</text>")
    parts.append(f"<text x='{pad_l - 4}' y='{pad_t + 8}' text-anchor='end' font-size='11'>{top}</text>")
    parts.append(f"<text x='{pad_l - 4}' y='{axis_y}' text-anchor='end' font-size='11'>0</text>")
    parts += _axis_titles(width, height, x_label, y_label, axis_y, pad_l)
    if threshold is not None and lo <= threshold <= hi:
        x = pad_l + plot_w * (threshold - lo) / (hi - lo)
        parts.append(f"<line x1='{x:.1f}' y1='{pad_t}' x2='{x:.1f}' y2='{axis_y}' stroke='#e03131' stroke-dasharray='4 3'/>")
    parts.append("</svg>")
    return "".join(parts)


def bars(labels: Sequence[str], values: Sequence[float], title: str, as_percent: bool = True, width: int = 520, x_label: str = "") -> str:
    """Horizontal SVG bars, one per label, the value written beside each; ``x_label`` names what the bars measure."""
    if not labels or not any(values):
        return no_data(title, "nothing to show (no rows, or all zero)")
    row_h, pad_l, pad_t = 20, 160, 24
    height = pad_t + row_h * max(len(labels), 1) + 8 + (18 if x_label else 0)
    top = max(max(values, default=0.0), 1e-12)
    plot_w = width - pad_l - 70
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
        f"<text x='{width / 2}' y='14' text-anchor='middle' font-size='13'>{escape(title)}</text>",
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = pad_t + i * row_h
        w = plot_w * value / top
        shown = f"{100 * value:.2f}%" if as_percent else f"{value:g}"
        parts.append(f"<text x='{pad_l - 6}' y='{y + 14}' text-anchor='end' font-size='12'>{escape(label[:24])}</text>")
        parts.append(f"<rect x='{pad_l}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' fill='#f76707'/>")
        parts.append(f"<text x='{pad_l + w + 4:.1f}' y='{y + 14}' font-size='11'>{shown}</text>")
    if x_label:
        parts.append(
            f"<text x='{pad_l + plot_w / 2:.0f}' y='{height - 6}' text-anchor='middle' font-size='11' fill='#555'>{escape(x_label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def paired_bars(labels: Sequence[str], target: Sequence[float | None], got: Sequence[float], title: str, width: int = 560) -> str:
    """Two horizontal SVG bars per label, both as percentages: a grey target (when there is one) above the achieved
    share; the legend names only the bars drawn."""
    if not labels:
        return no_data(title)
    row_h, pad_l, pad_t = 30, 160, 40
    height = pad_t + row_h * max(len(labels), 1) + 8
    top = max([v for v in (*target, *got) if v is not None] + [1e-12])
    plot_w = width - pad_l - 70
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
        f"<text x='{width / 2}' y='14' text-anchor='middle' font-size='13'>{escape(title)}</text>",
    ]
    if any(t is not None for t in target):
        parts.append(
            f"<rect x='{pad_l}' y='22' width='10' height='8' fill='#adb5bd'/><text x='{pad_l + 14}' y='30' font-size='11'>target</text>"
        )
    parts.append(
        f"<rect x='{pad_l + 70}' y='22' width='10' height='8' fill='#1c7ed6'/><text x='{pad_l + 84}' y='30' font-size='11'>achieved</text>"
    )
    for i, (label, want, value) in enumerate(zip(labels, target, got, strict=True)):
        y = pad_t + i * row_h
        parts.append(f"<text x='{pad_l - 6}' y='{y + 17}' text-anchor='end' font-size='12'>{escape(label[:24])}</text>")
        if want is not None:
            w = plot_w * want / top
            parts.append(f"<rect x='{pad_l}' y='{y + 2}' width='{w:.1f}' height='11' fill='#adb5bd'/>")
            parts.append(f"<text x='{pad_l + w + 4:.1f}' y='{y + 11}' font-size='10'>{100 * want:.2f}%</text>")
        w = plot_w * value / top
        parts.append(f"<rect x='{pad_l}' y='{y + 14}' width='{w:.1f}' height='11' fill='#1c7ed6'/>")
        parts.append(f"<text x='{pad_l + w + 4:.1f}' y='{y + 24}' font-size='10'>{100 * value:.2f}%</text>")
    parts.append("</svg>")
    return "".join(parts)


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    width: int = 420,
    height: int = 216,
    x_label: str = "step",
    y_label: str | None = None,
) -> str:
    """An SVG line chart: one polyline per named (x, y) series, on shared axes with their ranges and titles labelled
    (``y_label`` defaults to the series' name when there is one). Fewer than two points say so instead of drawing
    a flat line."""
    colours = ("#1c7ed6", "#f76707", "#2f9e44", "#ae3ec9", "#e03131")
    points = [(float(x), float(y)) for xs, ys in series.values() for x, y in zip(xs, ys, strict=True) if np.isfinite(y)]
    if len({p[0] for p in points}) < 2:
        shown = "; ".join(f"{name} {float(ys[-1]):.4g} at {x_label} {xs[-1]:g}" for name, (xs, ys) in series.items() if len(ys))
        return no_data(title, f"one point only ({shown})" if shown else "no data")
    if len({p[1] for p in points}) == 1:  # a flat line says less than its value (e.g. KL 0 without a reference model)
        return no_data(title, f"constant {points[0][1]:.4g} over {x_label} {min(p[0] for p in points):g}–{max(p[0] for p in points):g}")
    y_label = y_label if y_label is not None else (next(iter(series)) if len(series) == 1 else "")
    pad_l, pad_b, pad_t = 48, 40, 22
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t - 14 * max(len(series) - 1, 0)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
        f"<text x='{width / 2}' y='14' text-anchor='middle' font-size='13'>{escape(title)}</text>",
    ]
    if points:
        x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
        y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
        x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0
        axis_y = pad_t + plot_h
        parts.append(f"<line x1='{pad_l}' y1='{axis_y}' x2='{pad_l + plot_w}' y2='{axis_y}' stroke='#444'/>")
        parts.append(f"<text x='{pad_l - 4}' y='{pad_t + 8}' text-anchor='end' font-size='10'>{y_hi:.3g}</text>")
        parts.append(f"<text x='{pad_l - 4}' y='{axis_y}' text-anchor='end' font-size='10'>{y_lo:.3g}</text>")
        parts.append(f"<text x='{pad_l}' y='{axis_y + 14}' font-size='10'>{x_lo:g}</text>")
        parts.append(f"<text x='{pad_l + plot_w}' y='{axis_y + 14}' text-anchor='end' font-size='10'>{x_hi:g}</text>")
        parts += _axis_titles(width, height, x_label, y_label, axis_y, pad_l)
        for i, (name, (xs, ys)) in enumerate(series.items()):
            colour = colours[i % len(colours)]
            coords = " ".join(
                f"{pad_l + plot_w * (float(x) - x_lo) / x_span:.1f},{axis_y - plot_h * (float(y) - y_lo) / y_span:.1f}"
                for x, y in zip(xs, ys, strict=True)
                if np.isfinite(y)
            )
            parts.append(f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
            if len(series) > 1:
                y = height - 4 - 14 * (len(series) - 1 - i)
                parts.append(
                    f"<rect x='{pad_l}' y='{y - 8}' width='10' height='8' fill='{colour}'/>"
                    f"<text x='{pad_l + 14}' y='{y}' font-size='11'>{escape(name)}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)


def highlight_chars(text: str, spans: Sequence[tuple[int, int]], limit: int = 4000) -> str:
    """``text`` escaped, with the ``[start, end)`` character spans marked; a long text is cut around the first span."""
    spans = sorted((max(s, 0), min(e, len(text))) for s, e in spans if e > s)
    lo = max(spans[0][0] - 400, 0) if spans else 0
    hi = min(lo + limit, len(text))
    out, at = ["… " if lo else ""], lo
    for start, end in spans:
        start, end = max(start, at), min(end, hi)
        if start >= end:
            continue
        out += [escape(text[at:start]), "<mark>", escape(text[start:end]), "</mark>"]
        at = end
    out.append(escape(text[at:hi]) + (" …" if hi < len(text) else ""))
    return "".join(out)


def highlight_words(words: Sequence[str], spans: Sequence[tuple[int, int]], limit: int = 600) -> str:
    """``words`` joined by spaces with the ``[start, end)`` word spans marked; long texts are cut around the first span."""
    marked = np.zeros(len(words), dtype=bool)
    for start, end in spans:
        marked[max(start, 0) : max(end, 0)] = True
    first = int(np.argmax(marked)) if marked.any() else 0
    lo = max(first - 40, 0)
    hi = min(lo + limit, len(words))
    out = ["… " if lo else ""]
    inside = False
    for i in range(lo, hi):
        if marked[i] and not inside:
            out.append("<mark>")
            inside = True
        elif not marked[i] and inside:
            out.append("</mark>")
            inside = False
        out.append(escape(words[i]) + " ")
    if inside:
        out.append("</mark>")
    if hi < len(words):
        out.append("…")
    return "".join(out)


def account_table(accounts: Sequence[Any]) -> str:
    """One row per ``Account``: name, in, out, removed and quarantined with their reasons, and whether it balances."""
    rows = [
        [
            a.name,
            a.rows_in,
            a.rows_out,
            a.removed_total,
            _reasons(a.removed),
            a.quarantined_total,
            _reasons(a.quarantined),
            "yes" if a.balanced else "NO",
        ]
        for a in accounts
    ]
    return table(["step", "in", "out", "removed", "why", "quarantined", "why", "balanced"], rows)


def _reasons(counts: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"
