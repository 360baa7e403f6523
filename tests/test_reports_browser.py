"""Every report, opened in a real headless Chromium: it loads without script errors or failed requests, its key
sections are visible, every chart draws something (an empty one says "no data" instead). The synth report and
the pipeline's training sections are checked where those tests already build them (test_synth, test_pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.browser import WHY_SKIPPED, chromium, problems
from thresher.cli import app

pytestmark = pytest.mark.skipif(chromium() is None, reason=WHY_SKIPPED)


def _rows(path: Path, n: int, prefix: str) -> Path:
    path.write_text(
        "".join(
            f'{{"messages": [{{"role": "user", "content": "{prefix} question number {i} about apples and pears in a basket"}}, '
            f'{{"role": "assistant", "content": "answer {i}"}}]}}\n'
            for i in range(n)
        )
    )
    return path


def test_audit_mix_and_pipeline_reports_render_in_a_browser(tmp_path: Path, shared_data: Path) -> None:
    runner = CliRunner()
    train = _rows(tmp_path / "train.jsonl", 30, "plain")
    gsm = shared_data / "gsm8k" / "test.jsonl"
    result = runner.invoke(app, ["audit", "-t", str(train), "-b", f"gsm8k={gsm}", "-o", str(tmp_path / "audit")])
    assert result.exit_code == 0, result.output
    assert problems(tmp_path / "audit/report.html", ["Leakage by training source and benchmark"]) == []

    spec = tmp_path / "mix.yaml"
    spec.write_text(
        "kind: sft\nsources:\n  - name: rows\n    path: train.jsonl\n    amount: {count: 12}\nsteps:\n  - dedup: {method: exact}\n"
    )
    result = runner.invoke(app, ["mix", str(spec), "--out", str(tmp_path / "mix"), "-q"])
    assert result.exit_code == 0, result.output
    assert problems(tmp_path / "mix/report.html", ["source shares by rows"]) == []

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "output_dir: pipe\nstages:\n"
        "  - {name: dedup, run: dedup, inputs: [train.jsonl]}\n"
        "  - {name: mix, run: mix, spec: mix.yaml, set: {sources.0.path: '{{dedup}}'}}\n"
    )
    for _ in range(2):  # the second run is cached: run times are kept
        result = runner.invoke(app, ["run", str(pipeline), "-q"])
        assert result.exit_code == 0, result.output
    html = (tmp_path / "pipe/report.html").read_text()
    assert "(when it ran)" in html
    assert problems(tmp_path / "pipe/report.html", ["stages", "dedup (dedup)", "mix (mix)"]) == []


def test_the_checker_finds_a_broken_page(tmp_path: Path) -> None:
    """Negative control: a script error, a missing section and an empty chart are all reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><h2 style='display:none'>hidden</h2><svg width='10' height='10'></svg><script>nope()</script></body></html>"
    )
    found = problems(page, ["hidden", "absent"])
    assert any("script error" in f for f in found) and any("'hidden'" in f for f in found)
    assert any("'absent'" in f for f in found) and any("draws nothing" in f for f in found)
