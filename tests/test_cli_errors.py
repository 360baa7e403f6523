"""Every command, given a user's mistake, answers with one ``error:`` line and an exit code (a bad row 1, a bad
input, spec or option 2), never a traceback. The cases are checked against the command tree, so a new command
without a case here fails this test."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.helpers import thresher
from thresher.cli import app
from thresher.errors import EXIT_BAD_INPUT, EXIT_BAD_ROW, InputError, RowError, SpecError, ThresherError


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def _cases(tmp: Path, data: Path) -> dict[tuple[str, ...], list[tuple[list[str], int]]]:
    missing = str(tmp / "missing.jsonl")
    bad_row = tmp / "bad.jsonl"
    bad_row.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n', encoding="utf-8")
    typo_mix = tmp / "mix.yaml"
    typo_mix.write_text(f"sources:\n  - path: {data / 'sft/lima.json'}\n    skil: chat\ntotal: 10\n", encoding="utf-8")
    typo_train = tmp / "sft.yaml"
    typo_train.write_text("model: m\ndata: {train: t}\noptim: {lrr: 1.0e-5}\noutput_dir: o\n", encoding="utf-8")
    typo_pipeline = tmp / "pipeline.yaml"
    typo_pipeline.write_text(
        f"stages:\n  - name: d\n    run: dedup\n    inputs: [{data / 'sft/lima.json'}]\n    options: {{methodz: exact}}\n", encoding="utf-8"
    )
    names = iter(range(100))

    def out() -> str:  # each case its own output: the cases run two at a time, and a second run waits for no one
        return str(tmp / f"out-{next(names)}")

    def audit() -> list[str]:
        return ["--train", missing, "--bench", "gsm8k", "--out", out()]

    return {
        ("version",): [(["--bogus"], 2)],
        ("formats",): [(["--bogus"], 2)],
        ("convert",): [
            ([missing, "--out", out() + ".parquet"], EXIT_BAD_INPUT),
            ([str(bad_row), "--out", out() + ".parquet"], EXIT_BAD_ROW),
        ],
        ("inspect",): [([missing], EXIT_BAD_INPUT)],
        ("dedup",): [
            ([missing, "--out", out()], EXIT_BAD_INPUT),
            ([str(data / "sft/lima.json"), "--out", out(), "--method", "minhsh"], EXIT_BAD_INPUT),
            ([str(bad_row), "--out", out()], EXIT_BAD_ROW),
        ],
        ("benchmarks",): [(["--bogus"], 2)],
        ("audit",): [
            (audit(), EXIT_BAD_INPUT),
            (["--train", str(bad_row), "--bench", "gsm8k", "--out", out(), "--methods", "ngrm"], EXIT_BAD_INPUT),
        ],
        ("decontaminate",): [(audit(), EXIT_BAD_INPUT)],
        ("mix",): [([missing, "--out", out()], EXIT_BAD_INPUT), ([str(typo_mix), "--out", out()], EXIT_BAD_INPUT)],
        ("synth",): [([missing, "--out", out()], EXIT_BAD_INPUT)],
        ("serve",): [([str(tmp / "no-model")], EXIT_BAD_INPUT)],
        ("run",): [([missing], EXIT_BAD_INPUT), ([str(typo_pipeline), "--dry-run"], EXIT_BAD_INPUT)],
        ("gc",): [([str(tmp)], EXIT_BAD_INPUT)],
        ("eval",): [
            ([str(tmp / "no-model"), "--bench", f"gsm8k={missing}", "--out", out()], EXIT_BAD_INPUT),
            ([str(tmp / "no-model"), "--bench", "gsm9k", "--out", out()], EXIT_BAD_INPUT),
            (["pypi:no-such-package", "--bench", f"gsm8k={data / 'gsm8k/test.jsonl'}", "--limit", "1", "--out", out()], EXIT_BAD_INPUT),
        ],
        ("train", "sft"): [([missing], EXIT_BAD_INPUT), ([str(typo_train)], EXIT_BAD_INPUT)],
        ("train", "dpo"): [([str(typo_train), "optim.lr=-1"], EXIT_BAD_INPUT)],
        ("train", "rlvr"): [([str(typo_train), "max_steps=zero"], EXIT_BAD_INPUT)],
    }


def test_every_command_answers_a_mistake_with_one_error_line_and_its_exit_code(shared_data: Path, tmp_path: Path) -> None:
    cases = _cases(tmp_path, shared_data)
    commands = _commands(typer.main.get_command(app))  # type: ignore[arg-type]
    assert sorted(cases) == sorted(commands), "every command needs a bad-argument case here"
    runs = [(command, args, code) for command, items in cases.items() for args, code in items]
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda run: thresher(*run[0], *run[1]), runs))
    for (command, args, code), result in zip(runs, done, strict=True):
        what = f"thresher {' '.join(command + tuple(args))}"
        assert "Traceback" not in result.stderr, f"{what}:\n{result.stderr[-3000:]}"
        assert result.returncode == code, f"{what}: exit {result.returncode}, not {code}\n{result.stderr[-2000:]}"
        if code != 2 or "Usage:" not in result.stderr:  # click's own usage errors keep click's wording
            assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1, f"{what}:\n{result.stderr}"


@pytest.mark.parametrize(("error", "code"), [(RowError("x", "bad"), 1), (InputError("bad"), 2), (SpecError("bad"), 2)])
def test_every_user_error_is_a_thresher_error_with_its_exit_code(error: ThresherError, code: int) -> None:
    from thresher.mixing.apportion import MixError
    from thresher.pipeline.registry import OptionError
    from thresher.pipeline.run import StageError
    from thresher.train.chat import TemplateError
    from thresher.train.loop import NonFiniteError

    assert isinstance(error, ThresherError) and error.exit_code == code
    for cls in (MixError, OptionError, TemplateError, StageError, NonFiniteError):
        assert issubclass(cls, ThresherError)
    assert NonFiniteError.exit_code == 3 and StageError.exit_code == 1
