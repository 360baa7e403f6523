"""``thresher eval``: pass@1 / pass@k of a model on verifiable benchmarks (``run``), written as per-item results,
a summary and an HTML report (``outputs``)."""
