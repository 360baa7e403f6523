"""``thresher mix`` at scale: wall time and peak RSS of the CLI on ``--rows`` real-text chats (issue 23, part 5).

Two JSONL sources of equal size (chats cut from LIMA / Alpaca / Code Alpaca paragraphs, ~700 characters each),
a spec that declares their skills, drops exact duplicates across them and draws half the rows. The CLI runs in
its own process under a small launcher, so the peak RSS is the mixer's own. Goal: 2M rows under 4 GB.

    python benchmarks/bench_mix_scale.py --rows 2000000
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_engines_e2e import measured  # noqa: E402
from corpus import paragraphs  # noqa: E402

SPEC = """kind: sft
seed: 7
total: {total}
sources:
  - name: chat
    path: {chat}
    skill: chat
    amount: {{weight: 1}}
  - name: code
    path: {code}
    skill: code
    amount: {{weight: 1}}
steps:
  - dedup: {{method: exact, scope: across}}
"""


def build(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    pool = paragraphs()
    with open(path, "wb") as f:
        for i in range(rows):
            a, b = pool[rng.randrange(len(pool))], pool[rng.randrange(len(pool))]
            chat = [{"role": "user", "content": a[: rng.randint(80, 300)]}, {"role": "assistant", "content": b[: rng.randint(200, 600)]}]
            f.write(orjson.dumps({"id": f"{seed}-{i}", "messages": chat}) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        half = args.rows // 2
        build(work / "chat.jsonl", half, 1)
        build(work / "code.jsonl", args.rows - half, 2)
        size = sum((work / f"{n}.jsonl").stat().st_size for n in ("chat", "code")) / 2**20
        spec = work / "spec.yaml"
        spec.write_text(SPEC.format(total=args.rows // 2, chat=work / "chat.jsonl", code=work / "code.jsonl"))
        seconds, rss = measured([sys.executable, "-m", "thresher.cli", "mix", str(spec), "--out", str(work / "out"), "--quiet"])
        print(f"thresher mix: {args.rows:,} rows in ({size:,.0f} MiB JSONL), {args.rows // 2:,} drawn: {seconds:.1f} s, "
              f"{args.rows / seconds:,.0f} rows/s, peak RSS {rss:,.0f} MiB")  # fmt: skip
        subprocess.run(["du", "-sh", str(work / "out")], check=False)


if __name__ == "__main__":
    main()
