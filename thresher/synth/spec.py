"""The synthesis spec (YAML): where prompts come from, which model generates, how completions are
scored, how the best and the pairs are chosen, and what is written. Errors name the line and field."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator

from thresher.config import Strict, load_spec
from thresher.generation.sampling import SamplingParams
from thresher.synth.backends import BackendSpec
from thresher.verifiers import NAMES as VERIFIER_NAMES


class SynthesizePrompts(Strict):
    """Prompts made from templates: persona-driven math or code tasks (written by the generator model),
    or precise instruction following (a base task plus 1-3 IFEval constraints, composed here)."""

    # math or code (persona-driven, written by the generator) or precise_if (IFEval constraints)
    task: Literal["math", "code", "precise_if"]
    # how many prompts to make
    count: int = Field(gt=0)
    personas: list[str] | str | None = None  # a list, or a file with one persona per line
    topics: list[str] | str | None = None  # precise_if: base tasks; default: a built-in list
    # precise_if: at most this many constraints per prompt
    max_constraints: int = Field(default=3, ge=1, le=3)
    # seeds the persona/topic and constraint choices
    seed: int = 0


class PromptSource(Strict):
    # the source's name (unique): in provenance and the manifest
    name: str = Field(min_length=1)
    # a file or folder of prompts (relative to this spec's folder); or hub, or synthesize
    path: str | None = None
    # a hub dataset ORG/NAME (offline runs need a local path)
    hub: str | None = None
    # the split of a hub dataset
    split: str | None = None
    # force an input format (see `thresher formats`)
    format: str | None = None
    # the format's field -> the input's field
    fields: dict[str, str] = Field(default_factory=dict)
    kind: Literal["rlvr", "sft"] = "rlvr"  # rlvr rows bring their ground truth and verifier
    verifier: str | None = None  # use this verifier for every row of the source
    limit: int | None = Field(default=None, gt=0)  # the first N prompts
    # make the prompts instead of reading them
    synthesize: SynthesizePrompts | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> PromptSource:
        given = [k for k in ("path", "hub", "synthesize") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, hub, synthesize (got {', '.join(given) or 'none'})")
        if self.verifier is not None and self.verifier not in VERIFIER_NAMES:
            raise ValueError(f"unknown verifier {self.verifier!r}; known: {', '.join(VERIFIER_NAMES)}")
        return self


class Generator(BackendSpec):
    # how completions are sampled: n per prompt, temperature, top_p, max_tokens, stop, seed
    sampling: SamplingParams = SamplingParams(n=4, temperature=1.0, max_tokens=256)


class VerifierScore(Strict):
    name: str | None = None  # None: each row's own verifier
    # its weight in the combined score
    weight: float = Field(default=1.0, ge=0)


class RewardModelScore(Strict):
    # a sequence-classification reward model (local folder or hub id)
    model: str
    # its weight in the combined score
    weight: float = Field(default=1.0, ge=0)
    # completions scored per forward pass
    batch_size: int = 8


class JudgeScore(BackendSpec):
    # its weight in the combined score
    weight: float = Field(default=1.0, ge=0)
    # the judge rates 1..scale (normalized to 0..1)
    scale: int = Field(default=5, ge=2, le=10)
    # tokens the judge may write (its reasoning, then the rating)
    max_tokens: int = 256


class ScorerSpec(Strict):
    # score by checking the answer (math, code tests in the sandbox, IFEval instructions)
    verifier: VerifierScore | None = None
    # score with a reward model
    reward_model: RewardModelScore | None = None
    # score with an LLM judge
    judge: JudgeScore | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_verifier(cls, value: Any) -> Any:
        if value == "verifier":
            return {"verifier": {}}
        if isinstance(value, dict) and "verifier" in value and value["verifier"] is None:
            return {**value, "verifier": {}}
        return value

    @model_validator(mode="after")
    def _one(self) -> ScorerSpec:
        given = [k for k in ("verifier", "reward_model", "judge") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"each scorer is one of verifier, reward_model, judge (got {', '.join(given) or 'none'})")
        return self

    @property
    def body(self) -> VerifierScore | RewardModelScore | JudgeScore:
        return next(b for b in (self.verifier, self.reward_model, self.judge) if b is not None)


class SelectSpec(Strict):
    # which completions make a preference pair: best vs worst, best vs a random other, or majority vote
    pair_policy: Literal["best_vs_worst", "best_vs_random", "majority"] = "best_vs_worst"
    # SFT keeps the best completion only when it scores at least this
    min_score: float = 0.0
    # a preference pair needs chosen - rejected of at least this
    min_margin: float = 0.0
    # no pair of two identical completions
    drop_identical: bool = True
    # no pair when every completion fails
    drop_all_fail: bool = True
    # a completion passes (for pass rates) when its score is at least this
    pass_threshold: float = 1.0
    pass_rate: tuple[float, float] = (0.0, 1.0)  # RLVR output keeps prompts whose pass rate lies in [low, high]

    @model_validator(mode="after")
    def _range(self) -> SelectSpec:
        low, high = self.pass_rate
        if not 0 <= low <= high <= 1:
            raise ValueError(f"pass_rate must be [low, high] with 0 <= low <= high <= 1, got {list(self.pass_rate)}")
        return self


class SynthSpec(Strict):
    # seeds sampling and selection
    seed: int = 0
    # where prompts come from (files, hub, or synthesized)
    prompts: list[PromptSource] = Field(min_length=1)
    # the model that writes completions (or `generators`, several)
    generator: Generator | None = None
    generators: list[Generator] | None = None  # several models (on- and off-policy): each gives its n samples per prompt
    # how completions are scored; scores are combined by weight
    scorers: list[ScorerSpec] = Field(min_length=1)
    # what is kept
    select: SelectSpec = SelectSpec()
    # what to write: sft (best completion), preference (pairs), rlvr (prompts by pass rate)
    outputs: list[Literal["sft", "preference", "rlvr"]] = ["sft", "preference"]
    batch_size: int = Field(default=16, gt=0)  # prompts per generation call (and per cache commit)

    @property
    def all_generators(self) -> list[Generator]:
        """The generators in order; the first also writes synthesized prompts and dropped-constraint answers."""
        return [self.generator] if self.generator is not None else list(self.generators or [])

    @model_validator(mode="after")
    def _consistent(self) -> SynthSpec:
        if (self.generator is None) == (not self.generators):
            raise ValueError("give exactly one of generator, generators (a non-empty list)")
        models = [g.model for g in self.all_generators]
        if len(set(models)) < len(models):
            raise ValueError(f"generators must be different models; repeated: {sorted({m for m in models if models.count(m) > 1})}")
        names = [p.name for p in self.prompts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"prompt source names must be unique; repeated: {', '.join(twice)}")
        if "rlvr" in self.outputs and not any(s.verifier is not None for s in self.scorers):
            raise ValueError("the rlvr output filters prompts by pass rate, which needs a verifier scorer")
        return self

    def hash(self) -> str:
        return hashlib.blake2b(orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def load_synth_spec(path: str | Path, overrides: list[str] | None = None) -> SynthSpec:
    """The synthesis spec at ``path`` with ``KEY=VALUE`` overrides."""
    return load_spec(path, SynthSpec, overrides=overrides)
