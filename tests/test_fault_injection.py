"""Fault injection (issue 19): SIGKILL dedup, decontaminate, mix, synth and train at random moments,
into a folder that holds an earlier complete run with other settings, then run again.

After the kill the folder must hold the earlier run or the new one whole (or, for training, no
``final/``: incomplete), never a mix; the rerun must equal an uninterrupted run; nothing may be left
behind (staging folders, temporary files, locks)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import read_rows, thresher
from tests.test_mixing import inputs, write_spec  # noqa: F401 - the module's fixture, reused
from tests.test_synth import _spec as synth_spec

SEEDS = (0, 1)
VOLATILE = {"seconds", "tokens_per_s", "finished", "cached", "reused", "generated", "generation", "cache", "resumed_from"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def snapshot(folder: Path) -> dict[str, Any] | None:
    """What a complete output folder holds, minus timings: rows of data files, JSON documents; None if absent."""
    if not folder.exists():
        return None
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_dir() or name.startswith(("cache", ".thresher")) or path.suffix == ".html" or name.endswith(".sqlite"):
            continue
        if path.suffix == ".parquet" or name.endswith((".jsonl", ".jsonl.gz")) and "metrics" not in name:
            found[name] = read_rows(path)
        elif path.suffix == ".json":
            found[name] = _strip(json.loads(path.read_text()))
        elif path.suffix == ".safetensors":
            found[name] = path.read_bytes()
    return found


def leftovers(out: Path) -> list[str]:
    return sorted(
        p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") or p.name.endswith(".tmp") or ".partial" in p.name
    )


def run(args: list[str]) -> float:
    started = time.monotonic()
    done = thresher(*args)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return time.monotonic() - started


def kill_and_rerun(command: Callable[[str], list[str]], out: Path, view: Callable[[Path], Any]) -> None:
    """``command(setting)`` is the argument list for the old ("a") or new ("b") settings."""
    run(command("a") + (["--overwrite"] if "--out" in command("a") else []))
    old = view(out)
    seconds = run(command("b"))
    new = view(out)
    assert old != new, "the two settings must give different outputs, or the test proves nothing"
    for seed in SEEDS:
        run(command("a"))  # back to the old output
        assert view(out) == old
        delay = random.Random(seed).uniform(0.1, 0.9) * seconds
        proc = subprocess.Popen([sys.executable, "-m", "thresher.cli", *command("b")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = view(out)
        assert after in (old, new, None), f"seed {seed}: killed after {delay:.2f} s, the folder holds a mixed state"
        run(command("b"))
        assert view(out) == new, f"seed {seed}: the rerun differs from the uninterrupted run"
        assert leftovers(out) == [], leftovers(out)


@pytest.mark.slow
def test_killed_dedup_and_decontaminate(shared_data: Path, tmp_path: Path) -> None:
    lima = str(shared_data / "sft/lima.json")
    out = tmp_path / "dedup"
    threshold = {"a": "0.5", "b": "0.8"}
    kill_and_rerun(
        lambda s: ["dedup", lima, "--out", str(out), "--threshold", threshold[s], "--on-error", "quarantine", "--overwrite"], out, snapshot
    )
    out = tmp_path / "decontaminate"
    gsm8k = f"gsm8k={shared_data / 'gsm8k/test.jsonl'}"
    train = str(shared_data / "sft/code_alpaca_2k.json")
    ngram = {"a": "6", "b": "8"}
    kill_and_rerun(
        lambda s: [
            "decontaminate",
            "-t",
            train,
            "-b",
            gsm8k,
            "-b",
            f"mbpp={shared_data / 'mbpp/mbpp.jsonl'}",
            "--ngram",
            ngram[s],
            "--out",
            str(out),
            "--on-error",
            "quarantine",
            "--overwrite",
        ],
        out,
        snapshot,
    )


@pytest.mark.slow
def test_killed_mix(inputs: Path, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    specs = {"a": write_spec(inputs, "a.yaml", seed=1), "b": write_spec(inputs, "b.yaml", seed=2)}
    out = tmp_path / "mix"
    # a changed spec is another input: --overwrite lets each setting replace the other
    kill_and_rerun(lambda s: ["mix", str(specs[s]), "--out", str(out), "-q", "--overwrite"], out, snapshot)


@pytest.mark.slow
def test_killed_synth(tiny_chat_model: Path, tiny_reward_model: Path, shared_data: Path, tmp_path: Path) -> None:
    specs = {}
    for setting, tokens in (("a", 8), ("b", 12)):
        folder = tmp_path / setting
        folder.mkdir()
        specs[setting] = synth_spec(folder, shared_data, tiny_chat_model, tiny_reward_model, n=2, max_tokens=tokens)
    out = tmp_path / "synth"
    kill_and_rerun(lambda s: ["synth", str(specs[s]), "--out", str(out), "-q", "--overwrite"], out, snapshot)


@pytest.mark.slow
def test_killed_training(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "sft.yaml"
    config.write_text(f"""\
model: {tiny_chat_model}
data: {{train: {shared_data}/sft/lima.json}}
max_length: 128
optim: {{warmup_ratio: 0.0, schedule: constant}}
max_steps: 8
save_every: 3
seed: 1
output_dir: {out}
""")
    lr = {"a": "optim.lr=1e-3", "b": "optim.lr=3e-3"}

    def final(folder: Path) -> Any:  # training's output is final/: present only once a run finished
        return snapshot(folder / "final")

    # the two settings take turns in one folder: each replaces the other's run, which needs --overwrite
    kill_and_rerun(lambda s: ["train", "sft", str(config), lr[s], "-q", "--overwrite"], out, final)
