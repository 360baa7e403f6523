"""Skills for rows whose source declares none: rules first (code fences, LaTeX, explicit format
constraints, ...), then a vote of the k nearest labeled seed rows by embedding. Every row records
which of these decided (``skill_from``: declared, rule:NAME, knn, default) and how surely (``skill_score``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thresher.config import resolve_path
from thresher.errors import InputError
from thresher.mixing.apportion import source_rng
from thresher.mixing.spec import ClassifierSpec
from thresher.records import Kind

# In the order they are tried; the first that fires decides. Each looks at the prompt side only.
RULES: tuple[tuple[str, str], ...] = (
    (
        "precise_if",
        r"(?i)\b(in|with|use|using|contain|containing|write)\s+(at\s+most|at\s+least|exactly|no\s+more\s+than|fewer\s+than|less\s+than)"
        r"\s+\d+\s+(words|sentences|paragraphs|bullet|sections|lines|letters|characters)|all\s+(lowercase|capital\s+letters|uppercase)"
        r"|wrap\s+your\s+(entire\s+)?(response|answer)|do\s+not\s+use\s+any\s+commas|end\s+your\s+(response|answer)\s+with"
        r"|in\s+json\s+format|double\s+angular\s+brackets|\bP\.S\.",
    ),
    (
        "code",
        r"```|(?i)\b(python|javascript|typescript|java|c\+\+|c#|golang|rust|sql|html|css|regex|bash|function|class|method|"
        r"algorithm|compile|debug|program|code|array|api)\b|\bdef\s+\w+\(|#include\s*<|\bSELECT\b.+\bFROM\b",
    ),
    (
        "math",
        r"\$[^$]+\$|\\(frac|sqrt|boxed|cdot|times|sum|int)\b|(?i)\b(solve|equation|integer|probability|calculate|compute|"
        r"how\s+many|how\s+much|percent|sum\s+of|product\s+of|remainder|triangle|polynomial|derivative|prime)\b|\d\s*[+*/^=]\s*\d",
    ),  # not "-": ranges and dates
    (
        "safety",
        r"(?i)\b(kill|murder|bomb|weapon|gun|explosive|poison|drugs?|meth|hack|steal|shoplift|suicide|self-harm|racist|"
        r"slur|illegal|launder|fraud|scam|abuse|violence|porn|terroris[mt])\b",
    ),
    (
        "multilingual",
        r"(?i)\btranslate\b|[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Cyrillic}\p{Arabic}\p{Devanagari}\p{Greek}\p{Hebrew}\p{Thai}]{4,}",
    ),
)
PROMPT_CHARS = 1000  # the part of a prompt that is embedded
# Skills only a rule gives: an explicit format constraint is a surface property that a prompt's
# topic (what embeddings capture) says nothing about, so their rows never vote in the k-NN.
RULE_ONLY = frozenset({"precise_if"})


def prompt_text(frame: pl.DataFrame, kind: Kind) -> pl.Series:
    """The prompt side of each row (system and user turns), cut to PROMPT_CHARS."""
    column = "prompt" if kind == Kind.PREFERENCE else "messages"
    roles = pl.element().struct.field("role").is_in(["system", "user"])
    return frame.select(
        pl.col(column)
        .list.eval(pl.element().filter(roles).struct.field("content"))
        .list.join("\n")
        .str.slice(0, PROMPT_CHARS)
        .alias("prompt")
    )["prompt"]


def rule_skills(prompts: pl.Series, allowed: set[str] | None) -> pl.Series:
    """The first rule's skill that fires on each prompt (null when none does)."""
    rules = [(skill, pattern) for skill, pattern in RULES if allowed is None or skill in allowed]
    if not rules:
        return pl.Series("skill", [None] * len(prompts), dtype=pl.String)
    frame = pl.DataFrame({"prompt": prompts})
    expr: Any = pl.when(pl.col("prompt").str.contains(rules[0][1])).then(pl.lit(rules[0][0]))
    for skill, pattern in rules[1:]:
        expr = expr.when(pl.col("prompt").str.contains(pattern)).then(pl.lit(skill))
    return frame.select(expr.otherwise(None).alias("skill"))["skill"]


def seed_rows(frame: pl.DataFrame, kind: Kind, spec: ClassifierSpec, seed: int, base: Path, allowed: set[str] | None) -> pl.DataFrame:
    """Labeled prompts to vote with: up to ``seeds_per_skill`` rows per skill from sources that declare
    their skill (a seeded random choice; not the RULE_ONLY skills) plus every row of the spec's seed files."""
    declared = frame.filter(pl.col("skill_from") == "declared").select(
        prompt_text(frame.filter(pl.col("skill_from") == "declared"), kind), pl.col("skill")
    )
    parts = []
    for skill in sorted(set(declared["skill"].to_list())):
        if (allowed is not None and skill not in allowed) or skill in RULE_ONLY:
            continue
        rows = declared.filter(pl.col("skill") == skill)
        take = min(rows.height, spec.seeds_per_skill)
        picked = np.sort(source_rng(seed, f"seeds/{skill}").choice(rows.height, size=take, replace=False))
        parts.append(rows[picked])
    for path in spec.seeds:
        local = resolve_path(path, base)
        extra = pl.read_parquet(local) if local.suffix == ".parquet" else pl.read_ndjson(local)
        if not {"prompt", "skill"} <= set(extra.columns):
            raise InputError(f"{local}: seed rows need 'prompt' and 'skill' columns, have {extra.columns}")
        parts.append(extra.select(pl.col("prompt").str.slice(0, PROMPT_CHARS), pl.col("skill").cast(pl.String)))
    return pl.concat(parts) if parts else pl.DataFrame(schema={"prompt": pl.String, "skill": pl.String})


def knn_vote(query: np.ndarray, seeds: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, the label with the largest similarity-weighted vote among its k nearest
    seeds, and that vote's share of all k votes. Ties go to the label sorted first."""
    names, codes = np.unique(labels, return_inverse=True)
    k = min(k, len(seeds))
    sims = query @ seeds.T
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(sims, nearest, axis=1), 1e-6, None)
    votes = np.zeros((len(query), len(names)))
    np.add.at(votes, (np.repeat(np.arange(len(query)), k), codes[nearest].ravel()), weights.ravel())
    best = votes.argmax(axis=1)
    return names[best], votes[np.arange(len(query)), best] / votes.sum(axis=1)


def classify(frame: pl.DataFrame, kind: Kind, spec: ClassifierSpec, seed: int, base: Path, targets: set[str] | None) -> pl.DataFrame:
    """``frame`` with a skill for every row whose source declares none (``skill_from`` says how)."""
    todo = frame["skill"].is_null()
    if not todo.any():
        return frame
    undecided = frame.filter(todo)
    prompts = prompt_text(undecided, kind)
    skill = pl.Series("skill", [None] * undecided.height, dtype=pl.String)
    source = pl.Series("skill_from", [None] * undecided.height, dtype=pl.String)
    score = pl.Series("skill_score", [None] * undecided.height, dtype=pl.Float64)
    if spec.method in ("rules", "rules+knn"):
        skill = rule_skills(prompts, targets)
        source = pl.select(pl.when(skill.is_not_null()).then(pl.lit("rule:") + skill).otherwise(None).alias("skill_from")).to_series()
        score = pl.select(pl.when(skill.is_not_null()).then(1.0).otherwise(None).alias("skill_score")).to_series()
    if spec.method in ("knn", "rules+knn"):
        seeds = seed_rows(frame, kind, spec, seed, base, targets)
        left = np.flatnonzero(skill.is_null().to_numpy())
        if seeds.height and len(left):
            from thresher.curation.embeddings import encode

            vectors = encode(prompts.gather(left).to_list() + seeds["prompt"].to_list(), spec.model, show_progress=False)
            labels, shares = knn_vote(vectors[: len(left)], vectors[len(left) :], seeds["skill"].to_numpy(), spec.k)
            skill = skill.scatter(left, labels.tolist())
            source = source.scatter(left, "knn")
            score = score.scatter(left, shares.astype(np.float64))
    fallback = skill.is_null()
    skill = skill.fill_null(spec.default)
    source = pl.select(pl.when(fallback).then(pl.lit("default")).otherwise(source).alias("skill_from")).to_series()
    decided = frame.filter(todo).with_columns(skill.alias("skill"), source.alias("skill_from"), score.alias("skill_score"))
    index = pl.Series(np.flatnonzero(todo.to_numpy()))
    return frame.with_columns(
        frame["skill"].scatter(index, decided["skill"]),
        frame["skill_from"].scatter(index, decided["skill_from"]),
        frame["skill_score"].scatter(index, decided["skill_score"]),
    )
