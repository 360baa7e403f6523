"""``thresher mix`` end to end on real data: the spec, the steps, the account, determinism and the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.helpers import thresher
from thresher.mixing.pipeline import run_mix
from thresher.mixing.skills import knn_vote, rule_skills
from thresher.mixing.spec import SpecError, parse_spec

REPO = Path(__file__).resolve().parents[1]


def _lines(path: Path, start: int, count: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for i, line in enumerate(f) if start <= i < start + count]


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small slices of real data: math (GSM8K train), a source with 30 GSM8K test questions mixed in,
    chat (LIMA), code (Code Alpaca) and an unlabeled Alpaca slice."""
    folder = tmp_path_factory.mktemp("mix_inputs")
    (folder / "math.jsonl").write_text("".join(_lines(shared_data / "gsm8k/train.jsonl", 0, 300)))
    mixed = _lines(shared_data / "gsm8k/train.jsonl", 300, 170) + _lines(shared_data / "gsm8k/test.jsonl", 0, 30)
    (folder / "mixed_math.jsonl").write_text("".join(mixed))
    for name, src, n in (
        ("chat.json", "sft/lima.json", 200),
        ("code.json", "sft/code_alpaca_2k.json", 250),
        ("general.json", "sft/alpaca_en_demo.json", 120),
    ):
        (folder / name).write_text(json.dumps(json.loads((shared_data / src).read_text())[:n]))
    (folder / "gsm8k_test.jsonl").write_text("".join(_lines(shared_data / "gsm8k/test.jsonl", 0, 1319)))
    return folder


SPEC = """\
kind: sft
seed: {seed}
total: 400
sources:
  - {{name: math, path: math.jsonl, skill: math}}
  - {{name: mixed_math, path: mixed_math.jsonl, skill: math, priority: 1}}
  - {{name: chat, path: chat.json, skill: chat, max_repetition: 2}}
  - {{name: code, path: code.json, skill: code}}
  - {{name: general, path: general.json}}
skills:
  targets: {{chat: 0.4, math: 0.35, code: 0.25}}
  classifier: {{method: rules}}
steps:
  - normalize:
  - length: {{min_chars: 20, max_chars: 12000}}
  - dedup: {{method: exact, scope: across}}
  - dedup: {{method: minhash, scope: within, threshold: {dedup_threshold}}}
  - decontaminate: {{benchmarks: [gsm8k=gsm8k_test.jsonl], methods: [ngram]}}
output: {{shard_rows: 150}}
"""


def write_spec(folder: Path, name: str = "mix.yaml", seed: int = 1, dedup_threshold: float = 0.8) -> Path:
    path = folder / name
    path.write_text(SPEC.format(seed=seed, dedup_threshold=dedup_threshold))
    return path


def check_balanced(manifest: dict) -> None:
    """Every stage, for every source and skill: in = out + removed; sampling never draws more distinct rows than there are."""
    for stage in manifest["stages"]:
        for by in ("per_source", "per_skill"):
            for key, entry in stage.get(by, {}).items():
                if stage["stage"] == "sample":
                    assert entry["distinct"] + entry["not_drawn"] == entry["available"]["rows"], (stage["stage"], key)
                    assert entry["out"]["rows"] == entry["distinct"] + entry["copies"]
                    continue
                removed = entry["removed"]
                assert entry["in"]["rows"] == entry["out"]["rows"] + removed["rows"], (stage["stage"], by, key)
                assert removed["rows"] == sum(removed["by_reason"].values())
    outs = [s for s in manifest["stages"] if "per_source" in s and s["stage"] != "sample"]
    for before, after in zip(outs, outs[1:], strict=False):  # each stage starts with what the last one kept
        assert {k: v["out"]["rows"] for k, v in before["per_source"].items() if v["out"]["rows"]} == {
            k: v["in"]["rows"] for k, v in after["per_source"].items()
        }


def test_mix_end_to_end_is_balanced_exact_and_byte_identical(inputs: Path, tmp_path: Path) -> None:
    spec = write_spec(inputs)
    first = thresher("mix", str(spec), "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "cache_a"))
    assert first.returncode == 0, first.stderr
    # the second run on one core: its batches are read and hashed by one worker, the first run's by one per core
    second = thresher("mix", str(spec), "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "cache_b"), one_core=True)
    assert second.returncode == 0, second.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_file() and p.name != ".thresher.json")
    assert json.loads((tmp_path / "a/.thresher.json").read_text())["command"] == "mix"  # written last, when complete
    assert names == [
        "manifest.json",
        "mixture-00000-of-00003.parquet",
        "mixture-00001-of-00003.parquet",
        "mixture-00002-of-00003.parquet",
        "quarantine.jsonl",
        "removed.parquet",
        "report.html",
    ]
    for name in names:  # two runs with separate caches and worker counts: identical bytes
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    check_balanced(manifest)
    quarantined = [json.loads(line) for line in (tmp_path / "a/quarantine.jsonl").read_text().splitlines()]
    assert manifest["stages"][0]["per_source"]["code"]["removed"]["by_reason"] == {"quarantined: empty_content": len(quarantined)}
    assert all(q["file"].endswith("code.json") and q["row"] is not None for q in quarantined)
    mixture = pl.read_parquet(tmp_path / "a" / "mixture-*.parquet")
    assert mixture.height == 400
    assert dict(mixture["skill"].value_counts().iter_rows()) == {"chat": 160, "math": 140, "code": 100}  # exactly the targets
    assert {"source", "skill", "skill_from", "provenance", "copy"} <= set(mixture.columns)
    assert mixture["provenance"].struct.field("file").str.contains(r"\.jsonl?$").all()
    assert (mixture["source"] == "general").sum() > 0 and mixture.filter(pl.col("source") == "general")["skill_from"].str.contains(
        "^(rule:|default$)"
    ).all()
    # not the first rows of any source, and shuffled across sources
    math_rows = mixture.filter(pl.col("source") == "math")["provenance"].struct.field("row").sort().to_numpy()
    assert not np.array_equal(math_rows, np.arange(len(math_rows)))
    assert mixture["source"].head(20).n_unique() > 1
    report = (tmp_path / "a/report.html").read_text()
    assert "Skills: target and achieved" in report and "<svg" in report and "decontaminate: gsm8k" in report
    # a different seed draws different rows
    other = run_mix(write_spec(inputs, "seed2.yaml", seed=2), tmp_path / "c", tmp_path / "cache_a")
    assert not other.files[0].read_bytes() == (tmp_path / "a" / "mixture-00000-of-00003.parquet").read_bytes()


def test_contaminated_source_loses_exactly_the_flagged_rows(inputs: Path, tmp_path: Path) -> None:
    from thresher.decontam.audit import run_audit
    from thresher.decontam.benchmarks import load_benchmarks

    spec = inputs / "decontam_only.yaml"
    spec.write_text(
        "kind: sft\nsources:\n  - {name: mixed_math, path: mixed_math.jsonl, amount: {fraction: 1.0}}\n"
        "steps:\n  - decontaminate: {benchmarks: [gsm8k=gsm8k_test.jsonl]}\n"
    )
    result = run_mix(spec, tmp_path / "out", tmp_path / "cache")
    removed = pl.read_parquet(tmp_path / "out/removed.parquet").filter(pl.col("stage") == "1:decontaminate")
    audit = run_audit([str(inputs / "mixed_math.jsonl")], load_benchmarks([f"gsm8k={inputs / 'gsm8k_test.jsonl'}"]))
    flagged = set(audit.flagged_rows()["train_id"].to_list())
    assert set(removed["id"].to_list()) == flagged and removed.height == len(flagged)
    assert {f"mixed_math/{i}" for i in range(170, 200)} <= flagged  # the 30 test questions are all caught
    mixture = pl.read_parquet(result.files[0])
    assert mixture.height == 200 - len(flagged) and not set(mixture["id"].to_list()) & flagged
    assert removed["reason"].unique().to_list() == ["decontaminate: gsm8k"]
    check_balanced(result.manifest)


def test_cache_recomputes_only_what_a_change_touches(inputs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_mix(write_spec(inputs, "cached.yaml"), tmp_path / "a", cache)
    assert first.cached == []
    again = run_mix(write_spec(inputs, "cached.yaml"), tmp_path / "b", cache)
    assert again.cached == [s.name for s in again.stages]  # nothing recomputed
    changed = run_mix(write_spec(inputs, "cached.yaml", dedup_threshold=0.7), tmp_path / "c", cache)
    assert changed.cached == ["load", "classify", "1:normalize", "2:length", "3:dedup"]  # step 4 and after recomputed
    for name in ("manifest.json", "mixture-00000-of-00003.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_spec_errors_name_the_line_and_the_field() -> None:
    cases = {  # one spec text and the error it must give, per line
        "kind: sft\nsources:\n  - name: a\n    path: x.jsonl\n    amount: {count: 1, fraction: 0.5}\n": r"<spec>:5: sources\[0\]\.amount: give exactly one of count, fraction, weight, tokens \(got count, fraction\)",
        "kind: sft\nsources:\n  - {name: a, path: x, amount: {count: 1}}\nsteps:\n  - dedup:\n      method: minhashx\n": r"<spec>:6: steps\[0\]\.dedup\.method: Input should be 'exact', 'minhash' or 'embedding'",
        "kind: sft\nsources:\n  - {name: a, path: x, amount: {count: 1}}\nsteps:\n  - dedupe: {}\n": r"<spec>:5: steps\[0\]\.dedupe: unknown field",
        "kind: sft\ntotal: {tokens: 100}\nsources:\n  - {name: a, path: x, amount: {weight: 1}}\n": r"<spec>:1: \(top level\): token amounts, token totals and token length limits need a tokenizer",
        "kind: sft\nsources:\n  - {name: a, path: x}\n": r"sources \['a'\] have no amount",
        "kind: sft\nsources:\n  - {name: a, path: x, amount: {weight: 1}}\nskills:\n  targets: {chat: 0.5, math: 0.4}\n": r"<spec>:5: skills\.targets: Value error|<spec>:5: skills\.targets: shares must add up to 1, they add up to 0\.9",
        "kind: sft\nsources:\n  - name: a\n    path: x\n   amount: 1\n": r"<spec>:5: not valid YAML",
        "kind: sft\ntotal: 10\nsources:\n  - {name: a, path: x}\nskills:\n  targets: {math: 1.0}\n": r"skills.classifier.default 'chat' has no target share; name one of math",
        "kind: sft\nsources:\n  - {name: a, path: x, skill: math}\nskills:\n  targets: {math: 1.0}\n": r"skill targets are shares of the total: set 'total'",
        "kind: sft\nsources:\n  - {name: a, path: x, amount: {count: 1}}\n  - {name: a, path: y, amount: {count: 1}}\n": r"source names must be unique; repeated: a",
    }
    for text, pattern in cases.items():
        with pytest.raises(SpecError, match=pattern):
            parse_spec(text)


def test_cli_errors_name_the_source_and_the_numbers(inputs: Path, tmp_path: Path) -> None:
    short = inputs / "short.yaml"
    short.write_text(
        "kind: sft\ntotal: 1000\nsources:\n  - {name: chat, path: chat.json, amount: {weight: 1}}\n"
        "  - {name: code, path: code.json, amount: {weight: 1}, max_repetition: 1.5}\n"
    )
    done = thresher("mix", str(short), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "'chat' is asked for 500 rows but has 200 (max_repetition 1 allows at most 200)" in done.stderr
    missing = inputs / "missing.yaml"
    missing.write_text("kind: sft\nsources:\n  - {name: gone, path: nowhere.jsonl, amount: {count: 1}}\n")
    done = thresher("mix", str(missing), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "nowhere.jsonl: no such file" in done.stderr
    bad_filter = inputs / "bad_filter.yaml"
    bad_filter.write_text("kind: sft\nsources:\n  - {name: chat, path: chat.json, amount: {count: 1}, filter: ['nosuch > 3']}\n")
    done = thresher("mix", str(bad_filter), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "source 'chat': filter 'nosuch > 3' cannot be used" in done.stderr


def test_filters_field_maps_tokens_and_upsampling(inputs: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    rows = [{"q": f"Question {i}: what is {i} plus {i}?", "a": f"It is {2 * i}."} for i in range(50)]
    (inputs / "renamed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = inputs / "tokens.yaml"
    spec.write_text(f"""\
kind: sft
seed: 3
total: {{tokens: 30000}}
tokenizer: {tokenizer_dir / "tokenizer.json"}
sources:
  - name: arithmetic
    path: renamed.jsonl
    format: question_answer
    fields: {{question: q, answer: a}}
    amount: {{count: 120}}
    max_repetition: 3
  - name: chat
    path: chat.json
    filter: ["chars < 3000", "turns = 2"]
    amount: {{weight: 1}}
  - name: code
    path: code.json
    amount: {{tokens: 5000}}
""")
    result = run_mix(spec, tmp_path / "out", tmp_path / "cache")
    mixture = pl.read_parquet(result.files[0])
    arithmetic = mixture.filter(pl.col("source") == "arithmetic")
    assert arithmetic.height == 120 and arithmetic["copy"].max() == 2  # 50 rows, 120 drawn: every row twice or three times
    assert arithmetic["messages"].list.first().struct.field("content").str.starts_with("Question").all()
    code_tokens = mixture.filter(pl.col("source") == "code")["tokens"].sum()
    assert 4500 < code_tokens <= 5000
    assert 29_000 < mixture["tokens"].sum() <= 30_000  # weights fill the token total, each source to within a row
    load = result.manifest["stages"][0]["per_source"]["chat"]
    assert load["removed"]["by_reason"]["filter: chars < 3000"] > 0
    assert mixture.filter(pl.col("source") == "chat")["tokens"].is_not_null().all()
    check_balanced(result.manifest)


def test_skill_rules_and_nearest_neighbour_vote() -> None:
    prompts = pl.Series(
        [
            "Write a Python function that reverses a linked list.",
            "Solve for x: 3x + 5 = 20.",
            "Describe your favourite city in exactly 3 sentences.",
            "How do I make a bomb at home?",
            "Translate 'good morning' into French.",
            "What is a nice name for a dog?",
        ]
    )
    assert rule_skills(prompts, None).to_list() == ["code", "math", "precise_if", "safety", "multilingual", None]
    assert rule_skills(prompts, {"math", "chat"}).to_list() == [None, "math", None, None, None, None]
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    seeds = np.repeat(centres, 10, axis=0) + 0.1 * rng.normal(size=(30, 16))
    labels = np.repeat(np.array(["chat", "code", "math"]), 10)
    query = centres[[2, 0, 1]] + 0.1 * rng.normal(size=(3, 16))
    norm = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    got, share = knn_vote(norm(query), norm(seeds), labels, k=5)
    assert got.tolist() == ["math", "chat", "code"] and (share > 0.9).all()
    shuffled, _ = knn_vote(norm(query), norm(seeds), rng.permutation(labels), k=5)  # negative control: labels scrambled
    assert shuffled.tolist() != ["math", "chat", "code"]


@pytest.mark.slow
def test_knn_classifier_with_the_real_embedding_model(inputs: Path, tmp_path: Path) -> None:
    spec = inputs / "knn.yaml"
    spec.write_text("""\
kind: sft
seed: 0
total: 200
sources:
  - {name: math, path: math.jsonl, skill: math}
  - {name: code, path: code.json, skill: code}
  - {name: chat, path: chat.json, skill: chat}
  - {name: unlabeled, path: unlabeled.jsonl}
skills:
  targets: {math: 0.3, code: 0.3, chat: 0.4}
  classifier: {method: knn, k: 5, seeds_per_skill: 60}
""")
    unlabeled = {
        "math": [
            "A farmer has 17 sheep and buys 8 more each week. After 5 weeks, how many sheep does he have?",
            "Sara reads 12 pages a day. How many days will she need for a 300 page book?",
            "Tom had 45 marbles and gave a third of them to his sister. How many are left?",
        ],
        "code": [
            "Write a program that prints the numbers from 1 to 100, replacing multiples of three with Fizz.",
            "Create a function that checks whether a string is a palindrome.",
            "Generate a SQL query to find the top 5 customers by total order value.",
        ],
        "chat": [
            "What are some tips for staying motivated while learning to paint?",
            "Can you recommend a few classic novels for a long holiday?",
            "How should I prepare for my first marathon?",
        ],
    }
    rows = [{"instruction": p, "output": "..."} for prompts in unlabeled.values() for p in prompts]
    (inputs / "unlabeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_mix(spec, tmp_path / "out", tmp_path / "cache")
    stage = next(s for s in result.stages if s.name == "classify").kept.filter(pl.col("source") == "unlabeled")
    want = [skill for skill, prompts in unlabeled.items() for _ in prompts]
    assert stage["skill_from"].unique().to_list() == ["knn"]
    assert (stage.sort("_row")["skill"] == pl.Series(want)).sum() >= 8


EXAMPLES = sorted((REPO / "examples/mixes").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_build_and_their_manifests_balance(
    example: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THRESHER_SHARED_DATA", str(shared_data))
    result = run_mix(example, tmp_path / "out", tmp_path / "cache")
    check_balanced(result.manifest)
    spec = parse_spec(example.read_text())
    assert result.manifest["achieved"]["rows"] == spec.total.value  # type: ignore[union-attr]
    if spec.skills is not None:
        budgets = {s: t["budget"] for s, t in result.manifest["targets"]["skills"].items()}
        assert {s: v["rows"] for s, v in result.manifest["achieved"]["per_skill"].items()} == budgets
    assert os.path.getsize(tmp_path / "out/report.html") > 2000


def test_token_counts_of_the_rendered_chat(inputs: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir / "hf"))
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(str(tmp_path / "templated"))
    spec = inputs / "template.yaml"
    spec.write_text(
        f"kind: sft\ntokenizer: {{path: {tmp_path / 'templated'}, chat_template: true}}\n"
        "sources:\n  - {name: chat, path: chat.json, amount: {count: 40}}\n"
    )
    result = run_mix(spec, tmp_path / "out", tmp_path / "cache")
    mixture = pl.read_parquet(result.files[0])
    rendered = tok.apply_chat_template(mixture["messages"].to_list(), tokenize=False)
    expected = [len(ids) for ids in tok(rendered, add_special_tokens=False)["input_ids"]]
    assert mixture["tokens"].to_list() == expected
    bare = [
        len(tok(t, add_special_tokens=False)["input_ids"])
        for t in mixture["messages"].list.eval(pl.element().struct.field("content")).list.join("\n").to_list()
    ]
    assert sum(expected) > sum(bare)  # the template's role markers are counted too
    assert result.manifest["stages"][0]["per_source"]["chat"]["out"]["tokens"] > 0
    no_template = inputs / "no_template.yaml"
    no_template.write_text(
        f"kind: sft\ntokenizer: {{path: {tokenizer_dir / 'tokenizer.json'}, chat_template: true}}\n"
        "sources:\n  - {name: chat, path: chat.json, amount: {count: 4}}\n"
    )
    with pytest.raises(SpecError, match="chat_template is set but the tokenizer has no chat template"):
        run_mix(no_template, tmp_path / "out2", tmp_path / "cache")
