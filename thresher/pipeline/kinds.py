"""The built-in stage kinds: dedup, decontaminate, mix, synth, sft, dpo, rlvr and eval (one class each, registered in
``thresher.pipeline.registry``). Each reads its validated settings from the ``ReadyStage`` it is given and never
re-reads a file the pipeline wrote."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import yaml
from pydantic import BaseModel

from thresher.accounting import Account
from thresher.pipeline.registry import OptionError, ReadyStage, StageKind, dataclass_from, register
from thresher.report.html import account_table, bars, escape, line_plot, paired_bars, table


def _spec_record(stage: ReadyStage) -> Path:
    """``spec.yaml`` in the stage folder: the spec as it ran, for people (the stage runs from the validated model)."""
    path = stage.folder / "spec.yaml"
    path.write_text(yaml.safe_dump(stage.spec_mapping, sort_keys=False), encoding="utf-8")
    return path


def _account(summary: dict[str, Any]) -> str:
    """The stage's account as a table (summaries from before accounts were kept have none)."""
    return account_table([Account.from_dict(summary["account"])]) if "account" in summary else ""


@register
class Dedup(StageKind):
    name = "dedup"
    needs = ("inputs",)
    outputs: ClassVar[dict[str, str]] = {"kept": "kept.parquet", "removed": "removed.parquet"}

    @classmethod
    def config(cls, options: dict[str, Any]) -> Any:
        from thresher.curation.dedup import DedupConfig

        return dataclass_from(DedupConfig, {k: v for k, v in options.items() if k != "on_error"}, "dedup options")

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        cls.config(options)

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.curation.dedup import dedup

        report = dedup(stage.inputs, stage.folder, cls.config(stage.options), on_error=stage.options.get("on_error", "fail"))
        summary = report.as_dict()
        return {
            "account": report.account.as_dict(),
            "in": summary["in"],
            "kept": summary["kept"],
            "removed": summary["removed"],
            "quarantined": summary["quarantined"],
            "sources": summary["sources"],
        }

    @classmethod
    def section(cls, stage: Any) -> str:
        summary = stage.summary
        rows = [[name, s["in"], s["kept"], s["removed"], s.get("quarantined", 0)] for name, s in summary.get("sources", {}).items()]
        rows.append(["all", summary["in"], summary["kept"], summary["removed"], summary["quarantined"]])
        return _account(summary) + table(["source", "in", "kept", "removed", "quarantined"], rows)


@register
class Decontaminate(StageKind):
    name = "decontaminate"
    needs = ("train", "bench")
    outputs: ClassVar[dict[str, str]] = {"clean": "clean.parquet", "removed": "removed.parquet", "matches": "matches.parquet"}
    own_report = "report.html"

    @classmethod
    def config(cls, options: dict[str, Any]) -> Any:
        from thresher.decontam.audit import AuditConfig
        from thresher.decontam.judge import JudgeConfig
        from thresher.decontam.ngram import NgramConfig
        from thresher.decontam.rephrase import RephraseConfig
        from thresher.decontam.similarity import EmbeddingMatchConfig, MinhashMatchConfig

        parts = {
            "ngram": NgramConfig,
            "minhash": MinhashMatchConfig,
            "embedding": EmbeddingMatchConfig,
            "rephrase": RephraseConfig,
            "judge": JudgeConfig,
        }
        values: dict[str, Any] = {k: v for k, v in options.items() if k not in ("on_error", "top")}
        for key, part in parts.items():
            if key in values:
                values[key] = dataclass_from(part, values[key] or {}, f"decontaminate options.{key}", (key,))
        if "methods" in values:
            if not isinstance(values["methods"], list | tuple):
                raise OptionError("decontaminate options: methods must be a list, e.g. [ngram, embedding]", ("methods",))
            values["methods"] = tuple(values["methods"])
        return dataclass_from(AuditConfig, values, "decontaminate options")

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        cls.config(options)

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.decontam.outputs import audit_to_folder, decontamination_account

        options = stage.options
        report = audit_to_folder(
            stage.train,
            stage.bench,
            stage.folder,
            stage.bench_fields,
            cls.config(options),
            on_error=options.get("on_error", "fail"),
            top=options.get("top", 40),
            split=True,
        )
        return {
            "account": decontamination_account(report).as_dict(),  # checked by audit_to_folder
            "decontamination": report["decontamination"],
            "totals": report["totals"],
            "table": report["table"],
            "benchmarks": list(report["benchmarks"]),
        }

    @classmethod
    def section(cls, stage: Any) -> str:
        summary = stage.summary
        parts = [_account(summary)]
        benches = summary["benchmarks"]
        cells = {(r["source"], r["bench"]): r for r in summary["table"]}
        sources = sorted({r["source"] for r in summary["table"]})
        parts.append("<p>items leaked / training rows contaminated, per source and benchmark</p>")
        parts.append(
            table(
                ["source", *benches],
                [
                    [
                        s,
                        *(
                            f"{cells[(s, b)]['items_leaked']} / {cells[(s, b)]['rows_contaminated']}" if (s, b) in cells else "-"
                            for b in benches
                        ),
                    ]
                    for s in sources
                ],
            )
        )
        return "".join(parts) + cls.top_matches(stage.folder)

    @staticmethod
    def top_matches(folder: Path, limit: int = 10) -> str:
        import polars as pl

        path = folder / "matches.parquet"
        if not path.is_file():
            return ""
        matches = pl.read_parquet(path)
        if "flagged" in matches.columns:
            matches = matches.filter(pl.col("flagged"))
        if matches.is_empty():
            return "<p>no flagged matches</p>"
        shown = [c for c in ("train_id", "bench", "bench_id", "method", "score", "train_text", "bench_text") if c in matches.columns]
        rows = matches.sort("score", descending=True).head(limit).select(shown).rows() if "score" in shown else matches.head(limit).rows()
        return "<p>top flagged matches</p>" + table(
            shown, [[f"{v:.3f}" if isinstance(v, float) else str(v)[:160] for v in row] for row in rows], left=len(shown)
        )


def _spec_model(module: str, name: str) -> type[BaseModel]:
    import importlib

    model: type[BaseModel] = getattr(importlib.import_module(module), name)
    return model


@register
class Mix(StageKind):
    name = "mix"
    needs = ("spec",)
    outputs: ClassVar[dict[str, str]] = {"mixture": "mixture"}
    own_report = "mixture/report.html"

    @classmethod
    def spec_model(cls) -> type[BaseModel]:
        return _spec_model("thresher.mixing.spec", "MixSpec")

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.mixing.pipeline import run_mix

        _spec_record(stage)
        result = run_mix(stage.spec, stage.folder / "mixture", stage.folder / "cache", base=stage.base, log=stage_say(stage))
        manifest = result.manifest
        return {
            "rows": manifest["achieved"]["rows"],
            "targets": manifest["targets"],
            "achieved": manifest["achieved"],
            "accounting": manifest["stages"],
            "cached_steps": result.cached,
        }

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        return f"{summary['rows']} rows"

    @classmethod
    def section(cls, stage: Any) -> str:
        from thresher.mixing.ledger import step_account

        summary = stage.summary
        achieved = summary["achieved"]
        targets = summary["targets"].get("skills", {})
        key = "token_share" if summary["targets"].get("unit") == "tokens" else "row_share"
        skills = list(achieved["per_skill"])
        plot = paired_bars(
            skills,
            [targets.get(s, {}).get("share") for s in skills],
            [achieved["per_skill"][s][key] or 0.0 for s in skills],
            "mixture shares by skill: target vs achieved",
        )
        steps = [a for a in map(step_account, summary.get("accounting") or []) if a is not None]
        return f"<p>{achieved['rows']} rows</p>{plot}" + (account_table(steps) if steps else "")


@register
class Synth(StageKind):
    name = "synth"
    needs = ("spec",)
    outputs: ClassVar[dict[str, str]] = {"sft": "synth/sft.parquet", "preference": "synth/preference.parquet", "rlvr": "synth/rlvr.parquet"}
    own_report = "synth/report.html"

    @classmethod
    def spec_model(cls) -> type[BaseModel]:
        return _spec_model("thresher.synth.spec", "SynthSpec")

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.synth.pipeline import run_synth

        record = _spec_record(stage)
        result = run_synth(
            stage.spec, stage.folder / "synth", stage.folder / "cache", log=stage_say(stage), base=stage.base, spec_path=record
        )
        manifest = result.manifest
        return {
            "outputs": manifest["outputs"],
            "generation": manifest["generation"],
            "pass_rate_histogram": manifest["pass_rate_histogram"],
        }

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        return "; ".join(f"{name}: {Account.from_dict(o).line()}" for name, o in summary["outputs"].items())

    @classmethod
    def section(cls, stage: Any) -> str:
        summary = stage.summary
        outputs = [Account.from_dict({**o, "name": name}) for name, o in summary["outputs"].items()]
        gen = [[name, g.get("requested"), g.get("reused"), g.get("generated")] for name, g in summary["generation"].items()]
        hist = summary.get("pass_rate_histogram") or []
        plot = (
            bars(
                [f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(len(hist))],
                [h / max(sum(hist), 1) for h in hist],
                "share of verifier-scored prompts by pass rate",
                x_label="share of prompts",
            )
            if sum(hist)
            else ""
        )
        return account_table(outputs) + table(["generator", "requested", "reused", "generated"], gen) + plot


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.is_file() else []


def stage_say(stage: ReadyStage) -> Callable[..., None]:
    """Step lines of a stage, prefixed with its name (``thresher.progress.say``: -q, -v and --log-file apply)."""
    from thresher.progress import say

    return lambda line, level=1: say(f"{stage.name}: {line}", level)


class Training(StageKind):
    """SFT, DPO and RLVR: a training config (``TrainConfig``) whose output_dir is the stage folder; a re-run continues
    from the newest checkpoint there."""

    needs = ("spec",)
    outputs: ClassVar[dict[str, str]] = {"model": "final"}
    run_time_fields: ClassVar[dict[str, str]] = {"output_dir": "stage-folder"}
    path_fields = ("model", "tokenizer", "data.train", "data.eval", "dpo.reference_model", "rlvr.reference_model")
    curves: ClassVar[list[tuple[str, list[str]]]] = []

    @classmethod
    def spec_model(cls) -> type[BaseModel]:
        return _spec_model("thresher.train.config", "TrainConfig")

    @classmethod
    def trainer(cls) -> Any:
        raise NotImplementedError

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.progress import progress_bar
        from thresher.train.checkpoint import latest_checkpoint
        from thresher.train.metrics import progress_log

        resumed = latest_checkpoint(stage.folder)
        config = {**(stage.spec_mapping or {}), "output_dir": str(stage.folder), "resume_from": str(resumed) if resumed else None}
        say = stage_say(stage)
        with progress_bar() as bar:  # a bar in a terminal; a plain line every few seconds elsewhere
            show = progress_log(bar, bar.add_task(stage.name, total=None, rate=""), say)
            result = cls.trainer()(cls.spec_model().model_validate(config), show)
        return {
            "steps": result.steps,
            "evals": result.evals,
            "resumed_from": str(resumed) if resumed else None,
            "seconds": result.seconds,
            "tokens": result.tokens,
        }

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        evals = summary.get("evals") or []
        shown = "; ".join(
            f"{k} {evals[0][1][k]:.3f} → {evals[-1][1][k]:.3f}"
            for k in ("eval_loss", "eval_reward_accuracy", "eval_pass@1")
            if evals and k in evals[0][1]
        )
        return f"{summary['steps']} steps" + (f"; {shown}" if shown else "")

    @classmethod
    def section(cls, stage: Any) -> str:
        records = read_metrics(stage.folder)
        plots = []
        for title, keys in cls.curves:
            found = {k: ([r["step"] for r in records if k in r], [r[k] for r in records if k in r]) for k in keys}
            series: dict[str, tuple[Sequence[float], Sequence[float]]] = {k: v for k, v in found.items() if v[0]}
            if series:
                plots.append(line_plot(series, title))
        evals = stage.summary.get("evals") or []
        last = evals[-1][1] if evals else {}
        resumed = stage.summary.get("resumed_from")
        text = f"<p>{stage.summary.get('steps')} steps" + (f"; resumed from {resumed}" if resumed else "")
        text += "".join(f"; {k} {v:.4g}" for k, v in last.items() if isinstance(v, int | float)) + "</p>"
        return text + f"<div class='plots'>{''.join(plots)}</div>"


@register
class Sft(Training):
    name = "sft"
    curves: ClassVar[list[tuple[str, list[str]]]] = [("loss", ["loss"]), ("held-out loss", ["eval_loss"])]

    @classmethod
    def trainer(cls) -> Any:
        from thresher.train.sft import run_sft

        return run_sft


@register
class Dpo(Training):
    name = "dpo"
    curves: ClassVar[list[tuple[str, list[str]]]] = [("loss", ["loss"]), ("reward accuracy", ["reward_accuracy", "eval_reward_accuracy"])]

    @classmethod
    def trainer(cls) -> Any:
        from thresher.train.dpo import run_dpo

        return run_dpo


@register
class Rlvr(Training):
    name = "rlvr"
    curves: ClassVar[list[tuple[str, list[str]]]] = [
        ("reward", ["reward_mean"]),
        ("KL", ["kl"]),
        ("held-out pass@1", ["eval_pass@1"]),
        ("response length", ["response_length"]),
    ]

    @classmethod
    def trainer(cls) -> Any:
        from thresher.train.rlvr import run_rlvr

        return run_rlvr


@register
class Eval(StageKind):
    """Evaluate a model (often ``{{sft.model}}``) on the stage's ``bench`` list with an ``EvalConfig`` spec; the
    pipeline report shows each eval stage's pass@1 beside the others on the same benchmarks."""

    name = "eval"
    needs = ("bench", "spec")
    outputs: ClassVar[dict[str, str]] = {"items": "items.jsonl", "summary": "summary.json"}
    own_report = "report.html"
    path_fields = ("model", "tokenizer")

    @classmethod
    def spec_model(cls) -> type[BaseModel]:
        return _spec_model("thresher.evals.run", "EvalConfig")

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        from thresher.evals.outputs import write_results
        from thresher.evals.run import run_eval

        results = run_eval(stage.spec, stage.bench, log=stage_say(stage))
        return write_results(stage.folder, stage.spec, results)

    @classmethod
    def describe(cls, summary: dict[str, Any]) -> str:
        return "; ".join(f"{name} pass@1 {s['pass@1']:.3f} ± {s['pass@1_se']:.3f}" for name, s in summary["benches"].items())

    @classmethod
    def section(cls, stage: Any) -> str:
        from thresher.evals.outputs import SUMMARY_COLUMNS, summary_row

        summary = stage.summary
        return f"<p>model <code>{escape(summary['model'])}</code></p>" + table(
            list(SUMMARY_COLUMNS), [summary_row(s) for s in summary["benches"].values()]
        )

    @classmethod
    def across(cls, stages: list[Any]) -> str:
        """Every eval stage's pass@1 per benchmark side by side, each with its paired difference from the first
        eval of the same items (after − before ± its standard error)."""
        from thresher.evals.outputs import solved_by_bench
        from thresher.evals.run import paired_difference

        if len(stages) < 2:
            return ""
        benches = list(dict.fromkeys(b for s in stages for b in s.summary["benches"]))
        first: dict[str, tuple[str, dict[str, float]]] = {}
        rows = []
        for stage in stages:
            solved = solved_by_bench(stage.folder)
            row: list[object] = [stage.name]
            for bench in benches:
                s = stage.summary["benches"].get(bench)
                if s is None:
                    row.append("-")
                    continue
                cell = f"{s['pass@1']:.3f} ± {s['pass@1_se']:.3f}"
                base = first.setdefault(bench, (stage.name, solved.get(bench, {})))
                now = solved.get(bench, {})
                if base[0] != stage.name and base[1].keys() == now.keys() and now:
                    ids = sorted(now)
                    diff, se = paired_difference([base[1][i] for i in ids], [now[i] for i in ids])
                    cell += f" ({diff:+.3f} ± {se:.3f} vs {base[0]})"
                row.append(cell)
            rows.append(row)
        note = "<p>pass@1 ± standard error; in brackets the paired difference from the first eval of the same items</p>"
        return "<h2>evaluations side by side</h2>" + note + table(["eval stage", *benches], rows)
