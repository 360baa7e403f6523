"""A new stage kind is one class in one place: this file adds a toy kind (``shout``: upper-cases text files) and
runs it in a pipeline — planned, validated, referenced by a later stage, cached, reported — without touching the
pipeline package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from thresher.accounting import Account
from thresher.errors import SpecError
from thresher.pipeline.registry import KINDS, OptionError, ReadyStage, StageKind, register, unknown_key


class Shout(StageKind):
    name = "shout"
    needs = ("inputs",)
    outputs: ClassVar[dict[str, str]] = {"text": "shout.txt", "count": "count.txt"}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        for key in options:
            if key != "suffix":
                raise OptionError(unknown_key(key, {"suffix"}, "shout options"), (key,))

    @classmethod
    def run(cls, stage: ReadyStage) -> dict[str, Any]:
        texts = [Path(p).read_text(encoding="utf-8") for p in stage.inputs]
        shouted = "".join(t.upper() for t in texts) + stage.options.get("suffix", "")
        (stage.folder / "shout.txt").write_text(shouted, encoding="utf-8")
        (stage.folder / "count.txt").write_text(str(len(shouted)), encoding="utf-8")
        return {"account": Account.of("shout", len(texts), len(texts)).as_dict(), "chars": len(shouted)}


@pytest.fixture
def shout() -> Iterator[type[StageKind]]:
    register(Shout)
    yield Shout
    KINDS.pop("shout")


def _pipeline(tmp_path: Path, options: str = "{suffix: '!'}") -> Path:
    (tmp_path / "hello.txt").write_text("hello ", encoding="utf-8")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""output_dir: out
stages:
  - name: first
    run: shout
    inputs: [hello.txt]
    options: {options}
  - name: second
    run: shout
    inputs: ["{{{{first}}}}", "{{{{first.count}}}}"]
""",
        encoding="utf-8",
    )
    return path


def test_a_toy_kind_runs_in_a_pipeline_is_cached_and_reported(shout: type[StageKind], tmp_path: Path) -> None:
    from thresher.pipeline.run import run_pipeline

    path = _pipeline(tmp_path)
    planned = run_pipeline(path, dry_run=True)
    assert [s.state for s in planned.stages] == ["to run", "to run"]
    done = run_pipeline(path)
    second = done.stages[1]
    assert (second.folder / "shout.txt").read_text() == "HELLO !7"
    assert second.summary["chars"] == 8 and shout.describe(second.summary) == "in 2 = out 2 + removed 0 + quarantined 0"
    report = done.report.read_text()
    assert "<h2>second (shout)" in report and "chars" in report
    again = run_pipeline(path)
    assert [s.state for s in again.stages] == ["cached", "cached"]
    (tmp_path / "hello.txt").write_text("bye ", encoding="utf-8")  # a changed input runs both again
    assert [s.state for s in run_pipeline(path, dry_run=True).stages] == ["to run", "to run"]


def test_a_toy_kinds_own_checks_run_when_the_pipeline_is_planned(shout: type[StageKind], tmp_path: Path) -> None:
    from thresher.pipeline.run import run_pipeline

    with pytest.raises(SpecError) as e:
        run_pipeline(_pipeline(tmp_path, "{sufix: '!'}"), dry_run=True)
    assert "pipeline.yaml:6: stages[0].options.sufix: shout options: unknown option 'sufix'; did you mean 'suffix'?" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_an_unknown_kind_or_output_fails_the_plan_with_the_closest_name(shout: type[StageKind], tmp_path: Path) -> None:
    from thresher.pipeline.run import run_pipeline

    path = _pipeline(tmp_path)
    path.write_text(path.read_text().replace("run: shout\n    inputs: [hello", "run: shuot\n    inputs: [hello"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"pipeline.yaml:4: stages\[0\].run: unknown stage kind 'shuot'; did you mean 'shout'"):
        run_pipeline(path, dry_run=True)
    path = _pipeline(tmp_path)
    path.write_text(path.read_text().replace("first.count", "first.cnt"), encoding="utf-8")
    with pytest.raises(SpecError, match="a shout stage has no output 'cnt'; it has text, count, folder"):
        run_pipeline(path, dry_run=True)


def test_a_stage_whose_account_does_not_balance_stops_the_pipeline(tmp_path: Path) -> None:
    from thresher.errors import AccountingError
    from thresher.pipeline.run import DONE, run_pipeline

    class Leaky(Shout):
        @classmethod
        def run(cls, stage: ReadyStage) -> dict[str, Any]:
            return {**super().run(stage), "account": Account.of("shout", 3, 1, {"too loud": 1}).as_dict()}  # one row lost

    register(Leaky)
    try:
        with pytest.raises(AccountingError, match="stage first: row accounting does not balance"):
            run_pipeline(_pipeline(tmp_path))
        assert not list((tmp_path / "out" / "stages").glob(f"first-*/{DONE}"))  # not marked finished: it runs again
    finally:
        KINDS.pop("shout")


def test_one_account_type_balances_reads_back_and_refuses_a_lost_row() -> None:
    from thresher.errors import AccountingError

    account = Account.of("step", 10, 6, {"too long": 3}, {"malformed_json": 1})
    assert account.check() is account and Account.from_dict(account.as_dict()) == account
    assert account.line() == "in 10 = out 6 + removed 3 + quarantined 1 (malformed_json 1, too long 3)"
    assert Account.summed("all", [account, account]).as_dict()["in"] == 20
    with pytest.raises(AccountingError, match="lost: row accounting does not balance"):
        Account.of("lost", 10, 6, {"too long": 3}).check()
