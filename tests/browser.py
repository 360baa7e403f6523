"""Open an HTML report in a real headless Chromium (Playwright driving the system's browser) and say what is
wrong with it: script or console errors, failed loads, key sections that are not visible, charts that draw
nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def chromium() -> str | None:
    """The browser to use ($THRESHER_CHROMIUM, or chromium / chromium-browser / google-chrome on PATH), or None."""
    found = os.environ.get("THRESHER_CHROMIUM") or next(
        (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return found


WHY_SKIPPED = "no headless Chromium (apt-get install chromium; make env does it as root) or no playwright"


def problems(report: Path, sections: list[str]) -> list[str]:
    """What a person opening ``report`` would find broken: [] when it loads cleanly and shows each of ``sections``."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    assert executable is not None, WHY_SKIPPED
    found: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: found.append(f"script error: {e}"))
            page.on("console", lambda m: found.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("requestfailed", lambda r: found.append(f"failed to load {r.url}"))
            page.goto(report.resolve().as_uri(), wait_until="load")
            for text in sections:
                shown = page.get_by_text(text, exact=False).first
                if shown.count() == 0 or not shown.is_visible():
                    found.append(f"section {text!r} is not visible")
            for i, box in enumerate(
                page.eval_on_selector_all("svg", "els => els.map(e => [e.getBBox().width, e.querySelectorAll('rect,polyline').length])")
            ):
                if box[1] == 0:
                    found.append(f"chart {i} draws nothing")
            if "NaN" in page.inner_text("body"):
                found.append("the page shows NaN")
        finally:
            browser.close()
    return found
