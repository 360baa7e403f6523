"""Peak memory of dedup's clustering on datatrove: the old single task that loaded every document's features and
signature (``decide`` in memory, as ``DedupClusters`` did before issue 31) against the band-sharded stages that
replace it (``DedupBuckets`` tasks, then ``DedupClusters`` over the candidate pairs), on the same stage-1 files.

The stage-1 files are synthetic (random 128-value signatures, 1 in 10 documents a perturbed copy of an earlier
one, ids like a real corpus's), written in the exact layout ``DedupSignatures`` writes, so the figure is the
clustering's own memory, not MinHash's. Each measured step runs in its own process; its peak RSS (VmHWM) is
reported, and the decisions of both are compared (they must be equal).

Run: python benchmarks/bench_dedup_cluster_memory.py [--rows 1000000 --tasks 8 --band-shards 4]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    path.write_bytes(buffer.getvalue())


def make_stage1(folder: Path, rows: int, tasks: int, band_shards: int, seed: int = 0) -> None:
    """Stage-1 files as ``DedupSignatures`` writes them (``write_features``), from synthetic features."""
    import polars as pl
    from datatrove.io import get_datafolder

    from thresher.curation.datatrove_steps import DEFAULT_CONFIG, write_features
    from thresher.curation.dedup import FeatureArrays

    rng = np.random.default_rng(seed)
    signature = rng.integers(0, 2**32 - 1, size=(rows, DEFAULT_CONFIG.num_perm), dtype=np.uint32)
    copies = np.flatnonzero(rng.random(rows) < 0.1)
    copies = copies[copies > 0]
    sources = (rng.random(len(copies)) * copies).astype(np.int64)  # an earlier document
    signature[copies] = signature[sources]
    flip = rng.random((len(copies), signature.shape[1])) < 0.08  # ~0.92 estimated Jaccard
    signature[copies] = np.where(flip, rng.integers(0, 2**32 - 1, size=flip.shape, dtype=np.uint32), signature[copies])
    exact = rng.integers(0, 2**63, size=(rows, 2), dtype=np.uint64)
    length = rng.integers(200, 4000, size=rows)
    out = get_datafolder(str(folder))
    for rank, part in enumerate(np.array_split(np.arange(rows), tasks)):
        arrays = FeatureArrays(
            input_index=np.full(len(part), rank, np.int64),
            source=pl.Series("source", [f"shard-{rank}"] * len(part), dtype=pl.String),
            ids=pl.Series("id", [f"sharegpt-{i:09d}-{rank}" for i in part], dtype=pl.String),
            length=length[part],
            exact=exact[part],
            signature=signature[part],
            texts=None,
        )
        write_features(out, rank, arrays, DEFAULT_CONFIG, band_shards)


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM): unlike ru_maxrss, not inherited from the parent across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(what: str, folder: str, rank: int, world: int) -> dict:
    import polars as pl

    from thresher.curation.datatrove_steps import DEFAULT_CONFIG, DedupBuckets, DedupClusters, _load
    from thresher.curation.dedup import FeatureArrays, decide

    base_mb = _peak_mb()  # the interpreter and libraries, before any data
    start = time.perf_counter()
    out: dict = {}
    if what == "single":  # the old DedupClusters: every rank's features, ids and signatures in one task
        from datatrove.io import get_datafolder

        f = get_datafolder(folder)
        ranks = sorted(int(n.rsplit("/", 1)[-1].split(".")[0]) for n in f.list_files("features"))
        feats = [_load(f, f"features/{r:05d}.npz") for r in ranks]
        names = [_load(f, f"ids/{r:05d}.npz") for r in ranks]
        ids = np.concatenate([p["ids"] for p in names])
        features = FeatureArrays(
            input_index=np.concatenate([p["input_index"] for p in feats]),
            source=pl.Series("source", np.concatenate([p["sources"] for p in names]).tolist(), dtype=pl.String),
            ids=pl.Series("id", ids.tolist(), dtype=pl.String),
            length=np.concatenate([p["length"] for p in feats]),
            exact=np.concatenate([p["exact"] for p in feats]),
            signature=np.concatenate([_load(f, f"signatures/{r:05d}.npz")["signature"] for r in ranks]),
            texts=None,
        )
        decisions = decide(features, DEFAULT_CONFIG)
        dup = decisions.duplicate_of
        out["removed"] = int((dup >= 0).sum())
        np.save(Path(folder) / "single_duplicate_of.npy", dup)
    elif what == "buckets":
        list(DedupBuckets(folder).run(iter(()), rank, world))
    else:
        step = DedupClusters(folder)
        list(step.run(iter(()), 0, 1))
    peak = _peak_mb()
    out.update(seconds=time.perf_counter() - start, peak_mb=peak, data_mb=peak - base_mb)
    return out


def measure(what: str, folder: Path, rank: int = 0, world: int = 1) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", what, str(folder), str(rank), str(world)], capture_output=True, text=True, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{what} failed: {done.stderr[-2000:]}")
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--band-shards", type=int, default=4)
    parser.add_argument("--bucket-tasks", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_stage1(folder, args.rows, args.tasks, args.band_shards)
        made = time.perf_counter() - t0
        print(
            f"# {platform.machine()}, {args.rows:,} documents in {args.tasks} stage-1 files, {args.band_shards} band shards "
            f"over {args.bucket_tasks} bucket tasks (made in {made:.0f} s); peak RSS, and its growth past the imports",
            flush=True,
        )
        print("| step | tasks | seconds (slowest) | peak RSS MB | data MB (past imports) | data vs single task |", flush=True)
        print("| --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
        single = measure("single", folder)

        def row(name: str, tasks: int, results: list[dict]) -> dict:
            worst = max(results, key=lambda r: r["data_mb"])
            seconds = max(r["seconds"] for r in results)
            ratio = worst["data_mb"] / single["data_mb"]
            print(
                f"| {name} | {tasks} | {seconds:.1f} | {worst['peak_mb']:,.0f} | {worst['data_mb']:,.0f} | {ratio:.2f}× |",
                flush=True,
            )
            return worst

        row("single task (before): every feature and signature", 1, [single])
        buckets = row(
            "buckets (now)", args.bucket_tasks, [measure("buckets", folder, r, args.bucket_tasks) for r in range(args.bucket_tasks)]
        )
        clusters = row("clusters over candidate pairs (now)", 1, [measure("clusters", folder)])
        # the same decisions: removed rows (and their keepers) from both
        want = np.load(folder / "single_duplicate_of.npy")
        got_ids = np.concatenate([np.load(p)["duplicate_of"] for p in sorted((folder / "decisions").glob("*.npz"))])
        ids = np.concatenate([np.load(p)["ids"] for p in sorted((folder / "ids").glob("*.npz"))])
        expected = np.where(want >= 0, ids[np.maximum(want, 0)], "")
        same = bool((got_ids == expected).all())
        print(f"# decisions equal: {same}; removed {int((want >= 0).sum()):,}", flush=True)
        figures = {"single": single, "buckets": buckets, "clusters": clusters, "equal": same}
        print("RESULT " + json.dumps({"cluster_memory": figures}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        main()
