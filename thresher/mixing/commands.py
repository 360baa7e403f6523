"""``thresher mix SPEC.yaml --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from thresher.cli_common import HELP_CONFIG, OVERRIDE_CONTEXT, OverridesArg, checked_overrides, out_console, show_config
from thresher.io.outputs import committed_folder
from thresher.progress import quiet_now, say


def _print_summary(manifest: dict[str, Any], out: Path, seconds: float, cached: list[str]) -> None:
    targets = manifest["targets"].get("skills", {})
    unit = manifest["targets"]["unit"]
    share_key = "token_share" if unit == "tokens" else "row_share"
    table = Table(title=f"mixture → {out}", title_justify="left")
    for name in ("skill", "target", "achieved", "rows", "tokens"):
        table.add_column(name, justify="left" if name == "skill" else "right")
    for skill, got in manifest["achieved"]["per_skill"].items():
        want = targets.get(skill, {}).get("share")
        table.add_row(
            skill,
            f"{100 * want:.1f}%" if want is not None else "-",
            f"{100 * (got[share_key] or 0):.1f}%",
            str(got["rows"]),
            str(got["tokens"]) if got["tokens"] is not None else "-",
        )
    out_console.print(table)
    cache_note = f"; cached: {', '.join(cached)}" if cached else ""
    out_console.print(
        f"{manifest['achieved']['rows']} rows in {len(manifest['files']) - 1} shard(s) ({seconds:.1f} s{cache_note}); "
        f"manifest: {out / 'manifest.json'}; report: {out / 'report.html'}"
    )


def register(app: typer.Typer) -> None:
    """Add ``mix`` to ``app``."""

    @app.command(context_settings=OVERRIDE_CONTEXT)
    def mix(
        ctx: typer.Context,
        spec: Annotated[Path, typer.Argument(help="The mixture spec (YAML).")],
        overrides: OverridesArg = None,
        *,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
        cache_dir: Annotated[Path | None, typer.Option(help="Where stage results are cached (default: OUT/cache).")] = None,
        help_config: Annotated[
            bool, typer.Option("--help-config", is_eager=True, callback=show_config("thresher.mixing.spec:MixSpec"), help=HELP_CONFIG)
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-stage lines.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace OUT even when it holds another command's or other inputs' output.")] = False,
    ) -> None:
        """Build a mixture from SPEC: load the sources, run its steps, draw the rows; write the mixture
        (Parquet shards), manifest.json (every row accounted for) and report.html."""
        if quiet:
            quiet_now()
        from thresher.mixing.pipeline import run_mix
        from thresher.mixing.spec import load_spec
        from thresher.progress import progress_bar

        mixture = load_spec(spec, overrides=checked_overrides(ctx, overrides))
        with committed_folder(out, "mix", [spec], overwrite, carry=("cache",)) as staging:
            stages = 2 + len(mixture.steps)
            with progress_bar() as progress:
                task = progress.add_task("mix", total=stages, rate="")
                result = run_mix(
                    mixture,
                    staging,
                    cache_dir,
                    log=None if quiet else say,
                    on_stage=lambda name: progress.update(task, advance=1, description=name),
                    base=spec.resolve().parent,
                )
        _print_summary(result.manifest, out, result.seconds, result.cached)
