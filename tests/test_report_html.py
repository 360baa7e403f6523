"""The report's building blocks say what they show: axis titles, "no data" instead of empty or flat charts, a
legend only for bars that are drawn, zero cells subdued (each with the case that must still draw)."""

from __future__ import annotations

import numpy as np

from thresher.report.html import bars, histogram, line_plot, paired_bars, table


def test_charts_have_axis_titles_and_say_when_there_is_nothing_to_draw() -> None:
    drawn = line_plot({"loss": ([1, 2, 3], [3.0, 2.0, 1.5])}, "loss")
    assert "<polyline" in drawn and ">step</text>" in drawn and ">loss</text>" in drawn
    assert "nodata" in line_plot({"eval_loss": ([0], [6.9])}, "held-out loss")  # one point: no flat line
    assert "constant 0" in line_plot({"kl": ([1, 2, 3], [0.0, 0.0, 0.0])}, "KL")
    assert "nodata" in bars(["a", "b"], [0.0, 0.0], "leaked items") and "<rect" in bars(["a", "b"], [0.0, 0.2], "leaked items")
    hist = histogram(np.array([0.2, 0.7]), "scores", x_label="ngram score", y_label="matches")
    assert ">ngram score</text>" in hist and ">matches</text>" in hist and "nodata" in histogram(np.array([]), "scores")


def test_the_target_legend_only_with_target_bars() -> None:
    assert ">target</text>" not in paired_bars(["a", "b"], [None, None], [0.4, 0.6], "source shares")
    assert ">target</text>" in paired_bars(["a", "b"], [0.5, 0.5], [0.4, 0.6], "skill shares")


def test_zero_cells_are_subdued() -> None:
    html = table(["source", "gsm8k", "math"], [["alpaca", "0.0% (0)", "2.1% (3)"], ["lima", "0.00% (0 rows)", "-"]])
    assert html.count("class='z'") == 3 and "<td class=''>2.1% (3)</td>" in html
