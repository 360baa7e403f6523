"""What every spec and config file shares (mixture, synthesis and training specs, pipelines): reading YAML with
limits (an alias bomb is refused), ``${VAR:-default}`` expansion, paths relative to the spec's folder, the strict
pydantic base (unknown keys are errors), and errors that name the file, the line and the field."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from thresher.errors import SpecError, closest

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


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec models an annotation names (``Amount | None`` → ``[Amount]``, ``list[SourceSpec]`` → ``[SourceSpec]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model that holds the value at ``loc`` (list indices, mapping keys and pydantic's union tags
    are stepped over), or None when ``loc`` leaves the models."""
    annotation: Any = model
    for key in loc:
        models = models_in(annotation)
        owner = next((m for m in models if isinstance(key, str) and key in m.model_fields), None)
        if owner is not None:
            annotation = owner.model_fields[key].annotation
        elif not models and isinstance(key, str) and not typing.get_args(annotation):
            return None
    found = models_in(annotation)
    return found[0] if len(found) == 1 else None


def _example(model: type[BaseModel], value: Any) -> str:
    """``{FIELD: VALUE}`` for the first field of ``model`` that takes a value like ``value``."""
    kind = type(value).__name__
    field = next((n for n, f in model.model_fields.items() if kind in str(f.annotation)), next(iter(model.model_fields), "..."))
    return "{" + f"{field}: {value}" + "}"


def error_parts(err: Any, model: type[BaseModel] | None = None) -> tuple[tuple[Any, ...], str, str]:
    """A pydantic error as (location, dotted field, message), said the way a person fixes it: an unknown key
    names the closest field, a scalar where a section belongs shows the section's form."""
    loc = tuple(err["loc"])
    kind, message = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        holder = model_at(model, loc[:-1])
        known = list(holder.model_fields) if holder is not None else []
        message = f"unknown field{closest(str(loc[-1]), known)}" + (f" (fields here: {', '.join(known)})" if known else "")
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        holder = model_at(model, loc)
        value = err.get("input")
        if holder is not None:
            fields = ", ".join(holder.model_fields)
            name = str(loc[-1]) if loc else "the spec"
            example = f"; e.g. `{name}: {_example(holder, value)}`" if not isinstance(value, dict | list) else ""
            message = f"expected a section with the fields {fields}, got {value!r}{example}"
        else:
            message = f"expected a mapping (KEY: VALUE lines), got {err.get('input')!r}"
    elif kind == "list_type":
        message = f"expected a list (lines starting with '- '), got {err.get('input')!r}"
    elif kind == "missing":
        message = "missing (required)"
    elif kind in ("literal_error", "enum") and isinstance(err.get("input"), str):
        expected = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        message += closest(err["input"], expected)
    return loc, ".".join(str(k) for k in loc), message


def override_for(dotted: str, keys: Any) -> str | None:
    """The override key (dotted) among ``keys`` that set the field ``dotted``, if any."""
    return next((k for k in keys if dotted == k or dotted.startswith(k + ".")), None)


def validation_messages(
    error: ValidationError,
    origin: str,
    node: yaml.Node | None,
    overrides: dict[str, str] | None = None,
    model: type[BaseModel] | None = None,
) -> list[str]:
    """One ``origin:line: field: message`` per error; a field set by an override (``{dotted key: what was
    written}``) is named by that override, not by a line of the file."""
    lines = []
    seen = set()
    for err in error.errors():
        loc, dotted, message = error_parts(err, model)
        key = override_for(dotted, overrides or {})
        if key is not None:
            line = f"{origin}: override {(overrides or {})[key]}: {_field_path(loc)}: {message}"
        else:
            at = line_of(node, loc)
            line = f"{origin}:{at}: {_field_path(loc)}: {message}" if at else f"{origin}: {_field_path(loc)}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def overrides_from(args: list[str] | None) -> list[str]:
    """Command-line overrides as ``KEY=VALUE``: ``key=value``, ``--key value`` and ``--key=value`` are the same
    (TRL style), and dashes in a key are underscores (``--max-steps 3`` is ``max_steps=3``)."""
    out: list[str] = []
    items = list(args or [])
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key, eq, value = item[2:].partition("=")
            if not eq:
                if i + 1 >= len(items) or items[i + 1].startswith("--"):
                    raise SpecError(f"override {item}: give a value (--KEY VALUE or KEY=VALUE)")
                value = items[i + 1]
                i += 1
            item = f"{key}={value}"
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"override {item!r}: write KEY=VALUE, e.g. optim.lr=1e-5 (or --optim.lr 1e-5)")
        out.append(f"{key.strip().replace('-', '_')}={value}")
        i += 1
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data[a][b]… = value`` for ``a.b…``, creating sections; a number indexes a list (``sources.0.path``)."""
    keys = dotted.split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise SpecError(f"override {dotted}: {key} is not an index of a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                raise SpecError(f"override {dotted}: {key} is not a section")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    """Set each ``KEY=VALUE`` (dotted key, value parsed as YAML) in ``data``; returns ``{key: what was written}``."""
    applied: dict[str, str] = {}
    for item in overrides_from(overrides):
        key, value = item.split("=", 1)
        try:
            set_dotted(data, key, yaml.safe_load(value))
        except yaml.YAMLError as e:
            raise SpecError(f"override {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
        applied[key] = item
    return applied


def get_dotted(data: Any, dotted: str) -> Any:
    """``data[a][b]…`` for ``a.b…``, or None where a key is missing."""
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def rebase_paths(data: dict[str, Any], base: Path, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> None:
    """The one rule for relative paths: relative to the file they are written in. ``inputs`` (dotted fields) that
    name an existing file or folder relative to ``base`` become absolute (anything else, e.g. a hub id, stays);
    ``outputs`` (folders to write) relative to ``base`` always."""
    for dotted, always in [(d, False) for d in inputs] + [(d, True) for d in outputs]:
        value = get_dotted(data, dotted)
        if not isinstance(value, str) or not value:
            continue
        path = Path(expand(value)).expanduser()
        if not path.is_absolute() and (always or (base / path).exists()):
            set_dotted(data, dotted, str(base / path))


def parse_spec(
    text: str, origin: str, model: type[M], overrides: list[str] | None = None, prepare: Callable[[dict[str, Any]], None] | None = None
) -> M:
    """A ``model`` from YAML text (``prepare`` applied to the mapping, e.g. ``rebase_paths``), then ``KEY=VALUE``
    overrides; errors name ``origin``, the line (or the override) and the field. Aliases that would expand the
    document past ``MAX_EXPANDED_NODES`` nodes ("billion laughs") are refused."""
    node, data = load_yaml(text, origin)
    if prepare is not None:
        prepare(data)
    applied = apply_overrides(data, overrides) if overrides else {}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError("\n".join(validation_messages(e, origin, node, applied, model))) from None


def read_spec_text(path: Path, what: str = "spec") -> str:
    """The text of a spec (or config) file; an unreadable one is a SpecError that names it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the {what} ({e.strerror})") from None


def load_spec(path: str | Path, model: type[M], what: str = "spec", overrides: list[str] | None = None) -> M:
    """Read and validate the spec (or config) file at ``path`` as a ``model``, with ``KEY=VALUE`` overrides."""
    path = Path(path)
    return parse_spec(read_spec_text(path, what), str(path), model, overrides)
