"""Compare two output trees (e.g. out/demo before and after a refactor, run in the same folder): files byte-identical,
files that differ only in timing fields (seconds, tokens/s, peak memory), and files that really differ.
Usage: python benchmarks/compare_runs.py OLD_OUT NEW_OUT"""
import json, re, sqlite3, sys
from pathlib import Path

TIMING = re.compile(r"seconds|per_s|_s$|peak_memory|elapsed|time|wall", re.I)

def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not TIMING.search(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v

def same_modulo_timing(a: Path, b: Path) -> bool:
    if a.suffix in (".json",):
        return strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))
    if a.suffix == ".jsonl":
        return [strip(json.loads(l)) for l in a.read_text().splitlines()] == [strip(json.loads(l)) for l in b.read_text().splitlines()]
    if a.suffix == ".sqlite":
        q = lambda p: sorted(sqlite3.connect(p).execute("select * from sqlite_master").fetchall())
        ra, rb = q(a), q(b)
        if ra != rb: return False
        tables = [r[1] for r in ra if r[0] == "table"]
        for t in tables:
            rows = lambda p: sorted(map(repr, sqlite3.connect(p).execute(f"select * from {t}").fetchall()))
            if rows(a) != rows(b): return False
        return True
    if a.suffix == ".html":
        num = re.compile(r"\d+\.\d+")
        return num.sub("N", a.read_text()) == num.sub("N", b.read_text())
    return False

A, B = Path(sys.argv[1]), Path(sys.argv[2])
fa = {p.relative_to(A) for p in A.rglob("*") if p.is_file() and "tensorboard" not in p.parts and "cache" not in p.parts}
fb = {p.relative_to(B) for p in B.rglob("*") if p.is_file() and "tensorboard" not in p.parts and "cache" not in p.parts}
ident = timing = 0
for rel in sorted(fa | fb):
    if rel not in fa or rel not in fb:
        print("only in one:", rel); continue
    a, b = A / rel, B / rel
    if a.read_bytes() == b.read_bytes():
        ident += 1
    elif same_modulo_timing(a, b):
        timing += 1
    else:
        print("DIFFERS:", rel)
print(f"{ident} byte-identical, {timing} differ only in timing fields (of {len(fa | fb)}; tensorboard and cache folders skipped)")
