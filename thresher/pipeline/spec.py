"""The pipeline spec: an output folder and an ordered list of stages. Stage fields may refer to an earlier
stage's outputs as ``{{NAME}}`` (its main output) or ``{{NAME.OUTPUT}}`` (``model``, ``kept``, ``clean``,
``mixture``, ``sft``, ``preference``, ``rlvr``, ``folder``). What each kind needs and accepts is declared by its
class in the stage registry (``thresher.pipeline.registry``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from thresher.config import Strict, line_of, overrides_from, parse_spec, read_spec_text
from thresher.errors import SpecError, closest

REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_-]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}")


class StageSpec(Strict):
    """One stage: what it runs, what it reads ({{NAME}} / {{NAME.OUTPUT}} name earlier stages' outputs) and its settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")  # unique; the stage folder is OUTPUT_DIR/stages/NAME-KEY
    run: str  # the stage kind: dedup, decontaminate, mix, synth, sft, dpo, rlvr, eval (or one registered by a plugin)
    inputs: list[str] = []  # dedup: the files to deduplicate
    train: list[str] = []  # decontaminate: the training files to audit
    bench: list[str] = []  # decontaminate: NAME (hub) or NAME=PATH; eval: NAME=PATH (or NAME under $THRESHER_DATA_DIR)
    bench_fields: list[str] | None = None  # decontaminate: NAME:question=FIELD,answer=FIELD for custom benchmarks
    options: dict[str, Any] = {}  # dedup: DedupConfig fields; decontaminate: methods, fields, ngram, minhash, embedding
    spec: str | dict[str, Any] | None = None  # mix/synth spec, training config: a file or the mapping inline
    set: dict[str, Any] = {}  # dotted overrides applied to ``spec`` (e.g. data.train, optim.lr)

    @field_validator("run")
    @classmethod
    def _known_kind(cls, run: str) -> str:
        from thresher.pipeline.registry import kind_of

        kind_of(run)
        return run

    @model_validator(mode="after")
    def _fields_of_kind(self) -> StageSpec:
        from thresher.pipeline.registry import kind_of

        kind = kind_of(self.run)
        missing = [name for name in kind.needs if getattr(self, name) in (None, [], {})]
        if missing:
            what = " and ".join(missing) + (" (a file or the mapping inline)" if missing == ["spec"] else "")
            raise ValueError(f"a {self.run} stage needs {what}")
        if kind.spec_model() is None and (self.spec is not None or self.set):
            raise ValueError(f"a {self.run} stage takes no spec or set (its settings go in options)")
        return self


class PipelineSpec(Strict):
    """A pipeline: stages run in order, each cached by the content hash of its inputs and settings."""

    output_dir: str = "out/pipeline"  # relative to the pipeline file; holds stages/ and report.html
    stages: list[StageSpec] = Field(min_length=1)  # in order; each may read the outputs of those before it

    @model_validator(mode="after")
    def _references(self) -> PipelineSpec:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are called {stage.name!r}")
            for name, _ in references(stage.model_dump()):
                if name not in seen:
                    raise ValueError(f"stage {stage.name!r} refers to {{{{{name}}}}}, which is not an earlier stage")
            seen.add(stage.name)
        return self


def references(value: Any) -> list[tuple[str, str | None]]:
    """Every ``{{NAME[.OUTPUT]}}`` in ``value`` (strings, lists and mappings, keys included)."""
    if isinstance(value, str):
        return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(value)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in references(k) + references(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in references(v)]
    return []


def _for_a_stage(override: str) -> bool:
    """Whether a ``KEY=VALUE`` override is ``NAME.KEY=VALUE`` for a stage rather than a pipeline field."""
    head, dot, _ = override.split("=", 1)[0].partition(".")
    return bool(dot) and head not in PipelineSpec.model_fields


def _stage_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Each ``NAME.KEY=VALUE`` (NAME a stage) sets KEY in that stage's ``set`` (its spec's field, dotted as
    written); an unknown stage name is an error that names the closest."""
    import yaml

    found = data.get("stages")
    stages: list[Any] = found if isinstance(found, list) else []
    names: list[str] = [str(s.get("name")) if isinstance(s, dict) else "" for s in stages]
    for item in overrides:
        key, value = item.split("=", 1)
        head, _, rest = key.partition(".")
        if head not in names:
            raise SpecError(f"override {item}: no stage or field {head!r}{closest(head, [*names, *PipelineSpec.model_fields])}")
        stages[names.index(head)].setdefault("set", {})[rest] = yaml.safe_load(value)


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineSpec:
    """The pipeline at ``path``; errors name the file, the line and the field. Every dedup and decontaminate
    stage's ``options`` are built into their configuration here, so a typo fails before any stage runs."""
    import yaml

    from thresher.pipeline.registry import OptionError, kind_of

    path = Path(path)
    text = read_spec_text(path, "pipeline")
    given = overrides_from(overrides)
    for_stages = [o for o in given if _for_a_stage(o)]
    spec = parse_spec(
        text, str(path), PipelineSpec, [o for o in given if o not in for_stages], lambda data: _stage_overrides(data, for_stages)
    )
    assert isinstance(spec, PipelineSpec)
    errors = []
    node = None
    for i, stage in enumerate(spec.stages):
        try:
            kind_of(stage.run).check_options(stage.options)
        except OptionError as e:
            node = node or yaml.compose(text)
            line = line_of(node, ("stages", i, "options", *e.loc))
            errors.append(f"{path}:{line}: stages[{i}].options{''.join('.' + k for k in e.loc)}: {e}")
    if errors:
        raise SpecError("\n".join(errors))
    return spec


__all__ = ["PipelineSpec", "SpecError", "StageSpec", "load_pipeline", "references"]
