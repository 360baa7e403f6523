"""``thresher train sft CONFIG.yaml [KEY=VALUE ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thresher.cli_common import EXIT_BAD_INPUT, err_console, exit_on_bad_input, fail, out_console

train_app = typer.Typer(help="Train: SFT (DPO and RLVR follow).", no_args_is_help=True)


@train_app.command("sft")
def sft(
    config: Annotated[Path, typer.Argument(help="The training config (YAML).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides, e.g. optim.lr=1e-5 max_steps=10.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-step lines.")] = False,
) -> None:
    """Supervised fine-tuning on assistant tokens; writes metrics.jsonl and a Hugging Face checkpoint (OUTPUT_DIR/final)."""
    from thresher.mixing.spec import SpecError
    from thresher.train.config import load_config
    from thresher.train.sft import run_sft

    with exit_on_bad_input():
        try:
            cfg = load_config(config, overrides or [])
        except SpecError as e:
            fail(str(e), EXIT_BAD_INPUT)
            raise AssertionError from e  # not reached

        def show(record: dict) -> None:
            if not quiet:
                err_console.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                                  highlight=False)

        result = run_sft(cfg, show)
    out_console.print(f"{result.steps} steps; checkpoint: {result.checkpoint}; "
                      f"held-out loss: {' → '.join(f'{loss:.3f}' for _, loss in result.eval_losses) or 'n/a'}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
