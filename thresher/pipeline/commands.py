"""``thresher run PIPELINE.yaml [--dry-run]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from thresher.cli_common import HELP_CONFIG, OVERRIDE_CONTEXT, OverridesArg, checked_overrides, out_console, show_config
from thresher.progress import quiet_now, say


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""

    @app.command("run", context_settings=OVERRIDE_CONTEXT)
    def run(
        ctx: typer.Context,
        pipeline: Annotated[Path, typer.Argument(help="The pipeline (YAML): output_dir and a list of stages.")],
        overrides: OverridesArg = None,
        *,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and what is cached; run nothing.")] = False,
        help_config: Annotated[
            bool,
            typer.Option("--help-config", is_eager=True, callback=show_config("thresher.pipeline.spec:PipelineSpec"), help=HELP_CONFIG),
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-stage lines.")] = False,
    ) -> None:
        """Run the stages of PIPELINE in order (dedup, decontaminate, mix, synth, sft, dpo, rlvr, eval), each cached by the
        content hash of its inputs and settings; a re-run skips finished stages and continues an interrupted one.
        Writes OUTPUT_DIR/report.html."""
        if quiet:
            quiet_now()
        from thresher.pipeline.registry import kind_of
        from thresher.pipeline.run import run_pipeline

        result = run_pipeline(pipeline, dry_run=dry_run, overrides=checked_overrides(ctx, overrides), log=None if quiet else say)
        table = Table(title=f"pipeline → {result.output_dir}" + (" (dry run)" if dry_run else ""), title_justify="left")
        for name in ("stage", "runs", "state", "key", "what it did"):
            table.add_column(name)
        for s in result.stages:
            table.add_row(s.name, s.run, s.state, s.key, kind_of(s.run).describe(s.summary) if s.summary else "-")
        out_console.print(table)
        if not dry_run:
            out_console.print(f"report: {result.report} ({result.seconds:.1f} s)")

    @app.command("gc")
    def gc(
        output_dir: Annotated[Path, typer.Argument(help="A pipeline's output_dir (holding stages/ and pipeline.json).")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    ) -> None:
        """Remove the stage folders the pipeline's latest run no longer uses (superseded by a change of settings
        or inputs); only folders Thresher made, never others' files."""
        from thresher.pipeline.gc import collect

        old, kept = collect(output_dir, dry_run)
        for item in old:
            out_console.print(f"{'would remove' if dry_run else 'removed'} {item.folder} ({item.bytes / 2**20:.1f} MiB)", highlight=False)
        for folder in kept:
            out_console.print(f"left alone (not a Thresher stage folder): {folder}", highlight=False)
        total = sum(i.bytes for i in old) / 2**20
        verb = "would free" if dry_run else "freed"
        out_console.print(f"{len(old)} superseded stage folder(s); {verb} {total:.1f} MiB", highlight=False)
