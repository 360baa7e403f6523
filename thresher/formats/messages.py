"""Messages: role names, validation, and parsing of HH-RLHF style transcripts."""

from __future__ import annotations

import re
from typing import Any

from thresher.errors import RowError
from thresher.records import ROLES

Message = dict[str, str]

# Role names seen in the wild, mapped to the canonical four.
ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require_text(value: Any, where: str) -> str:
    """``value`` as a non-empty string, or a RowError naming ``where``."""
    if not isinstance(value, str):
        raise RowError("wrong_type", f"{where}: expected a string, got {_type_name(value)}")
    if not value.strip():
        raise RowError("empty_content", f"{where}: empty content")
    return value


def _content_text(content: Any, where: str) -> str:
    """Message content as text; OpenAI lists of ``{"type": "text", "text": ...}`` parts are joined."""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise RowError("wrong_type", f"{where}[{i}]: only text content parts are supported")
            parts.append(require_text(part.get("text"), f"{where}[{i}].text"))
        content = "".join(parts)
    return require_text(content, where)


def canonical_role(role: Any, where: str) -> str:
    """The canonical role for ``role``, or a RowError for an unknown one."""
    if not isinstance(role, str):
        raise RowError("wrong_type", f"{where}: role must be a string, got {_type_name(role)}")
    mapped = ROLE_ALIASES.get(role.strip().lower())
    if mapped is None:
        raise RowError("unknown_role", f"{where}: unknown role {role!r} (expected one of {sorted(ROLES)})")
    return mapped


def message(value: Any, where: str) -> Message:
    """One message from an OpenAI ``{role, content}`` or ShareGPT ``{from, value}`` object."""
    if not isinstance(value, dict):
        raise RowError("wrong_type", f"{where}: expected a message object, got {_type_name(value)}")
    if "role" in value:
        role_key, content_key = "role", "content"
    elif "from" in value:
        role_key, content_key = "from", "value"
    else:
        raise RowError("missing_field", f"{where}: a message needs 'role' and 'content' (or 'from' and 'value')")
    if content_key not in value:
        raise RowError("missing_field", f"{where}: missing field {content_key!r}")
    role = canonical_role(value[role_key], f"{where}.{role_key}")
    return {"role": role, "content": _content_text(value[content_key], f"{where}.{content_key}")}


def messages(value: Any, where: str) -> list[Message]:
    """A non-empty list of messages, each validated."""
    if not isinstance(value, list):
        raise RowError("wrong_type", f"{where}: expected a list of messages, got {_type_name(value)}")
    if not value:
        raise RowError("empty_content", f"{where}: no messages")
    return [message(item, f"{where}[{i}]") for i, item in enumerate(value)]


def as_messages(value: Any, where: str, role: str) -> list[Message]:
    """A string (one message of ``role``), a message object, or a list of messages."""
    if isinstance(value, str):
        return [{"role": role, "content": require_text(value, where)}]
    if isinstance(value, dict):
        return [message(value, where)]
    return messages(value, where)


def require_role(msgs: list[Message], role: str, where: str) -> None:
    """A RowError unless some message has ``role``."""
    if not any(m["role"] == role for m in msgs):
        raise RowError("missing_turn", f"{where}: no {role} message")


def parse_hh_transcript(text: Any, where: str) -> list[Message]:
    """Split an HH-RLHF ``\\n\\nHuman: … \\n\\nAssistant: …`` transcript into messages."""
    if not isinstance(text, str):
        raise RowError("wrong_type", f"{where}: expected a transcript string, got {_type_name(text)}")
    pieces = _HH_TURN.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        raise RowError("bad_transcript", f"{where}: not a '\\n\\nHuman: … \\n\\nAssistant: …' transcript")
    out = []
    for turn, (speaker, content) in enumerate(zip(pieces[1::2], pieces[2::2], strict=True)):
        role = "user" if speaker == "Human" else "assistant"
        out.append({"role": role, "content": require_text(content, f"{where} turn {turn} ({speaker})")})
    return out
