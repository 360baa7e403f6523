"""``thresher synth SPEC.yaml --out DIR`` and ``thresher serve MODEL``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from thresher.cli_common import HELP_CONFIG, OVERRIDE_CONTEXT, OverridesArg, checked_overrides, out_console, show_config
from thresher.io.outputs import committed_folder
from thresher.progress import quiet_now, say


def register(app: typer.Typer) -> None:
    """Add ``synth`` and ``serve`` to ``app``."""

    @app.command(context_settings=OVERRIDE_CONTEXT)
    def synth(
        ctx: typer.Context,
        spec: Annotated[Path, typer.Argument(help="The synthesis spec (YAML).")],
        overrides: OverridesArg = None,
        *,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
        cache_dir: Annotated[Path | None, typer.Option(help="Where the request cache lives (default: OUT/cache).")] = None,
        help_config: Annotated[
            bool, typer.Option("--help-config", is_eager=True, callback=show_config("thresher.synth.spec:SynthSpec"), help=HELP_CONFIG)
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace OUT even when it holds another command's or other inputs' output.")] = False,
    ) -> None:
        """Generate n completions per prompt, score them, keep the best (SFT), build preference pairs and
        filter RLVR prompts by pass rate. A killed run resumes from its request cache."""
        if quiet:
            quiet_now()
        from thresher.synth.pipeline import run_synth
        from thresher.synth.spec import load_synth_spec

        settings = load_synth_spec(spec, checked_overrides(ctx, overrides))
        with committed_folder(out, "synth", [spec], overwrite, carry=("cache",)) as staging:
            result = run_synth(
                settings,
                staging,
                cache_dir,
                log=None if quiet else say,
                quiet=quiet,
                base=spec.resolve().parent,
                spec_path=spec,
            )
        manifest = result.manifest
        table = Table(title=f"synthesis → {out}", title_justify="left")
        for name in ("output", "prompts in", "rows out", "removed"):
            table.add_column(name, justify="left" if name == "output" else "right")
        for name, o in manifest["outputs"].items():
            table.add_row(name, str(o["in"]), str(o["out"]), str(o["removed"]))
        out_console.print(table)
        reused = sum(g["reused"] for g in manifest["generation"].values())
        generated = sum(g["generated"] for g in manifest["generation"].values())
        out_console.print(
            f"reused {reused} completions from the cache, generated {generated} ({result.seconds:.1f} s); "
            f"manifest: {out / 'manifest.json'}; report: {out / 'report.html'}"
        )

    @app.command()
    def serve(
        model: Annotated[str, typer.Argument(help="A local model folder or hub id (transformers).")],
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port (0: any free port, printed at start).")] = 8000,
        name: Annotated[str | None, typer.Option(help="Model name clients send (default: MODEL).")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    ) -> None:
        """Serve MODEL on an OpenAI-compatible /v1/chat/completions endpoint (transformers; use `vllm serve` on GPUs)."""
        from thresher.synth.backends.hf import TransformersBackend
        from thresher.synth.serve import make_server

        server = make_server(TransformersBackend(model, device=device), host, port, name)
        out_console.print(f"serving {name or model} on http://{host}:{server.server_address[1]}/v1", highlight=False)
        out_console.file.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


__all__ = ["register"]
