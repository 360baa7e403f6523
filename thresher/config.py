"""What every spec and config file shares (mixture, synthesis and training specs, pipelines): reading YAML with
limits (an alias bomb is refused), ``${VAR:-default}`` expansion, paths relative to the spec's folder, the strict
pydantic base (unknown keys are errors), and errors that name the file, the line and the field."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from thresher.errors import SpecError

M = TypeVar("M", bound=BaseModel)

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def expand(text: str) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` replaced from the environment (an unset one without default stays)."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        found = os.environ.get(name)
        if found:
            return found
        return m.group(2) if m.group(2) is not None else m.group(0)

    return _VARIABLE.sub(value, text)


def resolve_path(text: str, base: Path) -> Path:
    """A path from the spec: variables expanded, ``~`` expanded, relative paths taken from the spec's folder."""
    path = Path(expand(text)).expanduser()
    return path if path.is_absolute() else base / path


class Strict(BaseModel):
    """The base of every spec model: an unknown key is an error (a typo never passes silently); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest ancestor that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if found is None:
                return line
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = []
    for key in loc:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{key}" if parts else str(key))
    return "".join(parts) or "(top level)"


MAX_EXPANDED_NODES = 1_000_000  # a spec that aliases expand beyond this is an attack, not a spec


def _expanded_nodes(root: yaml.Node | None, limit: int = MAX_EXPANDED_NODES) -> tuple[int, yaml.Node | None]:
    """How many nodes the document holds once every alias is expanded (counting stops past ``limit``), and
    the node whose expansion crossed it. PyYAML shares an aliased node, so this is counted on the graph,
    each node's expanded size once, never by expanding."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once; safe_load rejects it anyway
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise _TooBig(node)
        sizes[id(node)] = total
        return total

    if root is None:
        return 0, None
    try:
        return size(root), None
    except _TooBig as e:
        return limit + 1, e.node


class _TooBig(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def compose_checked(text: str, origin: str) -> yaml.Node | None:
    """The YAML node graph of ``text``, refused (SpecError) when its aliases expand past ``MAX_EXPANDED_NODES``."""
    node = yaml.compose(text)
    _, culprit = _expanded_nodes(node)
    if culprit is not None:
        raise SpecError(
            f"{origin}:{culprit.start_mark.line + 1}: YAML aliases here expand to more than "
            f"{MAX_EXPANDED_NODES:,} values; write the spec out instead of nesting aliases"
        )
    return node


def load_yaml(text: str, origin: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    """The node graph (for lines) and the mapping of a YAML spec; bad YAML, an alias bomb or a top level
    that is not a mapping is a SpecError naming ``origin`` (and the line)."""
    try:
        node = compose_checked(text, origin)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        raise SpecError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping at the top, got {type(data).__name__}")
    return node, data


def error_parts(err: Any) -> tuple[tuple[Any, ...], str, str]:
    """A pydantic error as (location, dotted field, message): "unknown field" for an extra key."""
    loc = tuple(err["loc"])
    message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    return loc, ".".join(str(k) for k in loc), message


def override_for(dotted: str, keys: Any) -> str | None:
    """The override key (dotted) among ``keys`` that set the field ``dotted``, if any."""
    return next((k for k in keys if dotted == k or dotted.startswith(k + ".")), None)


def validation_messages(error: ValidationError, origin: str, node: yaml.Node | None, overrides: dict[str, str] | None = None) -> list[str]:
    """One ``origin:line: field: message`` per error; a field set by an override (``{dotted key: what was
    written}``) is named by that override, not by a line of the file."""
    lines = []
    for err in error.errors():
        loc, dotted, message = error_parts(err)
        key = override_for(dotted, overrides or {})
        if key is not None:
            lines.append(f"{origin}: override {(overrides or {})[key]}: {_field_path(loc)}: {message}")
            continue
        line = line_of(node, loc)
        lines.append(f"{origin}:{line}: {_field_path(loc)}: {message}" if line else f"{origin}: {_field_path(loc)}: {message}")
    return lines


def parse_spec(text: str, origin: str, model: type[M]) -> M:
    """A ``model`` from YAML text; errors name ``origin``, the line and the field. Aliases that would expand
    the document past ``MAX_EXPANDED_NODES`` nodes ("billion laughs") are refused."""
    node, data = load_yaml(text, origin)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError("\n".join(validation_messages(e, origin, node))) from None


def read_spec_text(path: Path, what: str = "spec") -> str:
    """The text of a spec (or config) file; an unreadable one is a SpecError that names it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the {what} ({e.strerror})") from None


def load_spec(path: str | Path, model: type[M], what: str = "spec") -> M:
    """Read and validate the spec (or config) file at ``path`` as a ``model``."""
    path = Path(path)
    return parse_spec(read_spec_text(path, what), str(path), model)
