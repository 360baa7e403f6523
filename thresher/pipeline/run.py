"""Running a pipeline: resolve each stage (references to earlier stages' outputs, paths made absolute), key it
by the content hash of its inputs and settings, skip it when its folder holds a finished result under that key,
otherwise run it (a training stage continues from its newest checkpoint, synthesis from its request cache).

Stage folders are ``OUTPUT_DIR/stages/NAME-KEY``; ``stage.json`` in a folder marks it finished. An earlier
stage's key is part of its folder's path, so a change upstream changes every key downstream.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

import thresher
from thresher.accounting import Account
from thresher.config import expand, get_dotted, load_yaml, read_spec_text, set_dotted
from thresher.errors import EXIT_BAD_ROW, SpecError, ThresherError
from thresher.io.hashing import file_hash
from thresher.pipeline.gc import mark_stage, record_current
from thresher.pipeline.registry import ReadyStage, kind_of
from thresher.pipeline.spec import REFERENCE, PipelineSpec, StageSpec, load_pipeline

DONE = "stage.json"


class StageError(ThresherError, RuntimeError):
    """A stage failed: names the stage, what it read and the cause."""

    exit_code = EXIT_BAD_ROW


@dataclass
class PlannedStage:
    name: str
    run: str
    key: str
    folder: Path
    resolved: dict[str, Any]
    base: Path  # where the spec's relative paths start
    state: str  # "cached" | "partial" (a checkpoint or cache to continue from) | "to run"
    spec: Any = None  # the validated spec model, for kinds that take a spec
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def ready(self) -> ReadyStage:
        r = self.resolved
        return ReadyStage(
            self.name,
            self.run,
            self.folder,
            self.base,
            r["inputs"],
            r["train"],
            r["bench"],
            r["bench_fields"],
            r["options"],
            self.spec,
            r.get("spec"),
        )


def _substitute(value: Any, lookup: Callable[[str, str | None], str]) -> Any:
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: lookup(m.group(1), m.group(2)), value)
    if isinstance(value, dict):
        return {_substitute(k, lookup): _substitute(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, lookup) for v in value]
    return value


def _existing_path(text: str, base: Path) -> Path | None:
    """The existing file or folder ``text`` names (``${VAR:-default}`` expanded, relative to ``base``), resolved; else None."""
    if not text or len(text) > 4096:
        return None
    path = Path(expand(text))
    path = path if path.is_absolute() else base / path
    try:
        return path.resolve() if path.exists() else None
    except OSError:
        return None


def _named_paths(text: str, base: Path) -> list[Path]:
    """The existing paths a stage string names: the string itself, or the part after ``=`` (``NAME=PATH``)."""
    return [p for part in dict.fromkeys((text, text.partition("=")[2])) if (p := _existing_path(part, base)) is not None]


def _absolute(value: str, base: Path) -> str:
    """``value`` as an absolute path when it names an existing file or folder relative to ``base``; else unchanged."""
    path = _existing_path(value, base)
    return str(path) if path is not None else value


def _bench_absolute(value: str, base: Path) -> str:
    name, sep, path = value.partition("=")
    return f"{name}={_absolute(path, base)}" if sep else value


WRITTEN_TO = ("cache_dir", "output_dir")  # paths a stage writes to: not inputs, never fingerprinted


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in WRITTEN_TO for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _fingerprints(resolved: dict[str, Any], base: Path, output_dir: Path) -> dict[str, str]:
    """Content hashes of every existing file or folder the stage names (outside the pipeline's own outputs, whose
    folder names carry their keys already)."""
    return {
        str(path): file_hash(path)
        for text in _strings(resolved)
        for path in _named_paths(text, base)
        if not path.is_relative_to(output_dir.resolve()) and path != Path("/")
    }


def _spec_mapping(stage: StageSpec, pipeline_base: Path) -> tuple[dict[str, Any], Path]:
    """The stage's spec as a mapping and the folder its relative paths start from."""
    if isinstance(stage.spec, dict):
        return dict(stage.spec), pipeline_base
    assert stage.spec is not None
    path = Path(expand(stage.spec))
    path = path if path.is_absolute() else pipeline_base / path
    _, data = load_yaml(read_spec_text(path, f"{stage.run} spec of stage {stage.name}"), str(path))  # aliases bounded
    return data, path.resolve().parent


def resolve(stage: StageSpec, pipeline_base: Path, lookup: Callable[[str, str | None], str]) -> tuple[dict[str, Any], Path]:
    """The stage with references substituted, overrides applied and input paths absolute; and its spec's base."""
    resolved = _substitute(stage.model_dump(mode="json"), lookup)
    resolved["inputs"] = [_absolute(v, pipeline_base) for v in resolved["inputs"]]
    resolved["train"] = [_absolute(v, pipeline_base) for v in resolved["train"]]
    resolved["bench"] = [_bench_absolute(v, pipeline_base) for v in resolved["bench"]]
    base = pipeline_base
    if stage.spec is not None:
        spec, base = _spec_mapping(stage, pipeline_base)
        spec = _substitute(spec, lookup)
        for dotted, value in _substitute(stage.set, lookup).items():
            set_dotted(spec, dotted, value)
        for dotted in kind_of(stage.run).path_fields:
            value = get_dotted(spec, dotted)
            if isinstance(value, str):
                set_dotted(spec, dotted, _absolute(value, base))
        resolved["spec"] = spec
    resolved.pop("set")
    return resolved, base


def stage_key(resolved: dict[str, Any], base: Path, output_dir: Path) -> str:
    """A hash of the resolved stage, the content of what it reads, and the Thresher version."""
    payload = {"thresher": thresher.__version__, "stage": resolved, "inputs": _fingerprints(resolved, base, output_dir)}
    return hashlib.blake2b(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), digest_size=6).hexdigest()


def check_stage_spec(
    stage: StageSpec, index: int, spec: dict[str, Any], pipeline_path: Path | None, pipeline_base: Path
) -> tuple[Any, list[str]]:
    """Validate a stage's resolved spec against its kind's model, before anything runs: the model, or the errors.
    Errors name the file and line the field comes from: the referenced spec file, or the pipeline for an inline
    spec (an override in ``set`` is reported at its own line)."""
    from pydantic import ValidationError

    from thresher.config import error_parts, line_of, override_for

    kind = kind_of(stage.run)
    model = kind.spec_model()
    assert model is not None
    data = {**kind.run_time_fields, **spec}  # placeholders for what the stage sets when it runs
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        errors = e.errors()
    source = None
    if isinstance(stage.spec, str):
        source = Path(expand(stage.spec))
        source = source if source.is_absolute() else pipeline_base / source
    pipeline_node = yaml.compose(read_spec_text(pipeline_path)) if pipeline_path is not None else None
    file_node = yaml.compose(read_spec_text(source)) if source is not None else None
    messages = []
    for err in errors:
        loc, dotted, message = error_parts(err)
        override = override_for(dotted, stage.set)
        if override is not None or source is None:
            where = ("stages", index, "set", override) if override is not None else ("stages", index, "spec", *loc)
            messages.append(
                f"{pipeline_path}:{line_of(pipeline_node, where)}: stages[{index}] ({stage.name}) "
                f"{'set ' + override if override else 'spec.' + dotted}: {message}"
            )
        else:
            messages.append(f"{source}:{line_of(file_node, loc)}: {dotted} (the {stage.run} spec of stage {stage.name}): {message}")
    return None, messages


def plan(spec: PipelineSpec, pipeline_base: Path, pipeline_path: Path | None = None) -> list[PlannedStage]:
    """Every stage resolved, its spec validated, and keyed, with whether it is cached, partly done, or still to
    run. A spec error in any stage fails the plan, before anything runs."""
    output_dir = Path(expand(spec.output_dir))
    output_dir = (output_dir if output_dir.is_absolute() else pipeline_base / output_dir).resolve()
    planned: dict[str, PlannedStage] = {}

    def lookup(name: str, output: str | None) -> str:
        stage = planned[name]
        return str(kind_of(stage.run).output_path(stage.folder, output))

    errors: list[str] = []
    for index, stage in enumerate(spec.stages):
        try:
            resolved, base = resolve(stage, pipeline_base, lookup)
        except SpecError as e:  # e.g. {{NAME.OUTPUT}} naming an output the stage does not have
            errors.append(f"{pipeline_path or 'pipeline'}: stages[{index}] ({stage.name}): {e}")
            continue
        model = None
        if stage.spec is not None:
            model, messages = check_stage_spec(stage, index, resolved["spec"], pipeline_path, pipeline_base)
            errors += messages
        key = stage_key(resolved, base, output_dir)
        folder = output_dir / "stages" / f"{stage.name}-{key}"
        summary: dict[str, Any] = {}
        seconds = 0.0
        if (folder / DONE).is_file():
            state = "cached"
            done = orjson.loads((folder / DONE).read_bytes())
            summary, seconds = done["summary"], float(done.get("seconds") or 0.0)  # the run time of the run that made it
        elif kind_of(stage.run).partial(folder):
            state = "partial"
        else:
            state = "to run"
        planned[stage.name] = PlannedStage(stage.name, stage.run, key, folder, resolved, base, state, model, summary, seconds)
    if errors:
        raise SpecError("\n".join(errors))
    return list(planned.values())


def _plain(value: Any) -> Any:
    """JSON for what orjson does not know: numpy scalars as numbers, anything else as text."""
    return value.item() if hasattr(value, "item") else str(value)


@dataclass
class PipelineResult:
    output_dir: Path
    stages: list[PlannedStage]
    report: Path
    seconds: float


def run_pipeline(
    path: str | Path, dry_run: bool = False, log: Callable[[str], None] | None = None, overrides: list[str] | None = None
) -> PipelineResult:
    """Run the pipeline at ``path`` with ``KEY=VALUE`` overrides (``stages.2.set.max_steps=5``; or, with
    ``dry_run``, only plan it)."""
    from thresher.pipeline.report import write_report

    started = time.perf_counter()
    path = Path(path)
    spec = load_pipeline(path, overrides)
    base = path.resolve().parent
    stages = plan(spec, base, path)
    say = log or (lambda _: None)
    output_dir = stages[0].folder.parent.parent
    if dry_run:
        return PipelineResult(output_dir, stages, output_dir / "report.html", time.perf_counter() - started)
    record_current(output_dir, path, [s.folder for s in stages])
    for stage in stages:
        if stage.state == "cached":
            say(f"{stage.name} ({stage.run}): cached ({stage.folder.name})")
            continue
        say(f"{stage.name} ({stage.run}): {'continuing' if stage.state == 'partial' else 'running'} in {stage.folder}")
        began = time.perf_counter()
        try:
            mark_stage(stage.folder)
            stage.summary = kind_of(stage.run).run(stage.ready())
        except Exception as e:  # every failure names the stage and keeps what was done
            reads = [text for text in _strings(stage.resolved) if _named_paths(text, stage.base)] or ["its spec"]
            raise StageError(
                f"stage {stage.name} ({stage.run}) failed, reading {', '.join(reads)[:600]}: "
                f"{type(e).__name__}: {e}\nfix the cause and run the pipeline again: finished stages are "
                f"kept and {stage.name} continues in {stage.folder}"
            ) from e
        if "account" in stage.summary:  # every kind that moves rows accounts for them the same way (exit 3 if not)
            Account.from_dict({**stage.summary["account"], "name": f"stage {stage.name}"}).check()
        stage.seconds = time.perf_counter() - began
        stage.state = "ran"
        record = {"name": stage.name, "run": stage.run, "key": stage.key, "seconds": stage.seconds, "summary": stage.summary}
        (stage.folder / DONE).write_bytes(
            orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_plain) + b"\n"
        )
        say(f"{stage.name} ({stage.run}): done in {stage.seconds:.1f} s")
    report = write_report(stages, output_dir / "report.html")
    return PipelineResult(output_dir, stages, report, time.perf_counter() - started)
