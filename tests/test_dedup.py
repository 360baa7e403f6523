"""`thresher dedup` on real data with injected exact and near duplicates: accounting, links, determinism."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from thresher.convert import convert
from thresher.curation.dedup import DedupConfig, dedup


def _lima_rows(shared_data: Path, count: int) -> list[dict]:
    rows = json.loads((shared_data / "sft/lima.json").read_text())
    return [r for r in rows if len(r["output"].split()) > 60 and not r.get("history")][:count]


def _edit_words(text: str, rate: float, rng: random.Random) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * rate))):
        words[i] = words[i][::-1] + "x"
    return " ".join(words)


@pytest.fixture(scope="module")
def injected(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """originals.jsonl (LIMA); copies.jsonl: 20 re-cased/re-punctuated exact copies, 20 near copies
    (1% of words changed), 20 far edits (40% changed: not duplicates), and 20 Alpaca rows."""
    rng = random.Random(1234)
    tmp = tmp_path_factory.mktemp("dedup")
    base = _lima_rows(shared_data, 80)
    originals = [{"id": f"orig-{i}", "instruction": r["instruction"], "output": r["output"]} for i, r in enumerate(base)]
    copies = []
    for i in range(20):
        o = originals[i]
        copies.append({"id": f"exact-{i}", "instruction": o["instruction"].upper() + " !!", "output": o["output"].replace(".", " . ")})
    for i in range(20, 40):
        o = originals[i]
        copies.append({"id": f"near-{i}", "instruction": o["instruction"], "output": _edit_words(o["output"], 0.01, rng)})
    for i in range(40, 60):
        o = originals[i]
        copies.append({"id": f"far-{i}", "instruction": o["instruction"], "output": _edit_words(o["output"], 0.4, rng)})
    alpaca = json.loads((shared_data / "sft/alpaca_en_demo.json").read_text())
    seen: set[str] = set()
    for j, r in enumerate(alpaca):
        if len(seen) == 20:
            break
        if r["instruction"] not in seen and len(r["output"].split()) > 30:
            seen.add(r["instruction"])
            copies.append({"id": f"alpaca-{j}", "instruction": r["instruction"], "input": r["input"], "output": r["output"]})
    paths = {}
    for name, rows in (("originals", originals), ("copies", copies)):
        raw = tmp / f"{name}.jsonl"
        raw.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        paths[name] = tmp / f"{name}.parquet"
        convert([str(raw)], paths[name], kind="sft")
    return {"paths": paths, "tmp": tmp, "n": len(originals) + len(copies)}


def _read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def test_minhash_dedup_links_each_copy_to_its_original(injected: dict) -> None:
    out = injected["tmp"] / "minhash"
    inputs = [str(injected["paths"]["originals"]), str(injected["paths"]["copies"])]
    report = dedup(inputs, out, DedupConfig(method="minhash", threshold=0.7)).as_dict()
    kept, removed = _read(out / "kept.parquet"), _read(out / "removed.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(report))
    # nothing lost: every input id is in exactly one output
    assert summary["in"] == injected["n"] == kept.height + removed.height
    assert sorted(kept["id"].to_list() + removed["id"].to_list()) == sorted(
        _read(injected["paths"]["originals"])["id"].to_list() + _read(injected["paths"]["copies"])["id"].to_list()
    )
    links = dict(zip(removed["id"].to_list(), removed["duplicate_of"].to_list(), strict=True))
    methods = dict(zip(removed["id"].to_list(), removed["method"].to_list(), strict=True))
    scores = dict(zip(removed["id"].to_list(), removed["score"].to_list(), strict=True))
    for i in range(20):
        assert links[f"exact-{i}"] == f"orig-{i}" and methods[f"exact-{i}"] == "exact" and scores[f"exact-{i}"] == 1.0
    for i in range(20, 40):
        assert links[f"near-{i}"] == f"orig-{i}" and methods[f"near-{i}"] == "minhash"
        assert 0.8 <= scores[f"near-{i}"] < 1.0
    assert set(links) == {f"exact-{i}" for i in range(20)} | {f"near-{i}" for i in range(20, 40)}
    assert set(links.values()) <= set(kept["id"].to_list())
    assert summary["removed_by_method"] == {"exact": 20, "minhash": 20}
    assert summary["removed_across_sources"] == 40
    assert summary["sources"]["copies"] == {
        "in": 80,
        "kept": 40,
        "removed": 40,
        "removed_by_method": {"exact": 20, "minhash": 20},
        "removed_across_sources": 40,
    }


def test_dedup_is_deterministic_and_verify_gives_true_jaccard(injected: dict) -> None:
    inputs = [str(injected["paths"]["originals"]), str(injected["paths"]["copies"])]
    first = injected["tmp"] / "det1"
    second = injected["tmp"] / "det2"
    # one worker, then two on small batches of the raw inputs (conversion and features of several batches at
    # once): the same bytes
    raw = [str(injected["tmp"] / "originals.jsonl"), str(injected["tmp"] / "copies.jsonl")]
    dedup(raw, first, DedupConfig(threshold=0.8, workers=1, batch_rows=16))
    dedup(raw, second, DedupConfig(threshold=0.8, workers=2, batch_rows=16))
    for name in ("kept.parquet", "removed.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    verified = injected["tmp"] / "verified"
    dedup(inputs, verified, DedupConfig(threshold=0.7, verify=True))
    removed = _read(verified / "removed.parquet").filter(pl.col("method") == "minhash")
    assert sorted(removed["id"].to_list()) == sorted(f"near-{i}" for i in range(20, 40))
    assert removed["score"].min() >= 0.7
    # verified scores are true Jaccard of word 5-gram sets, recomputed here in plain Python
    originals = {r["id"]: r for r in _read(injected["paths"]["originals"]).to_dicts()}
    from thresher.curation.normalize import word_tokens

    for row in removed.to_dicts()[:5]:
        a = " \n".join(m["content"] for m in row["messages"])
        b = " \n".join(m["content"] for m in originals[row["duplicate_of"]]["messages"])
        ta, tb = word_tokens([a, b]).to_list()
        ga = {tuple(ta[i : i + 5]) for i in range(len(ta) - 4)}
        gb = {tuple(tb[i : i + 5]) for i in range(len(tb) - 4)}
        assert row["score"] == pytest.approx(len(ga & gb) / len(ga | gb))


def test_raw_inputs_are_converted_once_and_give_what_canonical_inputs_give(injected: dict) -> None:
    """JSONL inputs are converted in the first pass only (the later passes read the spool it kept); outputs equal
    those of the same rows as canonical Parquet, with --verify too, and no spool is left behind."""
    import thresher.convert as convert_module

    calls = 0
    original = convert_module.finish_block

    def counting(prepared, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        nonlocal calls
        calls += prepared[0].num_rows
        return original(prepared, *args, **kwargs)

    raw = [str(injected["tmp"] / "originals.jsonl"), str(injected["tmp"] / "copies.jsonl")]
    canonical = [str(injected["paths"]["originals"]), str(injected["paths"]["copies"])]
    config = DedupConfig(threshold=0.7, verify=True)
    convert_module.finish_block = counting
    try:
        dedup(raw, injected["tmp"] / "from-raw", config)
    finally:
        convert_module.finish_block = original
    dedup(canonical, injected["tmp"] / "from-canonical", config)
    assert calls == injected["n"]  # every row converted once, not once per pass
    for name in ("kept.parquet", "removed.parquet"):  # the same rows and decisions (the inputs' paths differ)
        differ = ["provenance", *(["duplicate_of_input"] if name == "removed.parquet" else [])]
        got = _read(injected["tmp"] / "from-raw" / name).drop(differ)
        assert got.equals(_read(injected["tmp"] / "from-canonical" / name).drop(differ))
    assert not list((injected["tmp"] / "from-raw").glob(".spool-*"))


def test_keep_policies(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "instruction": "Tell me about rivers", "output": "Rivers flow."},
        {"id": "b", "instruction": "tell me about RIVERS!", "output": "Rivers  flow"},
        {"id": "c", "instruction": "Tell me about rivers.", "output": "rivers flow"},
    ]
    longer = [{"id": "d", "instruction": "Tell me about rivers", "output": "Rivers flow!!!"}]
    first_file, second_file = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    first_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    second_file.write_text("".join(json.dumps(r) + "\n" for r in longer))
    inputs = [str(second_file), str(first_file)]

    def kept_ids(keep: str) -> list[str]:
        out = tmp_path / keep
        dedup(inputs, out, DedupConfig(method="exact", keep=keep))  # type: ignore[arg-type]
        return _read(out / "kept.parquet")["id"].to_list()

    assert kept_ids("first") == ["d"]  # the first row read (inputs in the order given)
    assert kept_ids("longest") == ["d"]  # "Rivers flow!!!" is the longest text
    inputs.reverse()
    assert kept_ids("first") == ["a"]
    assert kept_ids("source-priority") == ["a"]
    assert kept_ids("longest") == ["d"]


def test_embedding_dedup_finds_paraphrases(tmp_path: Path) -> None:
    rows = [
        {"id": "q1", "instruction": "How do I boil an egg?", "output": "Put the egg in boiling water for about nine minutes."},
        {"id": "q2", "instruction": "How can I boil an egg?", "output": "Place the egg in boiling water for roughly nine minutes."},
        {"id": "q3", "instruction": "What is the capital of France?", "output": "Paris is the capital of France."},
        {
            "id": "q4",
            "instruction": "Write a haiku about autumn leaves.",
            "output": "Red leaves drift and fall / the wind hums a quiet tune / branches wait for snow",
        },
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "emb"
    cache = tmp_path / "cache"
    dedup([str(path)], out, DedupConfig(method="embedding", threshold=0.9, cache_dir=str(cache)))
    removed = _read(out / "removed.parquet")
    assert removed["id"].to_list() == ["q2"] and removed["duplicate_of"].to_list() == ["q1"]
    assert removed["method"].to_list() == ["embedding"] and 0.9 <= removed["score"][0] <= 1.0
    assert list(cache.rglob("shard-*.parquet"))  # embeddings were cached
    # minhash does not see this paraphrase: the words differ too much
    dedup([str(path)], tmp_path / "mh", DedupConfig(method="minhash", threshold=0.8))
    assert _read(tmp_path / "mh" / "removed.parquet").height == 0


def test_cli_dedup_quarantines_bad_rows_and_balances(injected: dict, tmp_path: Path) -> None:
    raw = tmp_path / "dirty.jsonl"
    lines = [json.dumps({"instruction": "Say hi", "output": "hi"}), "{not json", json.dumps({"instruction": "say hi!", "output": "Hi."})]
    raw.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli"
    run = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "dedup", str(raw), "--out", str(out), "--method", "exact", "--on-error", "quarantine"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["in"], summary["kept"], summary["removed"], summary["quarantined"]) == (3, 1, 1, 1)
    assert summary["balanced"]
    bad = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert bad[0]["line"] == 2 and bad[0]["category"] == "malformed_json"
    failed = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "dedup", str(raw), "--out", str(tmp_path / "fail")], capture_output=True, text=True
    )
    assert failed.returncode == 1 and "dirty.jsonl:2" in failed.stderr
    assert not (tmp_path / "fail" / "kept.parquet").exists()
