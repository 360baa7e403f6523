"""The benchmark registry: which fields of each benchmark are the question and the answer, and how to load it.

A benchmark loads from the Hugging Face hub by name (``gsm8k``) or from a local file or folder in
its original release format (``gsm8k=path/to/test.jsonl``, ``mmlu=path/to/data`` with the Hendrycks
CSVs, ``bbh=path/to/bbh`` with one JSON file per task, ``math=path/to/MATH`` with one JSON file per
problem). Every benchmark becomes the same table of items: ``bench``, ``bench_id``, ``question``,
``answer`` (empty when the benchmark has none). Custom benchmarks come from any file Thresher
reads, with a field mapping.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from thresher.errors import InputError, closest
from thresher.io.sources import open_binary, read_raw, resolve_input

Row = dict[str, Any]
Extract = Callable[[Row], str]

ITEM_SCHEMA = {"bench": pl.String, "bench_id": pl.String, "question": pl.String, "answer": pl.String, "options": pl.String}
_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations: 16-3-4=<<16-3-4=9>>9
_LETTERS = "ABCDEFGHIJ"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return str(value)


def first_of(*names: str) -> Extract:
    """The first of ``names`` present (and not empty) in a row."""

    def pick(row: Row) -> str:
        for name in names:
            if row.get(name) not in (None, "", []):
                return _text(row[name])
        return ""

    return pick


def joined(*names: str) -> Extract:
    """The fields ``names`` that are present, joined by newlines."""

    def join(row: Row) -> str:
        return "\n".join(_text(row[name]) for name in names if row.get(name) not in (None, "", []))

    return join


def _gsm8k_answer(row: Row) -> str:
    return _CALC.sub("", _text(row.get("answer")))


def _choices(row: Row) -> list[str]:
    """Answer options of a multiple-choice row in any of the usual layouts."""
    choices = row.get("choices")
    if isinstance(choices, dict) and "text" in choices:  # hub ARC: {"text": [...], "label": [...]}
        return [_text(c) for c in choices["text"]]
    if isinstance(choices, list):
        return [_text(c["text"]) if isinstance(c, dict) else _text(c) for c in choices]
    question = row.get("question")
    if isinstance(question, dict):  # original ARC: {"stem": ..., "choices": [{"text", "label"}]}
        return [_text(c.get("text")) for c in question.get("choices", [])]
    return [_text(row[k]) for k in ("A", "B", "C", "D") if k in row]  # Hendrycks MMLU CSV


def _stem(row: Row) -> str:
    question = row.get("question")
    if isinstance(question, dict):
        return _text(question.get("stem"))
    return _text(question)


def _mc_question(row: Row) -> str:
    """The stem only: training data copies it with or without the options, in any order and lettering."""
    return _stem(row)


def _mc_answer(row: Row) -> str:
    """The text of the correct option (MMLU index or letter, ARC ``answerKey``)."""
    choices = _choices(row)
    key = row.get("answerKey", row.get("answer"))
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key) - 1 if "answerKey" in row else int(key)  # ARC numbers its options from 1
    if isinstance(key, str) and len(key.strip()) == 1 and key.strip().upper() in _LETTERS:
        key = _LETTERS.index(key.strip().upper())
    if isinstance(key, int) and 0 <= key < len(choices):
        return choices[key]
    return _text(key)


def _mc_options(row: Row) -> str:
    return "\n".join(_choices(row))


def _gpqa_options(row: Row) -> str:
    return "\n".join(
        _text(row[k]) for k in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3") if row.get(k)
    )


def _gpqa_question(row: Row) -> str:
    return _text(row.get("Question", row.get("question")))


def _mt_bench_answer(row: Row) -> str:
    reference = row.get("reference")
    return _text(reference) if reference else ""


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark: its question and answer, its ids, and where it lives."""

    name: str
    description: str
    question: Extract
    answer: Extract
    id_field: str | None = None  # None: the row's index (per file, prefixed by the file's stem for folders)
    hub: str | None = None
    hub_configs: tuple[str | None, ...] = (None,)
    hub_split: str = "test"
    local_pattern: str = "*.jsonl"  # files a local folder holds (the split's subfolder is entered first)
    csv_columns: tuple[str, ...] | None = None  # header-less CSV (Hendrycks MMLU)
    question_fields: str = ""
    answer_fields: str = ""
    options: Extract | None = None  # multiple choice: the options, matched together with the question too


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "gsm8k",
            "Grade-school math word problems (test, 1319)",
            first_of("question"),
            _gsm8k_answer,
            hub="openai/gsm8k",
            hub_configs=("main",),
            question_fields="question",
            answer_fields="answer (without <<calc>> annotations)",
        ),
        Benchmark(
            "math",
            "MATH competition problems (Hendrycks; test, 5000)",
            first_of("problem"),
            first_of("solution"),
            id_field="unique_id",
            hub="EleutherAI/hendrycks_math",
            hub_configs=(
                "algebra",
                "counting_and_probability",
                "geometry",
                "intermediate_algebra",
                "number_theory",
                "prealgebra",
                "precalculus",
            ),
            local_pattern="*.json*",
            question_fields="problem",
            answer_fields="solution",
        ),
        Benchmark(
            "math500",
            "MATH-500 (OpenAI PRM800K split of MATH test)",
            first_of("problem"),
            first_of("solution", "answer"),
            id_field="unique_id",
            hub="HuggingFaceH4/MATH-500",
            question_fields="problem",
            answer_fields="solution",
        ),
        Benchmark(
            "humaneval",
            "HumanEval Python functions (164)",
            first_of("prompt"),
            first_of("canonical_solution"),
            id_field="task_id",
            hub="openai/openai_humaneval",
            local_pattern="*.jsonl*",
            question_fields="prompt",
            answer_fields="canonical_solution",
        ),
        Benchmark(
            "mbpp",
            "Mostly Basic Python Problems",
            first_of("text", "prompt"),
            first_of("code"),
            id_field="task_id",
            hub="google-research-datasets/mbpp",
            hub_configs=("full",),
            question_fields="text",
            answer_fields="code",
        ),
        Benchmark(
            "mmlu",
            "MMLU multiple choice, 57 subjects (test, 14042)",
            _mc_question,
            _mc_answer,
            hub="cais/mmlu",
            hub_configs=("all",),
            local_pattern="*_test.csv",
            csv_columns=("question", "A", "B", "C", "D", "answer"),
            question_fields="question",
            answer_fields="correct option",
            options=_mc_options,
        ),
        Benchmark(
            "ifeval",
            "IFEval verifiable instructions (541)",
            first_of("prompt"),
            lambda row: "",
            id_field="key",
            hub="google/IFEval",
            hub_split="train",
            question_fields="prompt",
        ),
        Benchmark(
            "bbh",
            "BIG-Bench Hard, 27 tasks",
            first_of("input"),
            first_of("target"),
            hub="lukaemon/bbh",
            local_pattern="*.json",
            question_fields="input",
            answer_fields="target",
        ),
        Benchmark(
            "truthfulqa",
            "TruthfulQA questions",
            first_of("Question", "question"),
            first_of("Best Answer", "best_answer"),
            hub="truthfulqa/truthful_qa",
            hub_configs=("generation",),
            hub_split="validation",
            local_pattern="*.csv",
            question_fields="Question",
            answer_fields="Best Answer",
        ),
        Benchmark(
            "alpacaeval",
            "AlpacaEval instructions (805) with reference outputs",
            first_of("instruction"),
            first_of("output"),
            hub="tatsu-lab/alpaca_eval",
            hub_configs=("alpaca_eval",),
            hub_split="eval",
            local_pattern="*.json",
            question_fields="instruction",
            answer_fields="output (reference model)",
        ),
        Benchmark(
            "mt_bench",
            "MT-Bench two-turn questions (80)",
            first_of("turns", "prompt"),
            _mt_bench_answer,
            id_field="question_id",
            hub="HuggingFaceH4/mt_bench_prompts",
            hub_split="train",
            question_fields="turns",
            answer_fields="reference",
        ),
        Benchmark(
            "arc",
            "AI2 Reasoning Challenge (Challenge and Easy)",
            _mc_question,
            _mc_answer,
            id_field="id",
            hub="allenai/ai2_arc",
            hub_configs=("ARC-Challenge", "ARC-Easy"),
            question_fields="question stem",
            answer_fields="correct option",
            options=_mc_options,
        ),
        Benchmark(
            "gpqa",
            "GPQA graduate-level science questions",
            _gpqa_question,
            first_of("Correct Answer"),
            id_field="Record ID",
            hub="Idavidrein/gpqa",
            hub_configs=("gpqa_main",),
            hub_split="train",
            local_pattern="*.csv",
            question_fields="Question",
            answer_fields="Correct Answer",
            options=_gpqa_options,
        ),
        Benchmark(
            "aime",
            "AIME problems (2024: 30)",
            first_of("problem", "question"),
            first_of("solution", "answer"),
            id_field="id",
            hub="HuggingFaceH4/aime_2024",
            hub_split="train",
            question_fields="problem",
            answer_fields="solution (else answer)",
        ),
        Benchmark(
            "amc",
            "AMC 12 problems (2023: 40)",
            first_of("problem", "question"),
            first_of("answer"),
            id_field="id",
            hub="AI-MO/aimo-validation-amc",
            hub_split="train",
            question_fields="problem",
            answer_fields="answer",
        ),
    ]
}


def custom_benchmark(name: str, question: list[str], answer: list[str], id_field: str | None = None) -> Benchmark:
    """A benchmark from any file: ``question`` and ``answer`` name the fields (joined by newlines)."""
    if not question:
        raise InputError(f"benchmark {name!r}: name at least one question field")
    return Benchmark(
        name,
        f"custom ({'+'.join(question)} / {'+'.join(answer) or '-'})",
        joined(*question),
        joined(*answer),
        id_field=id_field,
        local_pattern="*",
        question_fields="+".join(question),
        answer_fields="+".join(answer),
    )


def _local_files(path: Path, bench: Benchmark) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder (benchmark {bench.name})")
    root = path / "test" if (path / "test").is_dir() else path
    files = sorted(p for p in root.rglob(bench.local_pattern) if p.is_file())
    if not files:
        raise InputError(f"{path}: no {bench.local_pattern} files for benchmark {bench.name}")
    return files


def _headerless_csv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, Row]]:
    with open_binary(path) as f:
        reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
        for line_no, fields in enumerate(reader, start=1):
            if not fields:
                continue
            if len(fields) != len(columns):
                raise InputError(f"{path}:{reader.line_num}: expected {len(columns)} fields ({', '.join(columns)}), got {len(fields)}")
            yield f"{path}:{line_no}", dict(zip(columns, fields, strict=True))


def _object_file(path: Path) -> Iterator[tuple[str, Row]]:
    """A JSON file holding one row (the original MATH release: one problem per file)."""
    with open_binary(path) as f:
        try:
            value = orjson.loads(f.read())
        except orjson.JSONDecodeError as e:
            raise InputError(f"{path}: malformed JSON: {e}") from None
    yield str(path), value


def _is_single_object(path: Path) -> bool:
    if not path.name.endswith(".json"):
        return False
    with open_binary(path) as f:
        head = f.read(1 << 16).lstrip()
    if not head.startswith(b"{"):
        return False
    try:
        value = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and not any(isinstance(v, list) and v and isinstance(v[0], dict) for v in value.values())


def _file_rows(path: Path, bench: Benchmark) -> Iterator[tuple[str, Row]]:
    """(location, row) of every row of one local file, in its original format."""
    if bench.csv_columns and path.name.endswith((".csv", ".csv.gz")):
        with open_binary(path) as f:
            first = f.readline().decode("utf-8-sig", "replace").strip().split(",")[0].lower()
        if first != bench.csv_columns[0]:  # the Hendrycks CSVs have no header row
            yield from _headerless_csv(path, bench.csv_columns)
            return
    if _is_single_object(path):
        yield from _object_file(path)
        return
    for raw in read_raw(resolve_input(str(path))):
        if raw.error is not None:
            raise InputError(f"{raw.location}: {raw.error.reason}")
        assert raw.data is not None
        yield str(raw.location), raw.data


def _hub_rows(bench: Benchmark, name: str) -> Iterator[tuple[str, Row]]:
    import datasets

    for config in bench.hub_configs:
        try:
            ds = datasets.load_dataset(name, config, split=bench.hub_split)
        except Exception as e:  # offline, gated, renamed: say which benchmark and how to pass a local copy
            raise InputError(
                f"benchmark {bench.name}: could not load {name}"
                f"{'@' + config if config else ''} from the hub ({type(e).__name__}: {e}); "
                f"pass a local copy as {bench.name}=PATH"
            ) from None
        for index, row in enumerate(ds):
            yield f"{name}{'@' + config if config else ''}[{index}]", row


def _item_id(bench: Benchmark, row: Row, prefix: str, index: int) -> str:
    if bench.id_field and row.get(bench.id_field) not in (None, ""):
        return _text(row[bench.id_field])
    return f"{prefix}{index}"


@dataclass
class BenchmarkItems:
    """The items of one benchmark and how many rows were skipped for having no text."""

    name: str
    items: pl.DataFrame
    origin: str
    skipped_empty: int = 0


def load_benchmark(name: str, path: str | None = None, bench: Benchmark | None = None) -> BenchmarkItems:
    """Items of benchmark ``name``: from ``path`` (a file or folder in its original format) or the hub."""
    bench = bench or REGISTRY.get(name)
    if bench is None:
        raise InputError(
            f"unknown benchmark {name!r}{closest(name, REGISTRY)} (registered: {', '.join(sorted(REGISTRY))}); "
            "a custom one needs a path and its fields (see `thresher benchmarks`)"
        )
    ids: list[str] = []
    questions: list[str] = []
    answers: list[str] = []
    options: list[str] = []
    skipped = 0
    if path is not None:
        files = _local_files(Path(path), bench)
        sources: Iterator[tuple[str, Iterator[tuple[str, Row]]]] = (
            (f"{p.stem.split('.')[0]}/" if len(files) > 1 else "", _file_rows(p, bench)) for p in files
        )
        origin = path
    else:
        if bench.hub is None:
            raise InputError(f"benchmark {bench.name} has no hub dataset; pass it as {bench.name}=PATH")
        sources = iter([("", _hub_rows(bench, bench.hub))])
        origin = f"hf:{bench.hub}"
    for prefix, rows in sources:
        for index, (location, row) in enumerate(rows):
            try:
                question, answer = bench.question(row).strip(), bench.answer(row).strip()
                choices = bench.options(row).strip() if bench.options else ""
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise InputError(f"{location}: not a {bench.name} row ({type(e).__name__}: {e})") from None
            if not question and not answer:
                skipped += 1
                continue
            ids.append(_item_id(bench, row, prefix, index))
            questions.append(question)
            answers.append(answer)
            options.append(choices)
    items = pl.DataFrame(
        {"bench": [bench.name] * len(ids), "bench_id": ids, "question": questions, "answer": answers, "options": options},
        schema=ITEM_SCHEMA,
    )
    if items.is_empty():
        expected = "; ".join(
            f"{what}: {fields}" for what, fields in (("question", bench.question_fields), ("answer", bench.answer_fields)) if fields
        )
        raise InputError(
            f"{origin}: benchmark {bench.name} has no items with text"
            + (f" (expected the fields {expected}); is this the right file?" if expected else "")
        )
    return BenchmarkItems(bench.name, items, origin, skipped)


def parse_bench_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` (from the hub) or ``NAME=PATH`` (a local file or folder)."""
    name, sep, path = spec.partition("=")
    name = name.strip().lower()
    if not name or (sep and not path):
        raise InputError(f"--bench {spec!r}: expected NAME or NAME=PATH")
    return name, (path if sep else None)


def parse_field_map(spec: str) -> tuple[str, list[str], list[str], str | None]:
    """``NAME:question=F1+F2,answer=F3,id=F4`` → (name, question fields, answer fields, id field)."""
    name, sep, mapping = spec.partition(":")
    if not sep:
        raise InputError(f"--bench-fields {spec!r}: expected NAME:question=FIELD[+FIELD],answer=FIELD[,id=FIELD]")
    parts: dict[str, list[str]] = {}
    for item in mapping.split(","):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in ("question", "answer", "id"):
            raise InputError(f"--bench-fields {spec!r}: {item!r} is not question=…, answer=… or id=…")
        parts[key.strip()] = [v.strip() for v in value.split("+") if v.strip()]
    ident = parts.get("id", [None])[0] if parts.get("id") else None
    return name.strip().lower(), parts.get("question", []), parts.get("answer", []), ident


def load_benchmarks(specs: list[str], field_maps: list[str] | None = None) -> list[BenchmarkItems]:
    """Every ``--bench`` spec loaded; ``field_maps`` define custom benchmarks (or override registered fields)."""
    custom = {}
    for spec in field_maps or []:
        name, question, answer, ident = parse_field_map(spec)
        custom[name] = custom_benchmark(name, question, answer, ident)
    loaded = []
    seen = set()
    for spec in specs:
        name, path = parse_bench_spec(spec)
        if name in seen:
            raise InputError(f"--bench {name} is given twice")
        seen.add(name)
        bench = custom.get(name) or REGISTRY.get(name)
        if bench is None:
            raise InputError(
                f"unknown benchmark {name!r}{closest(name, [*REGISTRY, *custom])} (registered: {', '.join(sorted(REGISTRY))}); "
                f"for a custom one add --bench-fields {name}:question=FIELD,answer=FIELD"
            )
        if name in custom and path is None:
            raise InputError(f"custom benchmark {name} needs a path: --bench {name}=PATH")
        loaded.append(load_benchmark(name, path, bench))
    return loaded
