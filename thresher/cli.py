"""The ``thresher`` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from thresher import __version__
from thresher.accounting import Account
from thresher.cli_common import (
    EXIT_BAD_INPUT,
    ExecutorOption,
    Handled,
    RayAddressOption,
    TasksOption,
    err_console,
    executor_of,
    out_console,
)
from thresher.cli_common import fail as _fail
from thresher.convert import OnError
from thresher.decontam.commands import register as register_decontam_commands
from thresher.errors import InputError
from thresher.evals.commands import register as register_eval_commands
from thresher.formats.shapes import SHAPES, ConvertOptions
from thresher.io.outputs import committed_folder, locked, refuse_overlap, remove_stale_temps, write_atomic
from thresher.mixing.commands import register as register_mix_commands
from thresher.pipeline.commands import register as register_pipeline_commands
from thresher.records import Kind
from thresher.synth.commands import register as register_synth_commands
from thresher.train.commands import register as register_train_commands

app = typer.Typer(
    help="Audit, decontaminate, curate, mix, synthesize and train on post-training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Handled,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        import thresher

        out_console.print(f"thresher {thresher.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors: no progress or step lines.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail in the step lines.")] = False,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="Append every step and progress line, timestamped, to this file (any verbosity).")
    ] = None,
    allow_weak_sandbox: Annotated[
        bool,
        typer.Option(
            "--allow-weak-sandbox",
            help="Where bubblewrap cannot run, run untrusted code in the weaker fallback (root only; see docs/safety.md).",
        ),
    ] = False,
) -> None:
    if allow_weak_sandbox:
        os.environ["THRESHER_ALLOW_WEAK_SANDBOX"] = "1"
    from thresher.progress import configure

    configure(0 if quiet else 2 if verbose else 1, log_file)


def _counts_table(title: str, rows: dict[str, Account], total: Account | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("input", "in", "out", "quarantined", "removed", "reasons"):
        table.add_column(name, justify="left" if name in ("input", "reasons") else "right", overflow="fold")
    items = list(rows.items()) + ([("total", total)] if total is not None and len(rows) > 1 else [])
    for name, c in items:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted((c.quarantined + c.removed).items()))
        table.add_row(name, str(c.rows_in), str(c.rows_out), str(c.quarantined_total), str(c.removed_total), reasons)
    return table


@app.command()
def version() -> None:
    """Print the version."""
    out_console.print(__version__)


@app.command()
def formats() -> None:
    """List the input formats Thresher recognises and the kinds they convert to."""
    table = Table(title="input formats (detected from the first row's fields)", title_justify="left")
    table.add_column("format")
    table.add_column("kinds")
    table.add_column("looks like")
    for shape in SHAPES:
        table.add_row(shape.name, "/".join(k.value for k in shape.kinds), shape.description)
    out_console.print(table)


@app.command()
def convert(
    inputs: Annotated[list[str], typer.Argument(help="Files (.jsonl[.gz], .json, .parquet, .csv), saved HF datasets, or hf:ORG/NAME.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .jsonl[.gz].")],
    kind: Annotated[Kind | None, typer.Option(help="Kind of rows to produce (default: from the input's format).")] = None,
    on_error: Annotated[str, typer.Option(help="fail: stop at the first bad row; quarantine: set bad rows aside and go on.")] = "fail",
    quarantine: Annotated[Path | None, typer.Option(help="Where quarantined rows go (default: OUT's name + .quarantine.jsonl).")] = None,
    format: Annotated[str | None, typer.Option("--format", help="Force an input format (see `thresher formats`).")] = None,
    source: Annotated[str | None, typer.Option(help="Source name for the rows (default: the input file's name).")] = None,
    split: Annotated[str | None, typer.Option(help="Split of a Hugging Face dataset.")] = None,
    verifier: Annotated[str, typer.Option(help="Verifier for RLVR rows that name none.")] = "math",
    summary: Annotated[Path | None, typer.Option(help="Write the account as JSON here (default: OUT's name + .summary.json).")] = None,
    workers: Annotated[int | None, typer.Option(help="Batches worked on at once (default: the cores); same outputs.")] = None,
) -> None:
    """Convert inputs to canonical rows, accounting for every row: in = out + quarantined."""
    from thresher.convert import convert as run_convert
    from thresher.convert import default_quarantine_path
    from thresher.progress import progress_bar

    if workers is not None and workers < 1:
        _fail(f"--workers must be at least 1, got {workers}", EXIT_BAD_INPUT)
    if on_error not in ("fail", "quarantine"):
        _fail(f"--on-error must be fail or quarantine, not {on_error!r}", EXIT_BAD_INPUT)
    summary_path = summary or out.with_name(f"{out.name.split('.')[0]}.summary.json")
    outputs = [out, quarantine or default_quarantine_path(out), summary_path]
    refuse_overlap(inputs, outputs)
    if len({os.path.abspath(p) for p in outputs}) < len(outputs):
        raise InputError(f"--out, --quarantine and --summary must be three different files: {', '.join(map(str, outputs))}")
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
    with locked(out), progress_bar() as progress:
        for path in outputs:
            remove_stale_temps(path)
        task = progress.add_task("converting", total=None, rate="")

        def advance(path: str, rows: int) -> None:
            progress.update(task, advance=rows, description=f"converting {Path(path).name}")

        report = run_convert(
            inputs,
            out,
            kind=kind,
            on_error=cast(OnError, on_error),
            quarantine=quarantine,
            shape_name=format,
            source=source,
            split=split,
            options=ConvertOptions(verifier=verifier),
            on_batch=advance,
            workers=workers,
        )
        write_atomic(summary_path, (json.dumps(report.as_dict(), indent=2) + "\n").encode())
    for line in report.first_errors:
        err_console.print(f"[yellow]quarantined[/] {line}", highlight=False, soft_wrap=True)
    hidden = report.total.quarantined_total - len(report.first_errors)
    if hidden > 0:
        err_console.print(f"[yellow]… and {hidden} more in {report.quarantine}[/]")
    out_console.print(_counts_table(f"convert → {out} ({report.kind.value if report.kind else '-'})", report.per_input, report.total))
    if report.quarantine and report.total.quarantined_total:
        out_console.print(f"quarantined rows with reasons: {report.quarantine}")
    report.total.check()  # a bug, never bad input: an AccountingError says so loudly (exit 3)


def _sample_text(row: dict[str, object], limit: int = 400) -> str:
    """A row as a person reads it: one line per message, long contents shortened."""
    lines = []
    for name in ("messages", "prompt", "chosen", "rejected"):
        for m in cast(list[dict[str, str]], row.get(name) or []):
            content = m["content"] if len(m["content"]) <= limit else m["content"][:limit] + " …"
            lines.append(f"[bold]{name}.{m['role']}:[/] {escape(content)}")
    for name in ("ground_truth", "verifier", "metadata"):
        if row.get(name):
            lines.append(f"[bold]{name}:[/] {escape(str(row[name])[:limit])}")
    return "\n".join(lines)


@app.command()
def inspect(
    files: Annotated[list[str], typer.Argument(help="Canonical or raw inputs to describe.")],
    kind: Annotated[Kind | None, typer.Option(help="Kind to read raw inputs as.")] = None,
    format: Annotated[str | None, typer.Option("--format", help="Force an input format.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="tokenizer.json file, tokenizer folder, or hub id: adds token counts.")] = None,
    samples: Annotated[int, typer.Option(help="How many sample rows to show.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for picking sample rows.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the statistics as JSON here.")] = None,
) -> None:
    """Counts per source and kind, length statistics, and a few sample rows."""
    from rich.panel import Panel

    from thresher import stats

    if json_out:
        refuse_overlap(files, [json_out])
    tok = stats.load_tokenizer(tokenizer) if tokenizer else None
    result: dict[str, object] = {}
    for path in files:
        frame, found_kind, counts = stats.load_canonical(path, kind, format)
        frame = stats.add_lengths(frame, found_kind, tok)
        out_console.rule(f"{path} — {found_kind.value}, {frame.height} rows")
        if counts.quarantined_total:
            out_console.print(_counts_table("rows that would not convert", {path: counts}))
        entry: dict[str, object] = {"kind": found_kind.value, "counts": counts.as_dict()}
        for column in ("chars", "tokens", "turns"):
            if column not in frame.columns:
                continue
            table = stats.length_table(frame, column)
            entry[column] = table.to_dicts()
            rich_table = Table(title=f"{column} per row", title_justify="left")
            for name in table.columns:
                rich_table.add_column(name, justify="left" if name == "source" else "right")
            for row in table.iter_rows():
                rich_table.add_row(*[str(v) for v in row])
            out_console.print(rich_table)
        for sample in frame.sample(n=min(samples, frame.height), seed=seed).to_dicts() if samples else []:
            out_console.print(Panel(_sample_text(sample), title=f"{sample['id']} ({sample['source']})", title_align="left"))
        result[path] = entry
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(json_out, (json.dumps(result, indent=2, default=str) + "\n").encode())


@app.command()
def dedup(
    inputs: Annotated[list[str], typer.Argument(help="Canonical files from `thresher convert`, or any input `convert` reads.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: kept.parquet, removed.parquet, summary.json.")],
    method: Annotated[str, typer.Option(help="exact (normalized text), minhash (n-gram Jaccard) or embedding (cosine).")] = "minhash",
    threshold: Annotated[float | None, typer.Option(help="Jaccard (minhash, default 0.8) or cosine (embedding, default 0.95).")] = None,
    keep: Annotated[str, typer.Option(help="Which copy stays: first, longest, or source-priority (the earlier input).")] = "first",
    field: Annotated[str, typer.Option(help="Compare all message contents, or only the prompt side.")] = "all",
    ngram: Annotated[int, typer.Option(help="Words per n-gram (minhash).")] = 5,
    num_perm: Annotated[int, typer.Option(help="MinHash signature width.")] = 128,
    bands: Annotated[str | None, typer.Option(help="LSH BANDSxROWS, e.g. 9x13 (default: derived from the threshold).")] = None,
    verify: Annotated[bool, typer.Option(help="Confirm LSH candidates by true Jaccard.")] = False,
    seed: Annotated[int, typer.Option(help="MinHash seed.")] = 1,
    model: Annotated[str | None, typer.Option(help="Embedding model path or hub id (default: offline all-MiniLM-L6-v2).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (GPU when there is one).")] = "cpu",
    kind: Annotated[Kind | None, typer.Option(help="Kind of rows (default: from the inputs).")] = None,
    on_error: Annotated[str, typer.Option(help="fail, or quarantine bad input rows to OUT/quarantine.jsonl.")] = "fail",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT even when it holds another command's or other inputs' output.")] = False,
    workers: Annotated[int | None, typer.Option(help="Batches worked on at once (default: the cores); same outputs.")] = None,
    executor: ExecutorOption = None,
    tasks: TasksOption = 2,
    ray_address: RayAddressOption = None,
) -> None:
    """Remove exact and near duplicates within and across inputs: in = kept + removed (+ quarantined)."""
    from thresher.curation.dedup import DedupConfig
    from thresher.curation.dedup import dedup as run_dedup
    from thresher.progress import progress_bar

    bands_n = rows_n = None
    if bands is not None:
        try:
            bands_n, rows_n = (int(x) for x in bands.lower().split("x"))
        except ValueError:
            _fail(f"--bands must look like 9x13, not {bands!r}", EXIT_BAD_INPUT)
    if on_error not in ("fail", "quarantine"):
        _fail(f"--on-error must be fail or quarantine, not {on_error!r}", EXIT_BAD_INPUT)
    config = DedupConfig(  # method, keep and field are checked by DedupConfig itself
        method=cast(Any, method),
        threshold=threshold,
        keep=cast(Any, keep),
        text_field=cast(Any, field),
        ngram=ngram,
        num_perm=num_perm,
        seed=seed,
        bands=bands_n,
        rows_per_band=rows_n,
        verify=verify,
        embedding_model=model,
        cache_dir=str(cache_dir) if cache_dir else None,
        device=device,
        workers=workers,
    )
    with progress_bar() as progress:
        task = progress.add_task("dedup: reading", total=None, rate="")

        def advance(stage: str, rows: int) -> None:
            progress.update(task, advance=rows, description=f"dedup: {'reading' if stage == 'scan' else 'writing'}")

        chosen = executor_of(executor, tasks, ray_address)
        with committed_folder(out, "dedup", inputs, overwrite) as staging:
            report = run_dedup(inputs, staging, config, kind=kind, on_error=cast(OnError, on_error), on_rows=advance, executor=chosen)
    summary = report.as_dict()
    table = Table(title=f"dedup ({config.method}, threshold {config.resolved_threshold}, keep {config.keep}) → {out}", title_justify="left")
    for name in ("source", "in", "kept", "removed", "by method", "across sources"):
        table.add_column(name, justify="left" if name in ("source", "by method") else "right")
    for source, row in summary["sources"].items():
        methods = ", ".join(f"{k}={v}" for k, v in row["removed_by_method"].items())
        table.add_row(source, str(row["in"]), str(row["kept"]), str(row["removed"]), methods, str(row["removed_across_sources"]))
    out_console.print(table)
    if summary["repeated_ids"]["count"]:
        err_console.print(
            f"[yellow]warning:[/] {summary['repeated_ids']['count']} ids are used by more than one row "
            f"(e.g. {', '.join(summary['repeated_ids']['examples'][:3])}); removed.parquet names the kept "
            "row by duplicate_of_input and duplicate_of_row too",
            highlight=False,
        )
    out_console.print(
        f"in {summary['in']} = kept {summary['kept']} + removed {summary['removed']} + quarantined {summary['quarantined']}"
        f" ({summary['seconds']} s); summary: {out / 'summary.json'}"
    )


register_decontam_commands(app)
register_mix_commands(app)
register_synth_commands(app)
register_train_commands(app)
register_eval_commands(app)
register_pipeline_commands(app)

if __name__ == "__main__":
    app()
