"""What each kind of stage runs, from a resolved stage (references substituted, paths absolute) into its folder,
and the outputs later stages can refer to. Each runner returns a small summary for the report."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import orjson
import yaml

from thresher.errors import AccountingError, SpecError

OUTPUTS: dict[str, dict[str, str]] = {  # kind → output name → path inside the stage folder; the first is the main one
    "dedup": {"kept": "kept.parquet", "removed": "removed.parquet"},
    "decontaminate": {"clean": "clean.parquet", "removed": "removed.parquet", "matches": "matches.parquet"},
    "mix": {"mixture": "mixture"},
    "synth": {"sft": "synth/sft.parquet", "preference": "synth/preference.parquet", "rlvr": "synth/rlvr.parquet"},
    "sft": {"model": "final"},
    "dpo": {"model": "final"},
    "rlvr": {"model": "final"},
}
REPORTS = {"dedup": None, "decontaminate": "report.html", "mix": "mixture/report.html", "synth": "synth/report.html",
           "sft": None, "dpo": None, "rlvr": None}


def output_path(kind: str, folder: Path, output: str | None) -> Path:
    """Where ``output`` (default: the main one; ``folder``: the stage folder) of a ``kind`` stage lives."""
    names = OUTPUTS[kind]
    if output == "folder":
        return folder
    if output is None:
        output = next(iter(names))
    if output not in names:
        raise SpecError(f"a {kind} stage has no output {output!r}; it has {', '.join([*names, 'folder'])}")
    return folder / names[output]


class OptionError(SpecError):
    """A bad stage option; ``loc`` is its key path inside ``options`` (for the spec's file:line)."""

    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


def _dataclass_from(cls: type, options: Any, what: str, loc: tuple[str, ...] = ()) -> Any:
    if not isinstance(options, dict):
        raise OptionError(f"{what}: expected a mapping, got {type(options).__name__}", loc)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OptionError(f"{what}: unknown option {unknown[0]!r}{hint} (known: {', '.join(sorted(known))})", (*loc, unknown[0]))
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise OptionError(f"{what}: {e}", loc) from None


def check_options(kind: str, options: dict[str, Any]) -> None:
    """Build a dedup or decontaminate stage's configuration from its ``options`` without running anything:
    an unknown or bad option is an OptionError naming its key path (other kinds check their spec models)."""
    if kind == "dedup":
        from thresher.curation.dedup import DedupConfig

        _dataclass_from(DedupConfig, {k: v for k, v in options.items() if k != "on_error"}, "dedup options")
    elif kind == "decontaminate":
        audit_config(options)


def run_dedup(stage: dict[str, Any], folder: Path) -> dict[str, Any]:
    from thresher.curation.dedup import DedupConfig, dedup

    options = dict(stage["options"])
    on_error = options.pop("on_error", "fail")
    report = dedup(stage["inputs"], folder, _dataclass_from(DedupConfig, options, "dedup options"), on_error=on_error)
    summary = report.as_dict()
    if not summary["balanced"]:
        raise AccountingError(f"row accounting does not balance: {summary}")
    return {"in": summary["in"], "kept": summary["kept"], "removed": summary["removed"], "quarantined": summary["quarantined"],
            "sources": summary["sources"]}


def audit_config(options: dict[str, Any]) -> Any:
    from thresher.decontam.audit import AuditConfig
    from thresher.decontam.judge import JudgeConfig
    from thresher.decontam.ngram import NgramConfig
    from thresher.decontam.rephrase import RephraseConfig
    from thresher.decontam.similarity import EmbeddingMatchConfig, MinhashMatchConfig

    parts = {"ngram": NgramConfig, "minhash": MinhashMatchConfig, "embedding": EmbeddingMatchConfig, "rephrase": RephraseConfig,
             "judge": JudgeConfig}
    values: dict[str, Any] = {k: v for k, v in options.items() if k not in ("on_error", "top")}
    for key, cls in parts.items():
        if key in values:
            values[key] = _dataclass_from(cls, values[key] or {}, f"decontaminate options.{key}", (key,))
    if "methods" in values:
        values["methods"] = tuple(values["methods"])
    return _dataclass_from(AuditConfig, values, "decontaminate options")


def run_decontaminate(stage: dict[str, Any], folder: Path) -> dict[str, Any]:
    from thresher.decontam.outputs import audit_to_folder

    options = stage["options"]
    report = audit_to_folder(stage["train"], stage["bench"], folder, stage["bench_fields"], audit_config(options),
                             on_error=options.get("on_error", "fail"), top=options.get("top", 40), split=True)
    if not report["decontamination"]["balanced"]:
        raise AccountingError(f"row accounting does not balance: {report['decontamination']}")
    return {"decontamination": report["decontamination"], "totals": report["totals"], "table": report["table"],
            "benchmarks": list(report["benchmarks"])}


def _write_spec(spec: dict[str, Any], folder: Path) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_mix(stage: dict[str, Any], folder: Path, base: Path) -> dict[str, Any]:
    from thresher.mixing.pipeline import run_mix as mix

    result = mix(_write_spec(stage["spec"], folder), folder / "mixture", folder / "cache", base=base)
    manifest = result.manifest
    return {"rows": manifest["achieved"]["rows"], "targets": manifest["targets"], "achieved": manifest["achieved"],
            "accounting": manifest["stages"], "cached_steps": result.cached}


def run_synth(stage: dict[str, Any], folder: Path, base: Path) -> dict[str, Any]:
    from thresher.synth.pipeline import run_synth as synth

    result = synth(_write_spec(stage["spec"], folder), folder / "synth", folder / "cache", quiet=True, base=base)
    manifest = result.manifest
    return {"outputs": manifest["outputs"], "generation": manifest["generation"], "pass_rate_histogram": manifest["pass_rate_histogram"]}


def run_training(stage: dict[str, Any], folder: Path) -> dict[str, Any]:
    from thresher.mixing.spec import parse_spec
    from thresher.train.checkpoint import latest_checkpoint
    from thresher.train.config import TrainConfig

    config = dict(stage["spec"])
    config["output_dir"] = str(folder)
    resumed = latest_checkpoint(folder)
    config["resume_from"] = str(resumed) if resumed else None
    parsed = parse_spec(yaml.safe_dump(config, sort_keys=False), f"stage {stage['name']} config", TrainConfig)
    if stage["run"] == "sft":
        from thresher.train.sft import run_sft as train
    elif stage["run"] == "dpo":
        from thresher.train.dpo import run_dpo as train
    else:
        from thresher.train.rlvr import run_rlvr as train
    result = train(parsed)
    return {"steps": result.steps, "evals": result.evals, "resumed_from": str(resumed) if resumed else None,
            "seconds": result.seconds, "tokens": result.tokens}


def run_stage(stage: dict[str, Any], folder: Path, base: Path) -> dict[str, Any]:
    """Run the resolved ``stage`` into ``folder``; ``base``: where the spec's relative paths start."""
    kind = stage["run"]
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "dedup":
        return run_dedup(stage, folder)
    if kind == "decontaminate":
        return run_decontaminate(stage, folder)
    if kind == "mix":
        return run_mix(stage, folder, base)
    if kind == "synth":
        return run_synth(stage, folder, base)
    return run_training(stage, folder)


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.is_file() else []
