"""The stage registry: one class per kind of pipeline stage says everything the pipeline needs to know about it —
which stage fields it needs, how its ``options`` or ``spec`` are validated (before anything runs), the outputs
later stages can refer to, how it runs, the line the CLI prints, and its section of the pipeline report.

Adding a kind touches one place: subclass ``StageKind`` and decorate it with ``@register``::

    @register
    class Shout(StageKind):
        name = "shout"
        needs = ("inputs",)
        outputs = {"text": "shout.txt"}

        @classmethod
        def run(cls, stage: ReadyStage) -> dict[str, Any]:
            text = Path(stage.inputs[0]).read_text().upper()
            (stage.folder / "shout.txt").write_text(text)
            return {"account": Account.of("shout", 1, 1).as_dict()}  # what describe and section show

The built-in kinds live in ``thresher.pipeline.kinds``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from thresher.accounting import Account
from thresher.errors import SpecError, closest


class OptionError(SpecError):
    """A bad stage option; ``loc`` is its key path inside ``options`` (for the spec's file:line)."""

    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


def unknown_key(key: str, known: list[str] | set[str], what: str) -> str:
    """``what: unknown option 'KEY'; did you mean 'CLOSEST'? (known: ...)``."""
    return f"{what}: unknown option {key!r}{closest(key, known)} (known: {', '.join(sorted(known))})"


def dataclass_from(cls: type, options: Any, what: str, loc: tuple[str, ...] = ()) -> Any:
    """``cls(**options)`` for a configuration dataclass; an unknown key or bad value is an ``OptionError`` at ``loc``."""
    if not isinstance(options, dict):
        raise OptionError(f"{what}: expected a mapping, got {type(options).__name__}", loc)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(unknown_key(unknown[0], known, what), (*loc, unknown[0]))
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise OptionError(f"{what}: {e}", loc) from None


@dataclass
class ReadyStage:
    """A stage ready to run: references substituted, input paths absolute, its spec validated."""

    name: str
    kind: str
    folder: Path  # the stage's own folder (created before ``run``)
    base: Path  # where the spec's relative paths start
    inputs: list[str]
    train: list[str]
    bench: list[str]
    bench_fields: list[str] | None
    options: dict[str, Any]
    spec: Any  # the validated spec model (``spec_model``), or None
    spec_mapping: dict[str, Any] | None  # the same spec as a mapping (e.g. to validate again with run-time fields)


class StageKind:
    """One kind of stage. Class attributes describe it; ``run`` does the work; the rest have defaults."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # StageSpec fields that must be given: inputs, train, bench, spec
    outputs: ClassVar[dict[str, str]] = {}  # output name → path inside the stage folder; the first is the main one
    own_report: ClassVar[str | None] = None  # the stage's own HTML report inside its folder, linked from the pipeline's
    run_time_fields: ClassVar[dict[str, str]] = {}  # spec fields the stage sets when it runs (placeholders when planning)
    path_fields: ClassVar[tuple[str, ...]] = ()  # dotted spec fields naming paths, made absolute from the spec's folder

    @classmethod
    def spec_model(cls) -> type[BaseModel] | None:
        """What ``spec`` (a file or an inline mapping) is validated against when the pipeline is planned; None: no spec."""
        return None

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Validate ``options`` without running anything; raise ``OptionError`` (default: this kind takes none)."""
        if options:
            raise OptionError(f"a {cls.name} stage takes no options (its settings go in spec)", (next(iter(options)),))

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        """Run into ``stage.folder``; return a JSON-able summary (kept in stage.json, shown by ``describe``/``section``)
        whose ``account`` (``Account.as_dict()``), when the kind moves rows, is the stage's row accounting."""
        raise NotImplementedError

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        """The one line ``thresher run`` prints for a finished stage."""
        if "account" in summary:
            return Account.from_dict(summary["account"]).line()
        return ", ".join(f"{k} {v}" for k, v in summary.items() if isinstance(v, int | float | str))[:200]

    @classmethod
    def section(cls, stage: Any) -> str:
        """The stage's section of the pipeline report (HTML); ``stage`` has ``summary`` and ``folder``."""
        from thresher.report.html import account_table, table

        plain = [[k, v] for k, v in stage.summary.items() if isinstance(v, int | float | str)]
        account = [Account.from_dict(stage.summary["account"])] if "account" in stage.summary else []
        return (account_table(account) if account else "") + (table(["field", "value"], plain) if plain else "")

    @classmethod
    def across(cls, stages: list[Any]) -> str:
        """A report section over all the pipeline's stages of this kind (e.g. evals side by side); default none."""
        return ""

    @classmethod
    def partial(cls, folder: Path) -> bool:
        """Whether ``folder`` holds work to continue from (a checkpoint or a cache)."""
        return folder.is_dir() and (any(folder.glob("checkpoint-*")) or (folder / "cache").is_dir())

    @classmethod
    def output_path(cls, folder: Path, output: str | None) -> Path:
        """Where ``output`` (default: the main one; ``folder``: the stage folder) lives."""
        if output == "folder" or not cls.outputs:
            return folder
        if output is None:
            output = next(iter(cls.outputs))
        if output not in cls.outputs:
            raise SpecError(f"a {cls.name} stage has no output {output!r}; it has {', '.join([*cls.outputs, 'folder'])}")
        return folder / cls.outputs[output]


KINDS: dict[str, type[StageKind]] = {}


def register(kind: type[StageKind]) -> type[StageKind]:
    """Make ``kind`` available to pipelines as ``run: NAME`` (a later registration of the same name replaces it)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> type[StageKind]:
    """The registered kind called ``name``; an unknown one is a SpecError naming the closest."""
    import thresher.pipeline.kinds  # noqa: F401  (registers the built-in kinds)

    if name not in KINDS:
        raise SpecError(f"unknown stage kind {name!r}{closest(name, set(KINDS))} (known: {', '.join(KINDS)})")
    return KINDS[name]


__all__ = ["KINDS", "OptionError", "ReadyStage", "StageKind", "closest", "dataclass_from", "kind_of", "register", "unknown_key"]
