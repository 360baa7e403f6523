"""Prompt rows for synthesis: read from files or the hub (through the canonical readers), or made by
``prompts.py``; each row is the conversation up to the reply to be generated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from thresher.accounting import Account, QuarantineWriter
from thresher.convert import canonical_batches
from thresher.errors import InputError
from thresher.mixing.load import resolve_source
from thresher.records import Kind
from thresher.synth.spec import PromptSource


def prompt_part(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation without its trailing assistant turns: what the model is asked to continue."""
    end = len(messages)
    while end and messages[end - 1]["role"] == "assistant":
        end -= 1
    return [{"role": m["role"], "content": m["content"]} for m in messages[:end]]


def read_prompt_rows(source: PromptSource, base: Path, quarantine: QuarantineWriter) -> tuple[list[dict[str, Any]], Account]:
    """The source's rows as dicts (id, source, prompt, ground_truth, verifier, metadata), and their counts.
    Rows whose conversation ends without a user turn are removed with that reason."""
    spec = resolve_source(source, base)  # type: ignore[arg-type]  # PromptSource has the fields it reads
    kind = Kind(source.kind)
    counts = Account(source.name)
    rows: list[dict[str, Any]] = []
    try:
        for found, table in canonical_batches(spec, kind, counts, quarantine, shape_name=source.format):
            if found != kind:
                raise InputError(f"{spec.path}: rows are {found.value}, the source says kind: {kind.value}")
            for record in table.to_pylist():
                rows.append(
                    {
                        "id": record["id"],
                        "source": source.name,
                        "prompt": prompt_part(record["messages"]),
                        "ground_truth": record.get("ground_truth"),
                        "verifier": source.verifier or record.get("verifier"),
                        "metadata": record.get("metadata") or "{}",
                    }
                )
    except InputError as e:
        raise InputError(f"prompt source {source.name!r}: {e}") from None
    if source.limit is not None and len(rows) > source.limit:
        counts.removed[f"beyond limit {source.limit}"] += len(rows) - source.limit
        rows = rows[: source.limit]
    usable = [r for r in rows if r["prompt"] and r["prompt"][-1]["role"] == "user"]
    if len(usable) < len(rows):
        counts.removed["no user turn to answer"] += len(rows) - len(usable)
    counts.rows_out = len(usable)
    return usable, counts


def metadata_of(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = orjson.loads(row.get("metadata") or "{}")
    except orjson.JSONDecodeError:
        return {"input_metadata": row.get("metadata")}
    return value if isinstance(value, dict) else {"input_metadata": value}
