"""``thresher train sft|dpo|rlvr CONFIG.yaml [KEY=VALUE ...]``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from thresher.cli_common import HELP_CONFIG, OVERRIDE_CONTEXT, OverridesArg, checked_overrides, out_console, show_config
from thresher.progress import quiet_now, say

train_app = typer.Typer(help="Train: SFT, DPO and RLVR.", no_args_is_help=True, rich_markup_mode=None)

ConfigArg = Annotated[
    Path, typer.Argument(help="The training config (YAML; every key: --help-config); relative paths in it start at its folder.")
]
HelpConfig = Annotated[
    bool, typer.Option("--help-config", is_eager=True, callback=show_config("thresher.train.config:TrainConfig"), help=HELP_CONFIG)
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-step lines.")]
OverwriteOpt = Annotated[
    bool, typer.Option(help="Replace an earlier run's output_dir that had other settings (as overwrite=true; never others' files).")
]


def _run(config: Path, overrides: list[str] | None, quiet: bool, runner: Callable[..., Any], overwrite: bool = False) -> None:
    from thresher.progress import progress_bar
    from thresher.train.config import load_config
    from thresher.train.metrics import progress_log

    if quiet:
        quiet_now()
    cfg = load_config(config, [*(overrides or []), *(["overwrite=true"] if overwrite else [])])
    with progress_bar(transient=False, disable=quiet) as bar:
        result = runner(cfg, progress_log(bar, bar.add_task("training", total=None, rate=""), say))
    shown = ("eval_loss", "eval_reward_accuracy", "eval_pass@1")
    evals = "; ".join(
        f"{key} " + " → ".join(f"{e[key]:.3f}" for _, e in result.evals) for key in shown if result.evals and key in result.evals[0][1]
    )
    out_console.print(f"{result.steps} steps; checkpoint: {result.checkpoint}; held-out {evals or 'n/a'}")


def _command(name: str, runner: str, doc: str) -> None:
    """Add ``thresher train NAME``: load the config with its overrides and run ``runner`` ("module:function")."""

    def command(
        ctx: typer.Context,
        config: ConfigArg,
        overrides: OverridesArg = None,
        *,
        quiet: QuietOpt = False,
        overwrite: OverwriteOpt = False,
        help_config: HelpConfig = False,
    ) -> None:
        import importlib

        module, function = runner.split(":")
        _run(config, checked_overrides(ctx, overrides), quiet, getattr(importlib.import_module(module), function), overwrite)

    command.__doc__ = doc
    train_app.command(name, context_settings=OVERRIDE_CONTEXT)(command)


_command(
    "sft",
    "thresher.train.sft:run_sft",
    "Supervised fine-tuning on assistant tokens; writes metrics.jsonl and a Hugging Face checkpoint (OUTPUT_DIR/final).",
)
_command(
    "dpo",
    "thresher.train.dpo:run_dpo",
    """Preference optimization (dpo.loss: sigmoid, dpo_norm, ipo, simpo) on chosen/rejected pairs; reference
    log-probs are computed once and cached. Writes metrics.jsonl and OUTPUT_DIR/final.""",
)
_command(
    "rlvr",
    "thresher.train.rlvr:run_rlvr",
    """Reinforcement learning with verifiable rewards (GRPO / DAPO / Dr GRPO): sample rlvr.group_size completions
    per prompt, score them with the rows' verifiers, take clipped policy-gradient steps. Writes metrics.jsonl
    (reward, held-out pass@1, KL, clip fraction, entropy, lengths, importance ratios, time split) and OUTPUT_DIR/final.""",
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
