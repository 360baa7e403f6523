"""The mixture spec: one YAML file, validated with pydantic; an error names the line and the field.

A spec says what kind of rows the mixture holds, how many (rows or tokens), where each source comes
from and how much of it to take, the skill shares to aim for, and the steps (normalize, length
filters, dedup, decontaminate) that run on every source, in order, before sampling.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, field_validator, model_validator

from thresher.config import Strict, expand, read_spec_text, resolve_path
from thresher.config import parse_spec as parse_model
from thresher.errors import SpecError
from thresher.records import Kind


class Amount(Strict):
    """How much of a source to take: exactly one of count (rows), fraction (of the source), weight
    (a share of what the total leaves), tokens (a token budget)."""

    # rows to take (drawn with the spec's seed; more than the source has repeats rows up to max_repetition)
    count: int | None = Field(default=None, ge=0)
    # a share of the source's rows (1.0: all of them)
    fraction: float | None = Field(default=None, ge=0)
    # a relative share of the rows the total leaves after count/fraction/tokens sources
    weight: float | None = Field(default=None, gt=0)
    # a token budget (needs `tokenizer`)
    tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Amount:
        given = [k for k in ("count", "fraction", "weight", "tokens") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of count, fraction, weight, tokens (got {', '.join(given) or 'none'})")
        return self

    @property
    def key(self) -> str:
        return next(k for k in ("count", "fraction", "weight", "tokens") if getattr(self, k) is not None)


class Total(Strict):
    # rows in the mixture (a bare number, `total: 3000`, means rows)
    rows: int | None = Field(default=None, gt=0)
    # tokens in the mixture (needs `tokenizer`)
    tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _bare_rows(cls, value: Any) -> Any:
        return {"rows": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one(self) -> Total:
        if (self.rows is None) == (self.tokens is None):
            raise ValueError("give exactly one of rows, tokens")
        return self

    @property
    def unit(self) -> Literal["rows", "tokens"]:
        return "rows" if self.rows is not None else "tokens"

    @property
    def value(self) -> int:
        return self.rows if self.rows is not None else int(self.tokens or 0)


class TokenizerSpec(Strict):
    """A tokenizer.json file, a local folder or a hub id; ``chat_template`` counts the tokens of the
    rendered chat (a transformers tokenizer with a template) rather than of the bare message texts."""

    # a tokenizer.json file, a local tokenizer folder or a hub id, for token amounts and limits
    path: str
    # count the tokens of the chat rendered with the tokenizer's template, not of the bare texts
    chat_template: bool = False

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class SourceSpec(Strict):
    # the source's name: in provenance, the manifest and the report (unique in the spec)
    name: str = Field(min_length=1)
    # a file or folder (relative to this spec's folder; ${VAR:-default} expanded); or hub
    path: str | None = None
    hub: str | None = None  # ORG/NAME, optionally @CONFIG
    # the split of a hub dataset (default: train)
    split: str | None = None
    # force an input format (see `thresher formats`; default: detected from the first row)
    format: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)  # the format's field -> the input's field
    use: Literal["chosen", "rejected"] | None = None  # preference rows in an SFT mixture: which side becomes the chat
    filter: list[str] = Field(default_factory=list)  # Polars SQL conditions a row must meet
    # how much to take; without `skills`, every source needs one
    amount: Amount | None = None
    # how many times a row may be repeated to fill its amount (1.0: never)
    max_repetition: float = Field(default=1.0, ge=1.0)
    priority: int = 0  # dedup across sources keeps the copy in the source with the higher priority
    # the skill of every row of this source; unset: each row is classified
    skill: str | None = None

    @model_validator(mode="after")
    def _where(self) -> SourceSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path, hub")
        return self

    @field_validator("filter", mode="before")
    @classmethod
    def _one_filter(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ClassifierSpec(Strict):
    """How rows without a declared skill get one: rules first, then the k nearest labeled seed rows."""

    # rules (keyword and format rules), knn (nearest labeled seeds) or both, rules first
    method: Literal["rules", "knn", "rules+knn"] = "rules+knn"
    # neighbours the k-NN vote uses
    k: int = Field(default=7, ge=1)
    # labeled rows per skill the k-NN index holds
    seeds_per_skill: int = Field(default=200, ge=1)
    model: str | None = None  # embedding model (default: all-MiniLM-L6-v2)
    default: str = "chat"  # the skill of a row nothing else decides
    seeds: list[str] = Field(default_factory=list)  # extra labeled files with a ``skill`` column


class SkillsSpec(Strict):
    # skill -> share of the total (shares add up to 1)
    targets: dict[str, float]
    # shares of rows or of tokens (the total's unit)
    by: Literal["rows", "tokens"] = "rows"
    # how rows of sources without a skill get one
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)

    @field_validator("targets")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("name at least one skill")
        if any(v < 0 for v in value.values()):
            raise ValueError("shares must be >= 0")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"shares must add up to 1, they add up to {sum(value.values()):g}")
        return value


class NormalizeStep(Strict):
    # Unicode normalization of every message (NFC, NFKC, or none)
    unicode: Literal["NFC", "NFKC", "none"] = "NFC"
    strip: bool = True  # strip whitespace around each message, turn \r\n into \n
    drop_empty: bool = True  # remove rows with an empty message


class LengthStep(Strict):
    # drop rows with fewer characters (all messages)
    min_chars: int | None = Field(default=None, ge=0)
    # drop rows with more characters
    max_chars: int | None = Field(default=None, ge=0)
    # drop rows with fewer tokens (needs `tokenizer`)
    min_tokens: int | None = Field(default=None, ge=0)
    # drop rows with more tokens (needs `tokenizer`)
    max_tokens: int | None = Field(default=None, ge=0)
    # drop rows with fewer messages
    min_turns: int | None = Field(default=None, ge=0)
    # drop rows with more messages
    max_turns: int | None = Field(default=None, ge=0)


class DedupStep(Strict):
    # exact (hash of the normalized text), minhash (near duplicates, Jaccard) or embedding (cosine)
    method: Literal["exact", "minhash", "embedding"] = "minhash"
    scope: Literal["within", "across"] = "across"  # within each source, or across all of them
    # similarity above which rows are duplicates (default: 0.8 minhash, 0.95 embedding)
    threshold: float | None = Field(default=None, gt=0, le=1)
    # which text is compared: the whole chat, or the prompt (user turns) only
    field: Literal["all", "prompt"] = "all"
    # words per shingle (minhash)
    ngram: int = Field(default=5, ge=1)
    # MinHash permutations (more: a closer estimate, slower)
    num_perm: int = Field(default=128, ge=16)
    # embedding model (default: offline all-MiniLM-L6-v2)
    model: str | None = None


class DecontaminateStep(Strict):
    benchmarks: list[str] = Field(min_length=1)  # NAME or NAME=PATH, as ``thresher audit --bench``
    # which detectors run (as `thresher audit --methods`)
    methods: list[Literal["ngram", "minhash", "embedding"]] = ["ngram"]
    # method -> threshold (default: the audit's: ngram 0.5, minhash 0.5, embedding 0.85)
    thresholds: dict[Literal["ngram", "minhash", "embedding"], float] = Field(default_factory=dict)
    # which text is matched: prompt (user turns), response (assistant turns) or all
    fields: Literal["prompt", "response", "all"] = "all"
    # embedding model (default: offline all-MiniLM-L6-v2)
    model: str | None = None


STEP_TYPES: dict[str, type[Strict]] = {
    "normalize": NormalizeStep,
    "length": LengthStep,
    "dedup": DedupStep,
    "decontaminate": DecontaminateStep,
}
Step = NormalizeStep | LengthStep | DedupStep | DecontaminateStep


class StepItem(Strict):
    """One entry of ``steps``: a single key naming the step, its settings as the value."""

    # Unicode and whitespace normalization, empty messages dropped
    normalize: NormalizeStep | None = None
    # length filters
    length: LengthStep | None = None
    # exact or near-duplicate removal
    dedup: DedupStep | None = None
    # remove rows that leak benchmark items
    decontaminate: DecontaminateStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_body(cls, value: Any) -> Any:
        if isinstance(value, dict):  # ``- normalize:`` with nothing after it means the defaults
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one(self) -> StepItem:
        given = [name for name in STEP_TYPES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"each step is one of {', '.join(STEP_TYPES)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def name(self) -> str:
        return next(name for name in STEP_TYPES if getattr(self, name) is not None)

    @property
    def body(self) -> Step:
        return getattr(self, self.name)


class OutputSpec(Strict):
    # rows per Parquet shard
    shard_rows: int = Field(default=100_000, ge=1)
    # shuffle the mixture's rows (seeded); false: grouped by source
    shuffle: bool = True


class MixSpec(Strict):
    # the kind of rows: sft (chats), preference (chosen/rejected) or rlvr (prompt, ground truth, verifier)
    kind: Kind
    # every random choice (sampling, classification seeds, shuffling) derives from it
    seed: int = 0
    # how big the mixture is: rows (a number) or {tokens: N}; needed with `skills`
    total: Total | None = None
    # counts tokens for token totals, amounts and length limits
    tokenizer: TokenizerSpec | None = None
    # where rows come from and how much of each
    sources: list[SourceSpec] = Field(min_length=1)
    # skill shares to aim for (then sources need no amount)
    skills: SkillsSpec | None = None
    # steps run in order on every source before sampling: normalize, length, dedup, decontaminate
    steps: list[StepItem] = Field(default_factory=list)
    # how the mixture is written
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="after")
    def _consistent(self) -> MixSpec:
        names = [s.name for s in self.sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source names must be unique; repeated: {', '.join(twice)}")
        wants_tokens = (
            (self.total is not None and self.total.unit == "tokens")
            or any(s.amount is not None and s.amount.tokens is not None for s in self.sources)
            or (self.skills is not None and self.skills.by == "tokens")
            or any(s.length is not None and (s.length.min_tokens is not None or s.length.max_tokens is not None) for s in self.steps)
        )
        if wants_tokens and self.tokenizer is None:
            raise ValueError("token amounts, token totals and token length limits need a tokenizer: set 'tokenizer'")
        if self.skills is None:
            missing = [s.name for s in self.sources if s.amount is None]
            if missing:
                raise ValueError(f"sources {missing} have no amount; give each an amount, or give 'skills' targets")
        else:
            unknown = sorted({s.skill for s in self.sources if s.skill and s.skill not in self.skills.targets})
            if unknown:
                raise ValueError(f"skills {unknown} of some sources have no target share in 'skills.targets'")
            if self.total is None:
                raise ValueError("skill targets are shares of the total: set 'total'")
            if self.skills.by != self.total.unit:
                raise ValueError(f"skills.by is {self.skills.by} but total is in {self.total.unit}; use one unit for both")
            if self.skills.classifier.default not in self.skills.targets and any(s.skill is None for s in self.sources):
                raise ValueError(
                    f"skills.classifier.default {self.skills.classifier.default!r} has no target share; "
                    f"name one of {', '.join(self.skills.targets)}"
                )
        return self

    def canonical_json(self) -> bytes:
        """The spec as canonical JSON (sorted keys, defaults filled in): what its hash is taken of."""
        data = self.model_dump(mode="json", exclude_none=False)
        data["steps"] = [{step.name: step.body.model_dump(mode="json")} for step in self.steps]
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)

    def hash(self) -> str:
        return hashlib.blake2b(self.canonical_json(), digest_size=16).hexdigest()


def parse_spec(text: str, origin: str = "<spec>", model: type[BaseModel] | None = None) -> Any:
    """A MixSpec (or another ``model``) from YAML text; see ``thresher.config.parse_spec``."""
    return parse_model(text, origin, model or MixSpec)


def load_spec(path: str | Path, model: type[BaseModel] | None = None, overrides: list[str] | None = None) -> Any:
    """Read and validate the mixture spec at ``path`` (a MixSpec unless ``model`` says otherwise), with
    ``KEY=VALUE`` overrides."""
    path = Path(path)
    return parse_model(read_spec_text(path), str(path), model or MixSpec, overrides)


__all__ = ["MixSpec", "SpecError", "expand", "load_spec", "parse_spec", "resolve_path"]
