"""The conventions users expect from a command line: ``-h``/``--version``, help readable at 80 columns with
option names whole, every config key reachable from ``--help-config``, one override syntax (``key=value`` and
``--key value``) for every spec-taking command, one rule for relative paths, and "did you mean" with the
right form for common mistakes. Each rule has a negative control beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thresher.cli import app
from thresher.config import overrides_from
from thresher.docs import config_help, empty_meanings
from thresher.errors import SpecError

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    return result.exit_code, result.output


def test_help_at_80_columns_shows_whole_option_names_and_plain_metavars() -> None:
    code, out = _run("audit", "-h")
    assert code == 0
    for name in ("--ngram-threshold X", "--minhash-threshold X", "--question-weight X", "--out PATH"):
        assert name in out
    assert "<bool>" not in out and "<list[str]>" not in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out = _run("--version")
    assert code == 0 and out.startswith("thresher ")


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("train", "sft"), "optim.lr"),
        (("mix",), "sources[].amount.count"),
        (("synth",), "generator.sampling.n"),
        (("run",), "stages[].set"),
    ],
)
def test_every_config_key_is_reachable_from_help_config(command: tuple[str, ...], key: str) -> None:
    code, out = _run(*command, "--help-config")
    assert code == 0, out
    assert any(line.startswith(f"{key}  (") for line in out.splitlines()), out[:400]


def test_every_reference_field_has_a_meaning() -> None:
    assert empty_meanings() == []
    # negative control: a model with an undocumented field is found
    from pydantic import BaseModel

    class Undocumented(BaseModel):
        mystery: int = 0

    assert "mystery  (int; 0)" in config_help(Undocumented).splitlines()


def test_one_override_syntax() -> None:
    assert overrides_from(["max_steps=3", "--optim.lr", "1e-5", "--max-new-tokens=8"]) == [
        "max_steps=3",
        "optim.lr=1e-5",
        "max_new_tokens=8",
    ]
    with pytest.raises(SpecError, match="give a value"):
        overrides_from(["--max_steps"])
    with pytest.raises(SpecError, match="write KEY=VALUE"):
        overrides_from(["max_steps"])


def _spec(tmp_path: Path) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text(
        "".join(f'{{"messages": [{{"role": "user", "content": "q{i}"}}, {{"role": "assistant", "content": "a{i}"}}]}}\n' for i in range(20))
    )
    spec = tmp_path / "specs" / "mix.yaml"
    spec.parent.mkdir()
    spec.write_text("kind: sft\nsources:\n  - name: rows\n    path: ../rows.jsonl\n    amount: {count: 5}\n")
    return spec


def test_mix_takes_overrides_both_ways_and_paths_start_at_the_spec(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    for i, override in enumerate((["sources.0.amount.count=7"], ["--sources.0.amount.count", "7"])):
        code, out = _run("mix", str(spec), *override, "--out", str(tmp_path / f"out{i}"), "-q")
        assert code == 0, out
        assert "7 rows" in out
    code, out = _run("mix", str(spec), "--out", str(tmp_path / "out2"), "-q")
    assert code == 0 and "5 rows" in out  # negative control: without the override, the spec's count


def test_common_spec_mistakes_are_said_with_the_right_form(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    code, out = _run("mix", str(spec), "sources.0.amount=2000", "--out", str(tmp_path / "o"))
    assert code == 2 and "e.g. `amount: {count: 2000}`" in out and "Traceback" not in out
    code, out = _run("mix", str(spec), "--totl", "30", "--out", str(tmp_path / "o"))
    assert code == 2 and "did you mean 'total'?" in out
    code, out = _run("mix", str(spec), "--overwrit", "--out", str(tmp_path / "o"))  # the command's option, mistyped
    assert code == 2 and "did you mean --overwrite?" in out
    code, out = _run("mix", str(spec), "kind=sfft", "--out", str(tmp_path / "o"))
    assert code == 2 and "did you mean 'sft'?" in out
    code, out = _run("audit", "-t", str(spec), "-b", "gsm9k", "-o", str(tmp_path / "a"))
    assert code == 2 and "did you mean 'gsm8k'?" in out


def test_training_config_paths_start_at_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thresher.train.config import load_config

    folder = tmp_path / "configs"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("{}\n")
    config = folder / "sft.yaml"
    config.write_text("model: org/hub-model\ndata: {train: data/train.jsonl}\noutput_dir: out\n")
    monkeypatch.chdir(tmp_path)
    loaded = load_config(config, ["data.eval=elsewhere.jsonl"])
    assert loaded.data.train == str(folder / "data/train.jsonl")
    assert loaded.output_dir == str(folder / "out")
    assert loaded.model == "org/hub-model"  # not a path there: a hub id stays
    assert loaded.data.eval == "elsewhere.jsonl"  # written on the command line: from the working directory


def test_logs_outside_a_terminal_are_whole_timestamped_lines(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    spec = _spec(tmp_path)
    deep = tmp_path / ("a-long-folder-name-" * 6) / "mixture"
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [sys.executable, "-m", "thresher.cli", "--log-file", str(log), "mix", str(spec), "--out", str(deep)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert str(deep) in result.stdout  # a path longer than 80 columns is not broken across lines
    steps = result.stderr.splitlines()
    assert steps and all(re.match(r"^\[\d\d:\d\d:\d\d\] ", line) for line in steps), result.stderr
    logged = log.read_text().splitlines()
    assert len(logged) >= len(steps) and all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in logged)
    quiet = subprocess.run([*command[:3], "-q", *command[3:], "--overwrite"], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""  # -q: results only
    assert len(log.read_text().splitlines()) > len(logged)  # the log file still gets every line


def test_plain_progress_prints_periodic_lines_and_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    from thresher.progress import PlainProgress

    with PlainProgress(every=3600, quiet=False) as bar:
        task = bar.add_task("training", total=100, rate="")
        for step in range(1, 101):
            bar.update(task, completed=step, rate=f"loss {1 / step:.3f}")
    lines = capsys.readouterr().err.splitlines()
    # the first update and the last: not one line per step (negative control: every=0 prints all 100)
    assert [line.split("] ", 1)[1] for line in lines] == ["training 1/100 loss 1.000", "training 100/100 loss 0.010"]
    with PlainProgress(every=0, quiet=False) as bar:
        task = bar.add_task("training", total=100, rate="")
        for step in range(1, 101):
            bar.update(task, completed=step)
    assert len(capsys.readouterr().err.splitlines()) == 100


def test_gc_removes_only_superseded_stage_folders_of_ours(tmp_path: Path) -> None:
    data = _spec(tmp_path).parent.parent / "rows.jsonl"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"output_dir: pipe\nstages:\n  - {{name: dedup, run: dedup, inputs: [{data}], options: {{method: exact}}}}\n")
    assert _run("run", str(pipeline), "-q")[0] == 0
    first = sorted((tmp_path / "pipe/stages").iterdir())
    pipeline.write_text(pipeline.read_text().replace("method: exact", "method: minhash"))  # a new key, a new folder
    assert _run("run", str(pipeline), "-q")[0] == 0
    stranger = tmp_path / "pipe/stages/notes-0123456789ab"  # looks like a stage folder, but Thresher did not make it
    stranger.mkdir()
    (stranger / "mine.txt").write_text("keep me")
    linked = tmp_path / "pipe/stages/link-0123456789ab"
    linked.symlink_to(first[0])
    code, out = _run("gc", str(tmp_path / "pipe"), "--dry-run")
    assert code == 0 and f"would remove {first[0]}" in out and first[0].is_dir()  # the dry run lists, removes nothing
    code, out = _run("gc", str(tmp_path / "pipe"))
    assert code == 0 and "1 superseded stage folder(s)" in out
    left = sorted(p.name for p in (tmp_path / "pipe/stages").iterdir())
    assert first[0].name not in left and len(left) == 3 and (stranger / "mine.txt").read_text() == "keep me"
    assert _run("run", str(pipeline), "--dry-run")[1].count("cached") == 1  # the current run is untouched
