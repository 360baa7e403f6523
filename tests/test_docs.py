"""The docs cannot rot: the site builds with ``mkdocs build --strict`` (every link and nav entry resolves), the
reference is generated from the code with every field's meaning written, the README stays short and its links
resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build(repo: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of the docs in ``repo`` into ``site``."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300)


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site/reference/index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """Negative control: the same build over a copy with one dead link fails."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", symlinks=False)
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs/guide/mix.md").write_text((copy / "docs/guide/mix.md").read_text() + "\nSee [gone](../nowhere.md).\n")
    result = _build(copy, tmp_path / "site")
    assert result.returncode != 0 and "nowhere.md" in result.stderr


def test_the_reference_is_generated_from_the_models() -> None:
    from thresher.docs import END, START, empty_meanings, reference

    written = (ROOT / "docs/reference.md").read_text(encoding="utf-8").split(START)[1].split(END)[0].strip()
    assert written == reference().strip(), "docs/reference.md is stale: run python -m thresher.docs --write docs/reference.md"
    assert empty_meanings() == []


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), [x for x in links if not (ROOT / x).exists()]
    assert "make test" in readme  # CI runs the README's test command
