"""Trust: no flag or input costs a row, outputs are all-or-nothing, a user's mistake is one line (issue 19).

Each test is the hostile pass's finding turned into a regression test, through the real command line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import read_rows, thresher
from thresher.io.outputs import locked


@pytest.fixture(scope="module")
def canonical(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LIMA (1,030 real conversations) as canonical Parquet."""
    folder = tmp_path_factory.mktemp("canonical")
    done = thresher("convert", str(shared_data / "sft/lima.json"), "--out", str(folder / "lima.parquet"))
    assert done.returncode == 0, done.stderr
    return folder / "lima.parquet"


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr  # one error line (library progress bars may stand before it)
    return done.stderr


# ---- 4: an output path equal to an input is refused before anything is read
def test_outputs_equal_to_an_input_are_refused_and_the_input_survives(shared_data: Path, tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    rows = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}) for i in range(10_001)]
    rows[5000] = "{broken"
    source.write_text("\n".join(rows) + "\n")
    before = source.read_bytes()
    for flag in ("--quarantine", "--summary", "--out"):
        args = ["convert", str(source), "--out", str(tmp_path / "q.parquet"), "--on-error", "quarantine", flag, str(source)]
        done = thresher(*args)
        assert done.returncode == 2 and "would overwrite the input" in _error_line(done), (flag, done.stderr)
        assert source.read_bytes() == before
    done = thresher("convert", str(source), "--out", str(tmp_path / "q.parquet"), "--on-error", "quarantine")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "q.summary.json").read_text())
    assert (summary["total"]["in"], summary["total"]["out"], summary["total"]["quarantined"]) == (10_001, 10_000, 1)
    assert len(read_rows(tmp_path / "q.parquet")) == 10_000


# ---- 5: folders from another command or input, concurrent runs, stale files
def test_output_folders_are_refused_when_they_hold_something_else(canonical: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert thresher("dedup", str(canonical), "--out", str(out)).returncode == 0
    marker = json.loads((out / ".thresher.json").read_text())
    assert marker["command"] == "dedup"
    other = tmp_path / "other.parquet"
    other.write_bytes(canonical.read_bytes())
    done = thresher("dedup", str(other), "--out", str(out))
    assert done.returncode == 2 and "holds the output of `dedup`" in _error_line(done)
    done = thresher("audit", "-t", str(canonical), "-b", "gsm8k", "--out", str(out))
    assert done.returncode == 2 and "use --overwrite" in _error_line(done)
    assert thresher("dedup", str(canonical), "--out", str(out)).returncode == 0  # the same run again is fine
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    done = thresher("dedup", str(canonical), "--out", str(foreign))
    assert done.returncode == 2 and "not the output of a complete thresher run" in _error_line(done)
    assert (foreign / "notes.txt").read_text() == "mine"
    done = thresher("dedup", str(other), "--out", str(out), "--overwrite")
    assert done.returncode == 0 and json.loads((out / ".thresher.json").read_text())["inputs"] == [str(other)]


def test_a_second_concurrent_run_is_refused(canonical: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with locked(out):
        done = thresher("dedup", str(canonical), "--out", str(out))
    assert done.returncode == 2 and f"another thresher run (pid {os.getpid()})" in _error_line(done)
    assert not out.exists()
    assert thresher("dedup", str(canonical), "--out", str(out)).returncode == 0  # the lock went with its holder


def test_no_stale_quarantine_survives_a_run_that_quarantines_nothing(canonical: Path, tmp_path: Path) -> None:
    dirty = tmp_path / "dirty.jsonl"
    rows = [json.dumps(r) for r in read_rows(canonical)[:50]] + ["{broken"]
    dirty.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert thresher("dedup", str(dirty), "--out", str(out), "--on-error", "quarantine").returncode == 0
    assert (out / "quarantine.jsonl").exists()
    dirty.write_text("\n".join(rows[:-1]) + "\n")  # fixed in place: same input path
    assert thresher("dedup", str(dirty), "--out", str(out), "--on-error", "quarantine").returncode == 0
    assert not (out / "quarantine.jsonl").exists()
    assert json.loads((out / "summary.json").read_text())["quarantined"] == 0
    # convert: a stale quarantine file beside a clean run is removed too
    target = tmp_path / "c.parquet"
    (tmp_path / "c.quarantine.jsonl").write_text("stale\n")
    assert thresher("convert", str(dirty), "--out", str(target), "--on-error", "quarantine").returncode == 0
    assert not (tmp_path / "c.quarantine.jsonl").exists()
    assert not list(tmp_path.glob(".*tmp")) and not list(tmp_path.glob(".*partial*"))


# ---- 7: canonical Parquet is validated like any other input
def test_canonical_parquet_is_held_to_the_converters_rules(canonical: Path, shared_data: Path, tmp_path: Path) -> None:
    table = pq.read_table(canonical)
    rows = table.to_pylist()[:200]
    rows[3]["messages"][0]["role"] = "narrator"
    rows[7]["messages"][1]["content"] = "   "
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), bad)
    gsm8k = f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"
    for command in (["dedup", str(bad)], ["decontaminate", "-t", str(bad), "-b", gsm8k]):
        done = thresher(*command, "--out", str(tmp_path / command[0]))
        assert done.returncode == 1 and "row 3" in _error_line(done) and "narrator" in done.stderr
        done = thresher(*command, "--out", str(tmp_path / command[0]), "--on-error", "quarantine")
        assert done.returncode == 0, done.stderr
        quarantined = [json.loads(line) for line in (tmp_path / command[0] / "quarantine.jsonl").read_text().splitlines()]
        assert [(q["row"], q["category"]) for q in quarantined] == [(3, "unknown_role"), (7, "empty_content")]
        kept = read_rows(tmp_path / command[0] / ("kept.parquet" if command[0] == "dedup" else "clean.parquet"))
        assert all(m["role"] != "narrator" for r in kept for m in r["messages"])
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(table.slice(0, 20).set_column(2, "messages", pa.array(["text"] * 20)), wrong)
    done = thresher("dedup", str(wrong), "--out", str(tmp_path / "w"))
    assert done.returncode == 2 and "canonical sft types" in _error_line(done)


# ---- 8: silent losses
def test_bom_csv_duplicate_headers_and_repeated_ids(canonical: Path, tmp_path: Path) -> None:
    bom = tmp_path / "bom.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "yo"}]}) for i in range(3)]
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    done = thresher("convert", str(bom), "--out", str(tmp_path / "bom.parquet"))
    assert done.returncode == 0, done.stderr
    assert len(read_rows(tmp_path / "bom.parquet")) == 3
    csv = tmp_path / "dup.csv"
    csv.write_text("instruction,output,output\nsay hi,hi,hello\n")
    done = thresher("convert", str(csv), "--out", str(tmp_path / "dup.parquet"))
    assert done.returncode == 2 and "'output' more than once" in _error_line(done)
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(canonical.read_bytes())
    done = thresher("dedup", str(canonical), str(copy), "--out", str(tmp_path / "ids"), "--method", "exact")
    assert done.returncode == 0 and "ids are used by more than one row" in done.stderr
    removed = read_rows(tmp_path / "ids/removed.parquet")
    assert removed and all(r["duplicate_of_input"] == str(canonical) for r in removed)
    assert [r["duplicate_of_row"] for r in removed[:3]] == [0, 1, 2]
    assert json.loads((tmp_path / "ids/summary.json").read_text())["repeated_ids"]["count"] > 1000


# ---- 9: one line, exit 2, for every user mistake
def test_user_mistakes_get_one_line_errors(canonical: Path, shared_data: Path, tmp_path: Path) -> None:
    data = b"".join(
        json.dumps(
            {"messages": [{"role": "user", "content": f"question {i} " * 20}, {"role": "assistant", "content": "answer " * 20}]}
        ).encode()
        + b"\n"
        for i in range(3000)
    )
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress(data)[:4000])
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    out = str(tmp_path / "o")
    cases = {
        "truncated": (["dedup", str(truncated), "--out", out], "truncated or corrupt"),
        "fake parquet": (["dedup", str(fake), "--out", out], "not a readable Parquet file"),
        "num-perm 0": (["dedup", str(canonical), "--out", out, "--num-perm", "0"], "--num-perm must be at least 1"),
        "ngram 0": (["dedup", str(canonical), "--out", out, "--ngram", "0"], "--ngram must be at least 1"),
        "bands 0x0": (["dedup", str(canonical), "--out", out, "--bands", "0x0"], "at least 1 band"),
        "bands 200x200": (["dedup", str(canonical), "--out", out, "--bands", "200x200"], "but --num-perm is 128"),
        "decontam ngram 0": (
            ["decontaminate", "-t", str(canonical), "-b", f"gsm8k={shared_data / 'gsm8k/test.jsonl'}", "--out", out, "--ngram", "0"],
            "n must be at least 1",
        ),
        "hub dataset offline": (["dedup", "hf:nobody/nothing", "--out", out], "offline"),
        "hub model offline": (["dedup", str(canonical), "--out", out, "--method", "embedding", "--model", "nobody/no-model"], "offline"),
    }
    for name, (args, expected) in cases.items():
        started = time.monotonic()
        done = thresher(*args)
        assert done.returncode == 2 and expected in _error_line(done), (name, done.returncode, done.stderr[-2000:])
        if "offline" in name:
            assert time.monotonic() - started < 15, name  # the process start dominates; no minute-long retry loop
    assert not Path(out).exists()
    summary = tmp_path / "missing/folder/s.json"
    done = thresher("convert", str(canonical), "--out", str(tmp_path / "x.parquet"), "--summary", str(summary))
    assert done.returncode == 0 and summary.exists(), done.stderr


def test_offline_hub_check_is_fast() -> None:
    code = (
        "import time; from thresher.hub import require_hub; from thresher.errors import InputError\n"
        "t = time.monotonic()\ntry:\n    require_hub('nobody/nothing', 'model')\nexcept InputError as e:\n"
        "    print(round(time.monotonic() - t, 2), e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    seconds, message = done.stdout.split(" ", 1)
    assert float(seconds) < 5 and "HF_HUB_OFFLINE is set" in message and "local path" in message


# ---- 6: non-finite numbers never reach the weights
@pytest.mark.slow
def test_non_finite_settings_and_steps_stop_training(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    config = tmp_path / "sft.yaml"
    config.write_text(f"""\
model: {tiny_chat_model}
data: {{train: {shared_data}/sft/lima.json}}
max_length: 128
optim: {{lr: 0.001, warmup_ratio: 0.0, schedule: constant}}
max_steps: 6
seed: 1
output_dir: {tmp_path / "run"}
""")
    for override, expected in (("optim.lr=.inf", "optim.lr"), ("optim.lr=nan", "optim.lr"), ("optim.betas=[0.9,1.5]", "betas")):
        done = thresher("train", "sft", str(config), override, "-q")
        assert done.returncode == 2 and expected in _error_line(done), (override, done.stderr[-2000:])
    done = thresher("train", "sft", str(config), "optim.lr=1e12", "-q")
    assert done.returncode == 3 and "is not finite" in _error_line(done), done.stderr[-2000:]
    step = int(done.stderr.split("error: step ")[1].split(":")[0])
    assert step >= 1 and not (tmp_path / "run/final").exists()  # no NaN weights were saved
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in records if "loss" in r)  # every logged loss is a number
    # Negative control: skipping isolated spikes lets the same run finish, each skipped step flagged.
    done = thresher("train", "sft", str(config), "optim.lr=1e12", "optim.skip_nonfinite_steps=100", "overwrite=true", "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert any(r.get("skipped") for r in records)


def test_a_second_training_run_into_the_same_folder_is_refused(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: {tiny_chat_model}\ndata: {{train: {shared_data}/sft/lima.json}}\nmax_length: 64\nmax_steps: 1\noutput_dir: {out}\n"
    )
    with locked(out):
        done = thresher("train", "sft", str(config), "-q")
    assert done.returncode == 2 and "another thresher run" in _error_line(done)
    assert thresher("train", "sft", str(config), "-q").returncode == 0 and (out / "final").is_dir()


def test_inspect_json_never_overwrites_its_input(canonical: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rows.parquet"
    copy.write_bytes(canonical.read_bytes())
    done = thresher("inspect", str(copy), "--json", str(copy), "--samples", "0")
    assert done.returncode == 2 and "would overwrite the input" in _error_line(done)
    assert copy.read_bytes() == canonical.read_bytes()
    done = thresher("inspect", str(copy), "--json", str(tmp_path / "new/stats.json"), "--samples", "0")
    assert done.returncode == 0 and json.loads((tmp_path / "new/stats.json").read_text())[str(copy)]["kind"] == "sft"


@pytest.mark.slow
def test_a_second_embedding_audit_embeds_only_new_rows(shared_data: Path, tmp_path: Path) -> None:
    """Issue 21, part 5: a default embedding cache (here $THRESHER_CACHE_DIR, set per session by conftest)."""
    cache = Path(os.environ["THRESHER_CACHE_DIR"]) / "embeddings"
    rows = [{"instruction": f"Question {i}: what is {i} plus {i + 1}?", "output": str(2 * i + 1)} for i in range(30)]
    train = tmp_path / "train.json"
    train.write_text(json.dumps(rows))
    items = tmp_path / "gsm8k_slice.jsonl"
    items.write_text("".join((shared_data / "gsm8k/test.jsonl").read_text().splitlines(keepends=True)[:60]))
    bench = f"gsm8k={items}"

    def audit(out: str, *extra: str) -> dict:
        done = thresher("audit", "-t", str(train), "-b", bench, "--methods", "embedding", "--out", str(tmp_path / out), *extra)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((tmp_path / out / "summary.json").read_text())

    def shards() -> list[Path]:
        return sorted(cache.rglob("shard-*.parquet"))

    before = len(shards())
    first = audit("a")
    assert first["notes"]["embedding_cache"]["path"] == str(cache) and first["notes"]["embedding_cache"]["megabytes"] > 0
    after_first = shards()
    assert len(after_first) > before
    audit("b")
    assert shards() == after_first  # everything was in the cache: nothing embedded again
    train.write_text(json.dumps(rows + [{"instruction": "A brand new question about owls?", "output": "hoot"}]))
    audit("c")
    new = [s for s in shards() if s not in after_first]
    assert len(new) == 1 and pq.read_metadata(new[0]).num_rows <= 2  # only the new row (its two turns) was embedded
    audit("d", "--no-cache")
    assert len(shards()) == len(after_first) + 1  # --no-cache reads and writes nothing


# ---- trust II: --overwrite replaces only what Thresher wrote; paths are compared and locked resolved
def test_overwrite_never_replaces_a_folder_thresher_did_not_write(canonical: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/id_rsa").write_text("KEY")
    (home / "thesis.tex").write_text("three years")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "main.py").write_text("print(1)")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cases = {home: "your home folder", repo: "a git work tree", mine: "Thresher did not write"}
    for out, why in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "thresher.cli", "dedup", str(canonical), "--out", str(out), "--overwrite"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HOME": str(home)},
            cwd=tmp_path,
        )
        line = _error_line(done)
        assert done.returncode == 2 and why in line and "use --overwrite" not in line, (out, line)
    assert (home / ".ssh/id_rsa").read_text() == "KEY" and (home / "thesis.tex").read_text() == "three years"
    assert (repo / "main.py").exists() and (mine / "notes.txt").read_text() == "mine"
    done = thresher("dedup", str(canonical), "--out", str(tmp_path), "--overwrite", cwd=tmp_path)  # the current folder
    assert done.returncode == 2 and "the current folder" in _error_line(done)


def test_symlinks_cannot_smuggle_an_input_into_the_output_or_split_the_lock(canonical: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    source = data / "lima.parquet"
    source.write_bytes(canonical.read_bytes())
    before = source.read_bytes()
    (tmp_path / "link").symlink_to(data)
    # the input reached through a symlink that points into --out
    done = thresher("dedup", str(tmp_path / "link/lima.parquet"), "--out", str(data), "--overwrite")
    assert done.returncode == 2 and "would overwrite the input" in _error_line(done)
    # --out a symlink to the input's folder
    done = thresher("dedup", str(source), "--out", str(tmp_path / "link"), "--overwrite")
    assert done.returncode == 2 and "would overwrite the input" in _error_line(done)
    assert source.read_bytes() == before and (tmp_path / "link").is_symlink()
    assert not list(tmp_path.glob(".*partial*"))
    # one folder, two spellings: one lock
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "out-link").symlink_to(out)
    with locked(out):
        done = thresher("dedup", str(source), "--out", str(tmp_path / "out-link"))
    assert done.returncode == 2 and "another thresher run" in _error_line(done)
    # a symlinked --out is followed: the folder it names gets the output, the link stays a link
    assert thresher("dedup", str(source), "--out", str(tmp_path / "out-link")).returncode == 0
    assert (out / ".thresher.json").is_file() and (tmp_path / "out-link").is_symlink()


# ---- trust II: training never writes over what is not its own, and never trains on nothing
@pytest.mark.slow
def test_training_output_folders_and_settings(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from thresher.errors import InputError
    from thresher.train.config import load_config
    from thresher.train.sft import run_sft

    out = tmp_path / "run"
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: {tiny_chat_model}\ndata: {{train: {shared_data}/sft/lima.json}}\nmax_length: 64\nmax_steps: 3\noutput_dir: {out}\n"
    )

    def sft(*overrides: str) -> None:
        run_sft(load_config(config, list(overrides)))

    done = thresher("train", "sft", str(config), "epochs=1e-12", "max_steps=null", "-q")  # once through the command line
    assert done.returncode == 2 and "less than one optimizer step" in _error_line(done), done.stderr[-2000:]
    for override in (f"output_dir={tiny_chat_model}", f"output_dir={tiny_chat_model.parent}"):
        with pytest.raises(InputError, match="is or holds the model being trained"):
            sft(override)
    assert (tiny_chat_model / "config.json").is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):
        sft(f"output_dir={foreign}", "overwrite=true")
    assert (foreign / "notes.txt").read_text() == "mine"
    # an earlier run's folder: the same settings run again; others need overwrite=true; save_total_limit keeps the newest
    sft("save_every=1", "save_total_limit=1")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    sft("save_every=1", "save_total_limit=1")
    with pytest.raises(InputError, match="overwrite=true"):
        sft("max_steps=2")
    sft("max_steps=2", "overwrite=true")
    assert not list(out.glob("checkpoint-*"))  # the earlier run's checkpoints went with it
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["total_steps"] == 2


# ---- trust II: what the disk or the system refuses is one line, and names are printed escaped
def test_a_file_size_limit_and_a_full_disk_are_one_line(canonical: Path, tmp_path: Path) -> None:
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = tmp_path / "out.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "convert", str(canonical), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    assert done.returncode == 3 and "file too large" in _error_line(done), done.stderr[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".out.parquet.*"))  # nothing partial left
    import errno

    import typer
    from typer.testing import CliRunner

    from thresher.cli_common import Handled

    app = typer.Typer(cls=Handled)

    @app.command()
    def write(name: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", name)

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["write", "/data/out.parquet"])
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "/data/out.parquet: no space left on the device" in result.output


def test_control_characters_in_names_are_printed_escaped(tmp_path: Path) -> None:
    name = tmp_path / "evil\x1b]0;pwned\x07\x1b[2J.jsonl"
    name.write_text('{"broken\n')
    done = thresher("convert", str(name), "--out", str(tmp_path / "x.parquet"))
    assert done.returncode in (1, 2) and "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "\\x1b]0;pwned\\x07" in _error_line(done)


def test_an_oversized_row_is_a_bad_row_named_with_its_size(tmp_path: Path) -> None:
    """A line over THRESHER_MAX_ROW_BYTES (64 MB by default; a 1 GB line once ended in a MemoryError traceback) is never
    parsed: fail mode names the file, line and size; quarantine mode sets it aside and keeps the rest."""
    source = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    big = {"messages": [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "a"}]}
    source.write_text("\n".join(json.dumps(r) for r in (row, big, row)) + "\n")
    env = {**os.environ, "THRESHER_MAX_ROW_BYTES": "1000"}
    command = [sys.executable, "-m", "thresher.cli", "convert", str(source), "--out", str(tmp_path / "out.parquet")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and f"{source}:2: the line is 5,0" in _error_line(done)
    done = subprocess.run([*command, "--on-error", "quarantine"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and len(read_rows(tmp_path / "out.parquet")) == 2
    assert json.loads((tmp_path / "out.quarantine.jsonl").read_text())["category"] == "row_too_large"
