"""The pipeline's one report: every stage's accounting and results, with plots, linking each stage's own report.
Each stage's section is written by its kind (``StageKind.section``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thresher.pipeline.registry import kind_of
from thresher.report.html import Markup, page, table


def _link(stage: Any, report_path: Path) -> str:
    own = kind_of(stage.run).own_report
    if own and (stage.folder / own).is_file():
        return f" <a href='{os.path.relpath(stage.folder / own, report_path.parent)}'>stage report</a>"
    return ""


def write_report(stages: list[Any], path: Path) -> Path:
    overview = table(
        ["stage", "runs", "state", "run time (s)", "folder"],
        [
            [
                s.name,
                s.run,
                s.state,
                (f"{s.seconds:.1f}" + (" (when it ran)" if s.state == "cached" else "")) if s.seconds else "-",
                Markup(f"<a href='{os.path.relpath(s.folder, path.parent)}'>{s.folder.name}</a>"),
            ]
            for s in stages
        ],
    )
    sections = [f"<h2>stages</h2>{overview}"]
    for run in dict.fromkeys(s.run for s in stages):
        across = kind_of(run).across([s for s in stages if s.run == run and s.summary])
        if across:
            sections.append(across)
    for stage in stages:
        sections.append(f"<h2>{stage.name} ({stage.run}){_link(stage, path)}</h2>{kind_of(stage.run).section(stage)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page("Thresher pipeline", "".join(sections)), encoding="utf-8")
    return path
