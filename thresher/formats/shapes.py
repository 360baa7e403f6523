"""Shapes: the common layouts of post-training rows, how to recognise them, and how to convert them.

A shape is detected once per input from the first parseable row; every row of that
input is then converted with it, so a row that lacks a field the shape needs gets a
clear "missing field" error instead of being silently read another way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from thresher.errors import RowError
from thresher.formats import messages as msg
from thresher.records import CONTENT_FIELDS, Kind, kind_of_columns

Content = dict[str, Any]
Converter = Callable[[dict[str, Any], Kind, "ConvertOptions"], tuple[Content, set[str]]]

PROMPT_KEYS = ("question", "problem", "prompt", "query")
ANSWER_KEYS = ("answer", "final_answer", "solution", "response", "output", "completion")


@dataclass(frozen=True)
class ConvertOptions:
    """Choices that apply to every row of a conversion."""

    verifier: str = "math"  # RLVR rows without a verifier field get this one


@dataclass(frozen=True)
class Shape:
    """A row layout: its name, the kinds it can become (first = default), and its converter."""

    name: str
    kinds: tuple[Kind, ...]
    matches: Callable[[set[str]], bool]
    convert: Converter
    description: str


def _get(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise RowError("missing_field", f"missing field {key!r}")
    return row[key]


def _first_key(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in row and row[key] is not None:
            return key
    raise RowError("missing_field", f"missing field: one of {list(dict.fromkeys(keys))}")


# ---------------------------------------------------------------- ground truth


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{…}`` in ``text`` (braces balanced), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
    return None


def ground_truth_of(row: dict[str, Any]) -> tuple[str, str]:
    """The verifiable answer of a question/answer row, and the key it came from.

    GSM8K answers end in ``#### N``; MATH solutions box the answer; otherwise the answer field is taken whole.
    """
    for key in ("ground_truth", "final_answer", "answer"):
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), key
        text = msg.require_text(value, key)
        if "####" in text:
            text = text.rsplit("####", 1)[1]
        return msg.require_text(text.strip(), key), key
    if isinstance(row.get("solution"), str):
        boxed = last_boxed(row["solution"])
        if boxed:
            return boxed, "solution"
        raise RowError("missing_field", "no answer field and no \\boxed{} answer in 'solution'")
    raise RowError("missing_field", "missing field: one of ['ground_truth', 'final_answer', 'answer', 'solution']")


def _verifier(row: dict[str, Any], options: ConvertOptions) -> tuple[str, set[str]]:
    for key in ("verifier", "dataset"):
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key], {key}
    return options.verifier, set()


def _ground_truth_text(value: Any) -> str:
    """Tülu-style ground truths may be lists or objects; store them as JSON text."""
    if isinstance(value, str):
        return msg.require_text(value, "ground_truth")
    if value is None:
        raise RowError("missing_field", "ground_truth: null")
    return orjson.dumps(value).decode()


# ---------------------------------------------------------------- converters


def _canonical(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    content: Content = {}
    for name in CONTENT_FIELDS[kind]:
        value = _get(row, name)
        if name in ("ground_truth", "verifier"):
            content[name] = msg.require_text(value, name)
        else:
            content[name] = msg.messages(value, name)
    return content, set(CONTENT_FIELDS[kind]) | {"metadata", "provenance"}


def _messages_with(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """OpenAI ``messages`` (SFT), or ``messages`` + ``ground_truth`` (RLVR)."""
    messages = msg.messages(_get(row, "messages"), "messages")
    if kind is Kind.RLVR:
        msg.require_role(messages, "user", "messages")
        verifier, used = _verifier(row, options)
        truth = _ground_truth_text(_get(row, "ground_truth"))
        return {"messages": messages, "ground_truth": truth, "verifier": verifier}, {"messages", "ground_truth"} | used
    msg.require_role(messages, "assistant", "messages")
    return {"messages": messages}, {"messages"}


def _sharegpt(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """ShareGPT ``conversations`` of ``{from, value}``, with an optional ``system`` prompt."""
    messages = msg.messages(_get(row, "conversations"), "conversations")
    used = {"conversations"}
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.insert(0, {"role": "system", "content": system})
        used.add("system")
    elif system == "":
        used.add("system")
    msg.require_role(messages, "assistant", "conversations")
    return {"messages": messages}, used


def _alpaca_turns(row: dict[str, Any], instruction: Any, input_text: Any) -> list[msg.Message]:
    text = msg.require_text(instruction, "instruction")
    if input_text is not None:
        if not isinstance(input_text, str):
            raise RowError("wrong_type", f"input: expected a string, got {type(input_text).__name__}")
        if input_text.strip():
            text = f"{text}\n\n{input_text}"
    turns: list[msg.Message] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        turns.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError("wrong_type", f"history: expected a list of [prompt, response] pairs, got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RowError("wrong_type", f"history[{i}]: expected a [prompt, response] pair")
        turns.append({"role": "user", "content": msg.require_text(pair[0], f"history[{i}][0]")})
        turns.append({"role": "assistant", "content": msg.require_text(pair[1], f"history[{i}][1]")})
    turns.append({"role": "user", "content": text})
    return turns


def _alpaca(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """Alpaca ``instruction`` / ``input`` / ``output`` (also ``response``, ``history``, ``system``)."""
    out_key = "output" if "output" in row else "response"
    output = msg.require_text(_get(row, out_key), out_key)
    turns = _alpaca_turns(row, _get(row, "instruction"), row.get("input"))
    used = {"instruction", "input", out_key, "history", "system"}
    if row.get("response") == output:
        used.add("response")  # an exact copy of the output: nothing is lost by not repeating it
    return {"messages": [*turns, {"role": "assistant", "content": output}]}, used


def _self_instruct(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """Self-Instruct seed tasks: ``instruction`` plus exactly one ``instances`` entry of ``{input, output}``."""
    instances = _get(row, "instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        count = len(instances) if isinstance(instances, list) else type(instances).__name__
        raise RowError("bad_shape", f"instances: expected exactly one {{input, output}} object, got {count}")
    instance = instances[0]
    output = msg.require_text(instance.get("output"), "instances[0].output")
    turns = _alpaca_turns(row, _get(row, "instruction"), instance.get("input"))
    return {"messages": [*turns, {"role": "assistant", "content": output}]}, {"instruction", "instances"}


def _prompt_completion(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """``prompt`` + ``completion`` (strings or message lists)."""
    prompt = msg.as_messages(_get(row, "prompt"), "prompt", "user")
    completion = msg.as_messages(_get(row, "completion"), "completion", "assistant")
    msg.require_role(completion, "assistant", "completion")
    return {"messages": prompt + completion}, {"prompt", "completion"}


def _question_answer(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """``question``/``problem`` with ``answer``/``solution``: an SFT pair, or an RLVR problem."""
    prompt_key = _first_key(row, PROMPT_KEYS)
    prompt = [{"role": "user", "content": msg.require_text(row[prompt_key], prompt_key)}]
    if kind is Kind.RLVR:
        truth, truth_key = ground_truth_of(row)
        verifier, used = _verifier(row, options)
        return {"messages": prompt, "ground_truth": truth, "verifier": verifier}, {prompt_key, truth_key} | used
    # SFT: a worked solution teaches more than a bare answer, so prefer it.
    answer_key = _first_key(row, tuple(dict.fromkeys(("solution", *ANSWER_KEYS))))  # solution first, each key once
    answer = row[answer_key]
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    reply = {"role": "assistant", "content": msg.require_text(answer, answer_key)}
    return {"messages": [*prompt, reply]}, {prompt_key, answer_key}


def _ifeval(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """IFEval's ``prompt`` with its ``instruction_id_list`` and ``kwargs``: an RLVR row for the ``ifeval`` verifier."""
    prompt = [{"role": "user", "content": msg.require_text(_get(row, "prompt"), "prompt")}]
    ids, kwargs = _get(row, "instruction_id_list"), row.get("kwargs") or [{} for _ in _get(row, "instruction_id_list")]
    if not isinstance(ids, list) or not ids:
        raise RowError("wrong_type", "instruction_id_list: expected a non-empty list")
    truth = orjson.dumps({"instruction_id_list": ids, "kwargs": kwargs}).decode()
    return {"messages": prompt, "ground_truth": truth, "verifier": "ifeval"}, {"prompt", "instruction_id_list", "kwargs"}


def _humaneval(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """HumanEval's function ``prompt``, ``test`` and ``entry_point``: the model completes the function, the
    ``code`` verifier runs the program (the prompt, then the response's code) against ``check(entry_point)``."""
    code = msg.require_text(_get(row, "prompt"), "prompt")
    ask = f"Complete this Python function. Reply with the whole function in one ```python block.\n\n```python\n{code}```"
    truth = {"tests": msg.require_text(_get(row, "test"), "test"), "entry_point": msg.require_text(_get(row, "entry_point"), "entry_point")}
    return {"messages": [{"role": "user", "content": ask}], "ground_truth": orjson.dumps(truth).decode(), "verifier": "code"}, {
        "prompt",
        "test",
        "entry_point",
    }


def _mbpp(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """MBPP's task ``text`` and ``test_list`` (asserts; ``test_setup_code`` first): the prompt shows the tests,
    as MBPP's own prompt does, so the model knows the function's name and signature."""
    text = msg.require_text(_get(row, "text"), "text")
    tests = _get(row, "test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise RowError("wrong_type", "test_list: expected a non-empty list of strings")
    shown = "\n".join(tests)
    ask = f"{text}\nYour code should pass these tests:\n\n```python\n{shown}\n```\nReply with the code in one ```python block."
    setup = row.get("test_setup_code") or ""
    truth = {"tests": f"{setup}\n{shown}\n" if setup else f"{shown}\n"}
    used = {"text", "test_list", "test_setup_code"} & set(row)
    return {"messages": [{"role": "user", "content": ask}], "ground_truth": orjson.dumps(truth).decode(), "verifier": "code"}, used


def _strip_shared_prefix(prompt: list[msg.Message], turns: list[msg.Message], where: str) -> list[msg.Message]:
    """Chosen/rejected lists that repeat the prompt (UltraFeedback style) lose that prefix."""
    if len(turns) > len(prompt) and turns[: len(prompt)] == prompt:
        turns = turns[len(prompt) :]
    if turns[0]["role"] != "assistant":
        raise RowError("bad_shape", f"{where}: must start with an assistant turn after the prompt, got {turns[0]['role']!r}")
    return turns


def _pair(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """``chosen``/``rejected`` with a ``prompt``, ``conversations`` or ``messages`` context, or HH transcripts."""
    context_key = next((k for k in ("prompt", "conversations", "messages") if k in row), None)
    if context_key is None:
        return _hh_pair(row)
    prompt = msg.as_messages(row[context_key], context_key, "user")
    chosen = _strip_shared_prefix(prompt, msg.as_messages(_get(row, "chosen"), "chosen", "assistant"), "chosen")
    rejected = _strip_shared_prefix(prompt, msg.as_messages(_get(row, "rejected"), "rejected", "assistant"), "rejected")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, {context_key, "chosen", "rejected"}


def _hh_pair(row: dict[str, Any]) -> tuple[Content, set[str]]:
    """HH-RLHF: two full transcripts that share everything up to the final assistant turn."""
    chosen = msg.parse_hh_transcript(_get(row, "chosen"), "chosen")
    rejected = msg.parse_hh_transcript(_get(row, "rejected"), "rejected")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise RowError("bad_transcript", f"{name}: transcript does not end with an assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("bad_transcript", "chosen and rejected transcripts differ before their final assistant turn")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}, {"chosen", "rejected"}


def _pairwise_annotation(row: dict[str, Any], kind: Kind, options: ConvertOptions) -> tuple[Content, set[str]]:
    """AlpacaEval annotations: ``instruction``, ``output_1``, ``output_2`` and ``preference`` (1 or 2, weighted)."""
    prompt = [{"role": "user", "content": msg.require_text(_get(row, "instruction"), "instruction")}]
    outputs = [msg.require_text(_get(row, key), key) for key in ("output_1", "output_2")]
    preference = _get(row, "preference")
    if not isinstance(preference, (int, float)) or isinstance(preference, bool) or math.isnan(preference):
        raise RowError("wrong_type", f"preference: expected a number in [1, 2], got {preference!r}")
    if not 1 <= preference <= 2:
        raise RowError("wrong_type", f"preference: expected a number in [1, 2], got {preference}")
    if preference == 1.5:
        raise RowError("tie", "preference: 1.5 is a tie, so neither output is chosen")
    better = 0 if preference < 1.5 else 1
    chosen = [{"role": "assistant", "content": outputs[better]}]
    rejected = [{"role": "assistant", "content": outputs[1 - better]}]
    # `preference` stays in metadata: it records how strongly the judge preferred.
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, {"instruction", "output_1", "output_2"}


# ---------------------------------------------------------------- the registry


def _has(*keys: str) -> Callable[[set[str]], bool]:
    return lambda cols: set(keys) <= cols


SHAPES: tuple[Shape, ...] = (
    Shape(
        "canonical",
        (Kind.SFT, Kind.PREFERENCE, Kind.RLVR),
        lambda c: kind_of_columns(c) is not None,
        _canonical,
        "Thresher's own rows (id, source, provenance, content)",
    ),
    Shape(
        "pairwise_annotation",
        (Kind.PREFERENCE,),
        _has("instruction", "output_1", "output_2", "preference"),
        _pairwise_annotation,
        "AlpacaEval judge annotations: instruction, output_1, output_2, preference",
    ),
    Shape(
        "pair",
        (Kind.PREFERENCE,),
        _has("chosen", "rejected"),
        _pair,
        "chosen/rejected with prompt, conversations or messages; or HH-RLHF transcripts",
    ),
    Shape(
        "messages", (Kind.SFT, Kind.RLVR), _has("messages"), _messages_with, "OpenAI messages [{role, content}] (+ ground_truth for RLVR)"
    ),
    Shape("sharegpt", (Kind.SFT,), _has("conversations"), _sharegpt, "ShareGPT conversations [{from, value}] (+ system)"),
    Shape(
        "self_instruct",
        (Kind.SFT,),
        _has("instruction", "instances"),
        _self_instruct,
        "Self-Instruct tasks: instruction + instances [{input, output}]",
    ),
    Shape(
        "alpaca",
        (Kind.SFT,),
        lambda c: "instruction" in c and bool({"output", "response"} & c),
        _alpaca,
        "Alpaca instruction/input/output (+ history, system)",
    ),
    Shape("prompt_completion", (Kind.SFT,), _has("prompt", "completion"), _prompt_completion, "prompt + completion"),
    Shape(
        "ifeval",
        (Kind.RLVR,),
        _has("prompt", "instruction_id_list"),
        _ifeval,
        "IFEval: prompt + instruction_id_list + kwargs (verifier ifeval)",
    ),
    Shape(
        "humaneval",
        (Kind.RLVR,),
        _has("prompt", "test", "entry_point"),
        _humaneval,
        "HumanEval: prompt + test + entry_point (verifier code)",
    ),
    Shape("mbpp", (Kind.RLVR,), _has("text", "test_list"), _mbpp, "MBPP: text + test_list (+ test_setup_code; verifier code)"),
    Shape(
        "question_answer",
        (Kind.SFT, Kind.RLVR),
        lambda c: bool(set(PROMPT_KEYS) & c) and bool({"ground_truth", *ANSWER_KEYS} & c),
        _question_answer,
        "question/problem + answer/solution (GSM8K, MATH, ...)",
    ),
)
SHAPES_BY_NAME = {shape.name: shape for shape in SHAPES}


def detect_shape(columns: set[str]) -> Shape | None:
    """The first shape whose fields are all present in ``columns``."""
    return next((shape for shape in SHAPES if shape.matches(columns)), None)


def default_kind(shape: Shape, columns: set[str]) -> Kind:
    """The kind a shape converts to when none is asked for."""
    return allowed_kinds(shape, columns)[0] if shape.name == "canonical" else _default_kind(shape, columns)


def allowed_kinds(shape: Shape, columns: set[str]) -> tuple[Kind, ...]:
    """The kinds rows of this shape (with these columns) can be converted to."""
    if shape.name == "canonical":
        kind = kind_of_columns(columns)
        assert kind is not None
        return (kind,)
    return shape.kinds


def _default_kind(shape: Shape, columns: set[str]) -> Kind:
    if Kind.RLVR in shape.kinds and "ground_truth" in columns:
        return Kind.RLVR
    return shape.kinds[0]
