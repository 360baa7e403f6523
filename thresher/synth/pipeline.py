"""``run_synth``: prompts → n cached completions each → scores → best-of-n, pairs, pass-rate filter →
Parquet outputs, every prompt accounted for, a manifest and an HTML report."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from thresher.accounting import Account, QuarantineWriter
from thresher.config import expand, resolve_path
from thresher.errors import InputError
from thresher.generation.sampling import SamplingParams
from thresher.io.writers import open_writer
from thresher.records import Kind, content_hash
from thresher.synth.backends import BackendSpec, Conversation, make_backend
from thresher.synth.cache import RequestCache
from thresher.synth.generate import GenerationStats, generate_cached
from thresher.synth.load import metadata_of, read_prompt_rows
from thresher.synth.prompts import persona_requests, precise_if_rows
from thresher.synth.scorers import JudgeScorer, RewardModelScorer, ScoreTable, VerifierScorer
from thresher.synth.select import Decisions, SelectConfig, combine, decide, first_argmin
from thresher.synth.spec import JudgeScore, RewardModelScore, SynthSpec, VerifierScore, load_synth_spec

Log = Callable[[str], None]


@dataclass
class SynthResult:
    manifest: dict[str, Any]
    seconds: float
    generation: dict[str, GenerationStats] = field(default_factory=dict)


def _local(value: str | None, base: Path) -> str | None:
    """A model or tokenizer path relative to the spec when it exists there; else the name unchanged (a hub id)."""
    if value is None:
        return None
    path = resolve_path(value, base)
    return str(path) if path.exists() else expand(value)


def _backend(spec: BackendSpec, base: Path) -> Any:
    return make_backend(spec, model=_local(spec.model, base), tokenizer=_local(spec.tokenizer, base))


def _as_array(table: ScoreTable) -> np.ndarray:
    return np.array([[np.nan if s is None else s for s in row] for row in table.scores], dtype=np.float64)


def _load_prompts(
    spec: SynthSpec,
    base: Path,
    backend: Any,
    cache: RequestCache,
    quarantine: QuarantineWriter,
    stats: dict[str, GenerationStats],
    quiet: bool,
) -> tuple[list[dict[str, Any]], list[Account]]:
    rows: list[dict[str, Any]] = []
    counts: list[Account] = []
    for source in spec.prompts:
        if source.synthesize is None:
            got, c = read_prompt_rows(source, base, quarantine)
        elif source.synthesize.task == "precise_if":
            got = [{**r, "source": source.name, "prompt": r["messages"]} for r in precise_if_rows(source.synthesize, base)]
            c = Account(source.name, rows_in=len(got), rows_out=len(got))
        else:
            asks = persona_requests(source.synthesize, base)
            params = spec.all_generators[0].sampling.model_copy(update={"n": 1, "seed": source.synthesize.seed})
            written, stats[f"prompts:{source.name}"] = generate_cached(
                backend, asks, params, cache, spec.batch_size, f"write {source.name} prompts", quiet
            )
            c = Account(source.name, rows_in=len(asks))
            got = []
            for i, (ask, out) in enumerate(zip(asks, written, strict=True)):
                text = out[0].text.strip()
                if not text:
                    c.removed["empty synthesized prompt"] += 1
                    continue
                got.append(
                    {
                        "id": f"{source.name}/{i}",
                        "source": source.name,
                        "prompt": [{"role": "user", "content": text}],
                        "ground_truth": None,
                        "verifier": None,
                        "metadata": orjson.dumps({"persona_request": ask[0]["content"]}).decode(),
                    }
                )
            c.rows_out = len(got)
        rows += [{**{k: r.get(k) for k in ("id", "source", "prompt", "ground_truth", "verifier")}, "meta": metadata_of(r)} for r in got]
        counts.append(c)
    return rows, counts


def _scorers(spec: SynthSpec, base: Path, cache: RequestCache, quiet: bool) -> list[tuple[Any, float, bool]]:
    """(scorer, weight, is_verifier) for each scorer of the spec."""
    out: list[tuple[Any, float, bool]] = []
    for entry in spec.scorers:
        body = entry.body
        if isinstance(body, VerifierScore):
            out.append((VerifierScorer(body.name), body.weight, True))
        elif isinstance(body, RewardModelScore):
            out.append((RewardModelScorer(_local(body.model, base) or body.model, body.batch_size), body.weight, False))
        else:
            assert isinstance(body, JudgeScore)
            out.append((JudgeScorer(_backend(body, base), cache, body.scale, body.max_tokens, quiet=quiet), body.weight, False))
    return out


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _record(kind: Kind, row: dict[str, Any], content: dict[str, Any], meta: dict[str, Any], index: int) -> dict[str, Any]:
    record = {
        "id": row["id"],
        "source": row["source"],
        **content,
        "metadata": orjson.dumps({**row["meta"], **meta}, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
    }
    record["provenance"] = {"file": row["source"], "row": index, "line": None, "content_hash": content_hash(kind, record)}
    return record


def _write(path: Path, kind: Kind, records: list[dict[str, Any]]) -> None:
    writer = open_writer(path, kind)
    writer.write(records)
    writer.close()


def run_synth(
    spec: SynthSpec | str | Path,
    out: str | Path,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
    quiet: bool = False,
    base: Path | None = None,
    spec_path: Path | None = None,
) -> SynthResult:
    """Run the synthesis ``spec`` (a validated SynthSpec, or the path of a spec file) describes into ``out``;
    relative paths in the spec are resolved against ``base`` (default: the spec file's folder; needed with a
    SynthSpec). ``spec_path``: the file the manifest names as the spec (default: the one read)."""
    started = time.perf_counter()
    if not isinstance(spec, SynthSpec):
        spec_path = spec_path or Path(spec)
        base = base or Path(spec).resolve().parent
        spec = load_synth_spec(Path(spec))
    if base is None or spec_path is None:
        raise TypeError("run_synth needs base and spec_path when given a SynthSpec")
    base = base.resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    cache = RequestCache(Path(cache_dir or out / "cache") / "requests.sqlite")
    quarantine = QuarantineWriter(out / "quarantine.jsonl")
    stats: dict[str, GenerationStats] = {}
    generators = spec.all_generators
    backend = _backend(generators[0], base)
    scorers: list[tuple[Any, float, bool]] = []
    try:
        rows, source_counts = _load_prompts(spec, base, backend, cache, quarantine, stats, quiet)
        if not rows:
            raise InputError("no prompts to generate for: every source is empty")
        conversations: list[Conversation] = [r["prompt"] for r in rows]
        params: SamplingParams = generators[0].sampling
        say(f"{len(rows)} prompts × {sum(g.sampling.n for g in generators)} samples from {', '.join(g.model for g in generators)}")
        texts: list[list[str]] = [[] for _ in rows]
        sample_models: list[str] = []
        for at, generator in enumerate(generators):
            engine = backend if at == 0 else _backend(generator, base)
            name = "completions" if len(generators) == 1 else f"completions:{generator.model}"
            try:
                completions, stats[name] = generate_cached(
                    engine, conversations, generator.sampling, cache, spec.batch_size, f"generate ({generator.model})", quiet
                )
            finally:
                if at > 0:
                    engine.close()
            for row_texts, row in zip(texts, completions, strict=True):
                row_texts += [c.text for c in row]
            sample_models += [generator.model] * generator.sampling.n
        # Precise-IF rows: also answer the prompt with one constraint dropped (candidate rejected answers).
        drop_at = [i for i, r in enumerate(rows) if "drop_prompt" in r["meta"]]
        drop_texts: dict[int, list[str]] = {}
        if drop_at:
            asks = [[{"role": "user", "content": rows[i]["meta"]["drop_prompt"]}] for i in drop_at]
            answers, stats["dropped-constraint"] = generate_cached(
                backend, asks, params, cache, spec.batch_size, "generate (one constraint dropped)", quiet
            )
            drop_texts = {i: [c.text for c in a] for i, a in zip(drop_at, answers, strict=True)}
        for name, s in stats.items():
            say(
                f"{name}: {s.requested} completions: reused {s.reused} from the cache, generated {s.generated} "
                f"({s.tokens} tokens, {s.tokens_per_s:,.0f} tokens/s)"
            )

        scorers = _scorers(spec, base, cache, quiet)
        tables = [scorer.score(conversations, texts, rows) for scorer, _, _ in scorers]
        arrays = [_as_array(t) for t in tables]
        weights = [w for _, w, _ in scorers]
        verifier_arrays = [a for a, (_, _, is_v) in zip(arrays, scorers, strict=True) if is_v]
        verifier_scores = verifier_arrays[0] if verifier_arrays else None
        sel = spec.select
        config = SelectConfig(
            sel.pair_policy,
            sel.min_score,
            sel.min_margin,
            sel.drop_identical,
            sel.drop_all_fail,
            sel.pass_threshold,
            sel.pass_rate[0],
            sel.pass_rate[1],
            spec.seed,
        )
        decisions = decide(texts, arrays, weights, config, verifier_scores, policy_samples=generators[0].sampling.n)
        drop_rejects = _score_dropped(rows, drop_texts, scorers, decisions, config) if drop_texts else {}
        for scorer, _, _ in scorers:
            if isinstance(scorer, JudgeScorer):
                stats["judge"] = scorer.stats
                say(f"judge: reused {scorer.stats.reused} from the cache, generated {scorer.stats.generated}")

        manifest, pairs = _write_outputs(
            spec,
            spec_path,
            out,
            rows,
            texts,
            sample_models,
            tables,
            decisions,
            drop_rejects,
            drop_texts,
            source_counts,
            stats,
            cache,
            time.perf_counter() - started,
        )
    finally:
        quarantine.close()
        for scorer, _, _ in scorers:
            scorer.close()
        backend.close()
        cache.close()
    from thresher.synth.report import write_report

    write_report(manifest, out / "report.html", _examples(pairs) if "preference" in spec.outputs else [])
    return SynthResult(manifest, time.perf_counter() - started, stats)


def _examples(pairs: list[dict[str, Any]], count: int = 6) -> list[dict[str, Any]]:
    """A few preference pairs for the report: prompt, both sides and why each side was picked."""
    found = []
    for row in pairs[:count]:
        meta = orjson.loads(row["metadata"])
        scores = meta["synth"]["scores"]
        chosen = meta.get("chosen_index")
        rejected = meta.get("rejected_index")
        found.append(
            {
                "id": row["id"],
                "prompt": row["prompt"][-1]["content"],
                "chosen": row["chosen"][0]["content"],
                "rejected": row["rejected"][0]["content"],
                "chosen_note": f"sample {chosen}, score {scores[chosen]:.3f}" if chosen is not None else "",
                "rejected_note": (
                    f"sample {rejected}, score {scores[rejected]:.3f}"
                    if rejected is not None
                    else f"answer with one constraint dropped, score {meta.get('rejected_score', 0):.3f}"
                ),
            }
        )
    return found


def _score_dropped(
    rows: list[dict[str, Any]],
    drop_texts: dict[int, list[str]],
    scorers: list[tuple[Any, float, bool]],
    decisions: Decisions,
    config: SelectConfig,
) -> dict[int, tuple[str, float]]:
    """For precise-IF prompts: the worst answer to the dropped-constraint prompt, scored against the
    full constraints, when it scores below the chosen answer by more than the margin."""
    at = sorted(drop_texts)
    convs = [rows[i]["prompt"] for i in at]
    texts = [drop_texts[i] for i in at]
    sub_rows = [rows[i] for i in at]
    arrays = [_as_array(s.score(convs, texts, sub_rows)) for s, _, _ in scorers]
    scores = combine(arrays, [w for _, w, _ in scorers])
    worst_of = first_argmin(scores)
    out: dict[int, tuple[str, float]] = {}
    for k, i in enumerate(at):
        if decisions.dropped[i]:
            continue
        worst = int(worst_of[k])
        chosen_score = decisions.combined[i, decisions.chosen[i]]
        if chosen_score - scores[k, worst] > config.min_margin and texts[k][worst].strip():
            out[i] = (texts[k][worst], float(scores[k, worst]))
    return out


def _write_outputs(
    spec: SynthSpec,
    spec_path: Path,
    out: Path,
    rows: list[dict[str, Any]],
    texts: list[list[str]],
    sample_models: list[str],
    tables: list[ScoreTable],
    d: Decisions,
    drop_rejects: dict[int, tuple[str, float]],
    drop_texts: dict[int, list[str]],
    source_counts: list[Account],
    stats: dict[str, GenerationStats],
    cache: RequestCache,
    seconds: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write every output file; return the manifest and the preference records."""
    model = ", ".join(g.model for g in spec.all_generators)
    sft, pairs, rlvr, samples, removed = [], [], [], [], []
    counts = {name: Account(name, rows_in=len(rows)) for name in ("sft", "preference", "rlvr")}
    for i, row in enumerate(rows):
        scores_i = {t.name: [None if s is None else round(float(s), 6) for s in t.scores[i]] for t in tables}
        for j, text in enumerate(texts[i]):
            samples.append(
                {
                    "id": row["id"],
                    "source": row["source"],
                    "sample": j,
                    "model": sample_models[j],
                    "text": text,
                    "score": None if np.isnan(d.combined[i, j]) else float(d.combined[i, j]),
                    **{f"score_{t.name}": scores_i[t.name][j] for t in tables},
                    **{f"reason_{t.name}": t.reasons[i][j] for t in tables},
                }
            )
        common = {
            "synth": {"models": sample_models, "n": len(texts[i]), "scores": [None if np.isnan(x) else float(x) for x in d.combined[i]]}
        }
        if d.dropped[i]:
            counts["sft"].removed[d.dropped[i]] += 1
            removed.append({"id": row["id"], "source": row["source"], "output": "sft", "reason": d.dropped[i]})
        else:
            b = int(d.best[i])
            sft.append(
                _record(
                    Kind.SFT,
                    row,
                    {"messages": row["prompt"] + _assistant(texts[i][b])},
                    {**common, "chosen_index": b, "chosen_model": sample_models[b]},
                    i,
                )
            )
        if i in drop_rejects:
            c = int(d.chosen[i])
            text, score = drop_rejects[i]
            pairs.append(
                _record(
                    Kind.PREFERENCE,
                    row,
                    {"prompt": row["prompt"], "chosen": _assistant(texts[i][c]), "rejected": _assistant(text)},
                    {**common, "policy": "dropped_constraint", "chosen_index": c, "rejected_score": score},
                    i,
                )
            )
        elif d.rejected[i] >= 0:
            c, r = int(d.chosen[i]), int(d.rejected[i])
            pairs.append(
                _record(
                    Kind.PREFERENCE,
                    row,
                    {"prompt": row["prompt"], "chosen": _assistant(texts[i][c]), "rejected": _assistant(texts[i][r])},
                    {**common, "policy": spec.select.pair_policy, "chosen_index": c, "rejected_index": r},
                    i,
                )
            )
        else:
            counts["preference"].removed[d.pair_reason[i]] += 1
            removed.append({"id": row["id"], "source": row["source"], "output": "preference", "reason": d.pair_reason[i]})
        if d.rlvr_reason[i]:
            counts["rlvr"].removed[d.rlvr_reason[i].split(" (")[0]] += 1
            removed.append({"id": row["id"], "source": row["source"], "output": "rlvr", "reason": d.rlvr_reason[i]})
        else:
            rlvr.append(
                _record(
                    Kind.RLVR,
                    row,
                    {"messages": row["prompt"], "ground_truth": str(row["ground_truth"]), "verifier": str(row["verifier"])},
                    {
                        "synth": {
                            "model": spec.all_generators[0].model,
                            "pass_rate": float(d.pass_rate[i]),
                            "n": spec.all_generators[0].sampling.n,
                        }
                    },
                    i,
                )
            )
    counts["sft"].rows_out, counts["preference"].rows_out, counts["rlvr"].rows_out = len(sft), len(pairs), len(rlvr)
    files: dict[str, str] = {}
    for name, kind, records in (("sft", Kind.SFT, sft), ("preference", Kind.PREFERENCE, pairs), ("rlvr", Kind.RLVR, rlvr)):
        if name in spec.outputs:
            _write(out / f"{name}.parquet", kind, records)
            files[name] = f"{name}.parquet"
    import polars as pl

    pl.DataFrame(samples).write_parquet(out / "samples.parquet")
    (out / "removed.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in removed))
    stored, logged = cache.counts()
    manifest = {
        "spec": str(spec_path),
        "spec_hash": spec.hash(),
        "model": model,
        "seconds": round(seconds, 3),
        "sources": [c.as_dict() for c in source_counts],
        "prompts": len(rows),
        "samples_per_prompt": len(sample_models),
        "sample_models": sample_models,
        "generation": {
            name: {
                "requested": s.requested,
                "reused": s.reused,
                "generated": s.generated,
                "tokens": s.tokens,
                "seconds": round(s.seconds, 3),
                "tokens_per_s": round(s.tokens_per_s, 1),
            }
            for name, s in stats.items()
        },
        "cache": {"path": _shown(cache.path, out), "stored": stored, "generations_logged": logged},
        "outputs": {name: counts[name].as_dict() for name in spec.outputs},
        "files": {**files, "samples": "samples.parquet", "removed": "removed.jsonl"},
        "pass_rate_histogram": np.histogram(d.pass_rate[~np.isnan(d.pass_rate)], bins=10, range=(0, 1))[0].tolist(),
        "dropped_constraint_pairs": len(drop_rejects),
        "dropped_constraint_prompts": len(drop_texts),
        "score_reasons": dict(Counter[str](r.split(":")[0] for t in tables for row in t.reasons for r in row).most_common(20)),
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    for name in spec.outputs:
        counts[name].check()
    return manifest, pairs


def _shown(path: Path, out: Path) -> str:
    """A path inside the output folder relative to it (the folder is staged and renamed), else as is."""
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)
