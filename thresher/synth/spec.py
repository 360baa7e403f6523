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

    task: Literal["math", "code", "precise_if"]
    count: int = Field(gt=0)
    personas: list[str] | str | None = None  # a list, or a file with one persona per line
    topics: list[str] | str | None = None  # precise_if: base tasks; default: a built-in list
    max_constraints: int = Field(default=3, ge=1, le=3)
    seed: int = 0


class PromptSource(Strict):
    name: str = Field(min_length=1)
    path: str | None = None
    hub: str | None = None
    split: str | None = None
    format: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    kind: Literal["rlvr", "sft"] = "rlvr"  # rlvr rows bring their ground truth and verifier
    verifier: str | None = None  # use this verifier for every row of the source
    limit: int | None = Field(default=None, gt=0)  # the first N prompts
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
    sampling: SamplingParams = SamplingParams(n=4, temperature=1.0, max_tokens=256)


class VerifierScore(Strict):
    name: str | None = None  # None: each row's own verifier
    weight: float = Field(default=1.0, ge=0)


class RewardModelScore(Strict):
    model: str
    weight: float = Field(default=1.0, ge=0)
    batch_size: int = 8


class JudgeScore(BackendSpec):
    weight: float = Field(default=1.0, ge=0)
    scale: int = Field(default=5, ge=2, le=10)
    max_tokens: int = 256


class ScorerSpec(Strict):
    verifier: VerifierScore | None = None
    reward_model: RewardModelScore | None = None
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
    pair_policy: Literal["best_vs_worst", "best_vs_random", "majority"] = "best_vs_worst"
    min_score: float = 0.0
    min_margin: float = 0.0
    drop_identical: bool = True
    drop_all_fail: bool = True
    pass_threshold: float = 1.0
    pass_rate: tuple[float, float] = (0.0, 1.0)  # RLVR output keeps prompts whose pass rate lies in [low, high]

    @model_validator(mode="after")
    def _range(self) -> SelectSpec:
        low, high = self.pass_rate
        if not 0 <= low <= high <= 1:
            raise ValueError(f"pass_rate must be [low, high] with 0 <= low <= high <= 1, got {list(self.pass_rate)}")
        return self


class SynthSpec(Strict):
    seed: int = 0
    prompts: list[PromptSource] = Field(min_length=1)
    generator: Generator | None = None
    generators: list[Generator] | None = None  # several models (on- and off-policy): each gives its n samples per prompt
    scorers: list[ScorerSpec] = Field(min_length=1)
    select: SelectSpec = SelectSpec()
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


def load_synth_spec(path: str | Path) -> SynthSpec:
    return load_spec(path, SynthSpec)
