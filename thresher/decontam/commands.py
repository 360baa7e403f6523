"""``thresher benchmarks``, ``thresher audit`` and ``thresher decontaminate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from thresher.cache import cache_root
from thresher.cli_common import EXIT_BAD_INPUT, ExecutorOption, RayAddressOption, TasksOption, executor_of, fail, out_console
from thresher.errors import InputError
from thresher.io.outputs import committed_folder
from thresher.records import Kind

Train = Annotated[list[str], typer.Option("--train", "-t", help="Training input (repeat for several): any file `convert` reads.")]
Bench = Annotated[
    list[str], typer.Option("--bench", "-b", help="NAME (from the hub) or NAME=PATH (local file or folder, original format); repeat.")
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
BenchFields = Annotated[
    list[str] | None, typer.Option("--bench-fields", help="Custom benchmark fields: NAME:question=F1+F2,answer=F3[,id=F4]; repeat.")
]
Methods = Annotated[str, typer.Option(help="Comma-separated: ngram, minhash, embedding, rephrase, judge.")]
Fields = Annotated[str, typer.Option(help="Which training text to match: prompt (user turns), response (assistant turns) or all.")]


def _config(
    methods: str,
    fields: str,
    ngram_n: int,
    ngram_threshold: float,
    question_weight: float,
    answer_weight: float,
    max_bench_df: int,
    max_train_df: int,
    minhash_threshold: float,
    embedding_threshold: float,
    model: str | None,
    neighbours: int,
    cache_dir: Path | None,
    judge_model: str | None,
    judge_from: float,
    judge_threshold: float,
    device: str,
    min_words: int = 10,
    calibrate: int = 0,
    rephrase_threshold: float = 0.5,
    rephrase_from: float = 0.6,
    embed_backend: str = "onnx",
    workers: int | None = None,
    flag: str | None = None,
) -> Any:
    from thresher.decontam.audit import AuditConfig
    from thresher.decontam.classes import DEFAULT_FLAG
    from thresher.decontam.judge import JudgeConfig
    from thresher.decontam.ngram import NgramConfig
    from thresher.decontam.rephrase import RephraseConfig
    from thresher.decontam.similarity import EmbeddingMatchConfig, MinhashMatchConfig

    return AuditConfig(
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        fields=fields,  # type: ignore[arg-type]
        ngram=NgramConfig(
            n=ngram_n,
            threshold=ngram_threshold,
            question_weight=question_weight,
            answer_weight=answer_weight,
            max_bench_df=max_bench_df,
            max_train_df=max_train_df,
            min_words=min_words,
        ),
        minhash=MinhashMatchConfig(threshold=minhash_threshold, device=device),
        embedding=EmbeddingMatchConfig(
            model=model,
            threshold=embedding_threshold,
            neighbours=neighbours,
            cache_dir=str(cache_dir) if cache_dir else None,
            device=device,
            backend=embed_backend,
        ),
        judge=JudgeConfig(judge_model, candidates_from=judge_from, threshold=judge_threshold, device=device) if judge_model else None,
        rephrase=RephraseConfig(threshold=rephrase_threshold, candidates_from=rephrase_from),
        calibrate=calibrate,
        workers=workers,
        flag=tuple(c.strip() for c in flag.split(",") if c.strip()) if flag is not None else DEFAULT_FLAG,
    )


def _run(
    train: list[str],
    bench: list[str],
    out: Path,
    bench_fields: list[str] | None,
    config: Any,
    kind: Kind | None,
    on_error: str,
    top: int,
    split: bool,
    overwrite: bool,
    executor: Any = None,
) -> dict[str, Any]:
    from thresher.decontam.outputs import audit_to_folder
    from thresher.progress import progress_bar

    if on_error not in ("fail", "quarantine"):
        fail(f"--on-error must be fail or quarantine, not {on_error!r}", EXIT_BAD_INPUT)
    if not train:
        fail("give at least one --train input", EXIT_BAD_INPUT)
    inputs = train + [b.split("=", 1)[-1] for b in bench]
    with committed_folder(out, "decontaminate" if split else "audit", inputs, overwrite) as staging, progress_bar() as progress:
        task = progress.add_task("audit", total=None, rate="")
        report = audit_to_folder(
            train,
            bench,
            staging,
            bench_fields,
            config,
            kind,
            on_error,
            top,
            split,
            on_rows=lambda n: progress.update(task, advance=n),
            executor=executor,
        )
    _print_table(report, out)
    return report


def _print_table(report: dict[str, Any], out: Path) -> None:
    table = Table(title=f"leakage (items leaked / rows contaminated) → {out}", title_justify="left")
    benches = list(report["benchmarks"])
    table.add_column("source")
    table.add_column("rows", justify="right")
    for b in benches:
        table.add_column(b, justify="right")
    cells = {(r["source"], r["bench"]): r for r in report["table"]}
    for source, info in report["sources"].items():
        table.add_row(
            source,
            str(info["rows"]),
            *[f"{cells[(source, b)]['items_leaked']} / {cells[(source, b)]['rows_contaminated']}" for b in benches],
        )
    out_console.print(table)
    totals = report["totals"]
    out_console.print(
        f"{totals['rows_contaminated']} of {totals['rows_audited']} rows contaminated, {totals['items_leaked']} of "
        f"{totals['items']} items leaked ({report['seconds']} s); report: {out / 'report.html'}"
    )
    calibration = report["notes"].get("calibration")
    if calibration:
        recall = ", ".join(f"{v} {r['any']:.2f}" for v, r in calibration["recall"].items())
        out_console.print(
            f"calibration ({calibration['planted']} planted rows): recall {recall}; "
            f"corpus flag rate (untouched sampled rows; leaks and false positives together) {calibration['unplanted_flagged']['any']:.2%}"
        )
        estimate = calibration.get("false_positive_estimate")
        if estimate:
            out_console.print(
                f"false-positive estimate: {estimate['flagged']:.2%} of rows ({estimate['rows_matching_decoys']:.2%} of the sampled rows "
                f"match {estimate['decoys']} decoy items, scaled to {estimate['items']} items; a decoy joins halves of two items: "
                "the benchmarks' format and templates, in text no corpus holds)"
            )
            if estimate["corpus_flag_rate_within_twice_the_estimate"]:
                out_console.print(
                    "[yellow]warning:[/] the corpus's flag rate is within twice the false-positive estimate: "
                    "many of its flags may be template overlap, not leaks; read the report's classes"
                )


def register(app: typer.Typer) -> None:
    """Add the decontamination commands to ``app``."""

    @app.command()
    def benchmarks() -> None:
        """List the registered benchmarks: question and answer fields, hub dataset, local layout."""
        from thresher.decontam.benchmarks import REGISTRY

        out_console.print("benchmarks (--bench NAME from the hub, or NAME=PATH in the original format):\n", highlight=False)
        for b in REGISTRY.values():
            hub = f"{b.hub} ({', '.join(c for c in b.hub_configs if c) or 'default'}; {b.hub_split})" if b.hub else "-"
            out_console.print(
                f"[bold]{b.name}[/]  {escape(b.description)}\n  question: {escape(b.question_fields)}; answer: "
                f"{escape(b.answer_fields or '-')}\n  hub: {escape(hub)}; local files: {escape(b.local_pattern)}",
                highlight=False,
            )
        out_console.print("custom: --bench NAME=PATH --bench-fields NAME:question=FIELD[+FIELD],answer=FIELD[,id=FIELD]")

    def command(split: bool):  # noqa: ANN202 - builds the two commands from one option list
        def run(
            train: Train,
            bench: Bench,
            out: Out,
            bench_fields: BenchFields = None,
            methods: Methods = "ngram",
            fields: Fields = "all",
            ngram_n: Annotated[int, typer.Option("--ngram", help="Words per n-gram.")] = 8,
            ngram_threshold: Annotated[float, typer.Option(help="Share of an item's words covered by one row.")] = 0.5,
            question_weight: Annotated[float, typer.Option(help="Weight of question coverage.")] = 1.0,
            answer_weight: Annotated[float, typer.Option(help="Weight of answer coverage (0: questions only, as Tülu 3).")] = 0.6,
            max_bench_df: Annotated[int, typer.Option(help="N-grams in more benchmark items than this are boilerplate.")] = 10,
            max_train_df: Annotated[int, typer.Option(help="N-grams in more training rows than this are boilerplate.")] = 100,
            min_words: Annotated[int, typer.Option(help="Shared words an n-gram match needs (or all of a shorter item).")] = 10,
            calibrate: Annotated[
                int,
                typer.Option(
                    help="Plant this many controlled item variants into copies of sampled rows "
                    "and report each method's recall on them (never written out)."
                ),
            ] = 0,
            minhash_threshold: Annotated[float, typer.Option(help="Estimated Jaccard of item and row.")] = 0.5,
            embedding_threshold: Annotated[float, typer.Option(help="Cosine similarity of item and row.")] = 0.85,
            model: Annotated[str | None, typer.Option(help="Embedding model path or hub id (default: offline all-MiniLM-L6-v2).")] = None,
            neighbours: Annotated[int, typer.Option(help="Nearest benchmark items per row (embedding).")] = 3,
            cache_dir: Annotated[
                Path | None,
                typer.Option(help="Embedding cache folder (default: ~/.cache/thresher/embeddings, or $THRESHER_CACHE_DIR/embeddings)."),
            ] = None,
            embed_backend: Annotated[
                str,
                typer.Option(
                    help="CPU embedding runtime: torch, onnx (same vectors, faster) or onnx-int8 (faster still, cosines within ~0.02)."
                ),
            ] = "onnx",
            no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed everything again; read and write no cache.")] = False,
            rephrase_threshold: Annotated[float, typer.Option(help="Probability from which the rephrase method flags a pair.")] = 0.5,
            rephrase_from: Annotated[float, typer.Option(help="Embedding similarity from which pairs are re-scored (rephrase).")] = 0.6,
            judge_model: Annotated[str | None, typer.Option(help="Causal LM (path or hub id) for the judge method.")] = None,
            judge_from: Annotated[float, typer.Option(help="Embedding similarity from which pairs go to the judge.")] = 0.6,
            judge_threshold: Annotated[float, typer.Option(help="Judged probability from which a pair is contamination.")] = 0.5,
            device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
            kind: Annotated[Kind | None, typer.Option(help="Kind of the training rows (default: from the inputs).")] = None,
            on_error: Annotated[str, typer.Option(help="fail, or quarantine bad training rows to OUT/quarantine.jsonl.")] = "fail",
            top: Annotated[int, typer.Option(help="Matches shown side by side in the report.")] = 40,
            overwrite: Annotated[
                bool, typer.Option(help="Replace OUT even when it holds another command's or other inputs' output.")
            ] = False,
            workers: Annotated[int | None, typer.Option(help="Batches worked on at once (default: the cores); same outputs.")] = None,
            flag: Annotated[
                str | None,
                typer.Option(
                    help="Match classes that make a row contaminated (default: verbatim,reformatted,numbers_changed,partial,rephrase; "
                    "shared_boilerplate is the sixth)."
                ),
            ] = None,
            executor: ExecutorOption = None,
            tasks: TasksOption = 2,
            ray_address: RayAddressOption = None,
        ) -> None:
            if workers is not None and workers < 1:
                raise InputError(f"--workers must be at least 1, got {workers}")
            config = _config(
                methods,
                fields,
                ngram_n,
                ngram_threshold,
                question_weight,
                answer_weight,
                max_bench_df,
                max_train_df,
                minhash_threshold,
                embedding_threshold,
                model,
                neighbours,
                None if no_cache else cache_dir or cache_root() / "embeddings",
                judge_model,
                judge_from,
                judge_threshold,
                device,
                min_words,
                calibrate,
                rephrase_threshold,
                rephrase_from,
                embed_backend,
                workers,
                flag,
            )
            chosen = executor_of(executor, tasks, ray_address)
            report = _run(train, bench, out, bench_fields, config, kind, on_error, top, split, overwrite, chosen)
            if split:
                d = report["decontamination"]
                out_console.print(
                    f"in {d['in']} = clean {d['clean']} + removed {d['removed']} + quarantined {d['quarantined']}; "
                    f"{out / 'clean.parquet'}, {out / 'removed.parquet'}"
                )

        return run

    audit = command(split=False)
    audit.__doc__ = "Find training rows that leak benchmark items: matches.parquet, summary.json, report.html."
    app.command("audit")(audit)
    decontaminate = command(split=True)
    decontaminate.__doc__ = (
        "Audit, then split the training rows into clean.parquet and removed.parquet (in = clean + removed + quarantined)."
    )
    app.command("decontaminate")(decontaminate)
