"""How long ``thresher mix`` takes on the example specs: a cold run (empty cache), a warm re-run (every
stage from the cache), and a re-run after one step changed; per stage on the cold run. Beside it,
the plain-Polars mixer a user would otherwise write (read each source, ``sample(n, seed)``, concat,
write), on the same rows the cold run drew from, with no steps, skills, manifest or report: the
ratio is what sampling and the account cost over that baseline.

Run: python benchmarks/bench_mix.py [--examples tulu3_sft,preference,rlvr]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from thresher.mixing.pipeline import run_mix
from thresher.mixing.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def plain_polars_mix(frame: pl.DataFrame, counts: dict[str, int], seed: int, out: Path) -> float:
    """The baseline: per source a seeded sample of the drawn size (with replacement when upsampled), concatenated, shuffled, written."""
    began = time.perf_counter()
    parts = []
    for source, n in counts.items():
        rows = frame.filter(pl.col("source") == source)
        parts.append(rows.sample(n, with_replacement=n > rows.height, seed=seed))
    pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(out, compression="zstd")
    return time.perf_counter() - began


def changed_spec(spec: Path) -> Path:
    """The same spec with its last step's settings nudged (so only that step recomputes)."""
    text = spec.read_text()
    nudged = text.replace("methods: [ngram]", "methods: [ngram]\n      thresholds: {ngram: 0.55}")
    path = spec.with_name(f".bench-{spec.name}")
    path.write_text(nudged)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", default="tulu3_sft,preference,rlvr")
    args = parser.parse_args()
    os.environ.setdefault("THRESHER_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(
        f"{'example':<12} {'rows':>6} {'cold s':>7} {'warm s':>7} {'step changed s':>15} {'draw+write s':>13} "
        f"{'plain polars s':>15} {'ratio':>6}"
    )
    for name in args.examples.split(","):
        spec_path = REPO / "examples" / "mixes" / f"{name}.yaml"
        work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
        try:
            cold = run_mix(spec_path, work / "cold", work / "cache")
            warm = run_mix(spec_path, work / "warm", work / "cache")
            nudged = changed_spec(spec_path)
            try:
                changed = run_mix(nudged, work / "changed", work / "cache")
            finally:
                nudged.unlink()
            counts = {k: v["rows"] for k, v in cold.manifest["achieved"]["per_source"].items()}
            baseline = plain_polars_mix(cold.stages[-1].kept, counts, load_spec(spec_path).seed, work / "plain.parquet")
            print(
                f"{name:<12} {cold.manifest['achieved']['rows']:>6} {cold.seconds:>7.2f} {warm.seconds:>7.2f} "
                f"{changed.seconds:>15.2f} {cold.output_seconds:>13.3f} {baseline:>15.3f} {cold.output_seconds / baseline:>6.1f}"
            )
            print("    cold stages: " + ", ".join(f"{s.name} {s.seconds:.2f}s" for s in cold.stages))
            print("    after the change, recomputed: " + ", ".join(s.name for s in changed.stages if not s.cached))
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
