"""A training run's output folder: what may be written there, and what an earlier run there becomes.

The rules are the output folders' (``thresher.io.outputs``): Thresher replaces only what it wrote. The folder
must not be, or hold, the model being trained; ``/``, a home folder, the current folder and a git work tree
are refused. A folder that holds anything but a training run's own files is refused, ``overwrite`` or not.
An earlier run's folder is taken over by a fresh run with the same settings (a re-run), by one with other
settings only with ``overwrite``, and continued by ``resume_from``. A fresh run clears the earlier run's
metrics, checkpoints and final model, so nothing of it stands beside the new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import orjson

from thresher.errors import InputError
from thresher.io.outputs import MARKER, STAGE_MARK, protected, read_marker, resolved
from thresher.train.config import TrainConfig

# what a training run writes into its folder (anything else there is someone else's)
OWN = ("metrics.jsonl", "final", "tensorboard", MARKER)
OWN_PREFIXES = ("checkpoint-", ".final.partial", ".checkpoint-")


def settings_key(config: TrainConfig) -> str:
    """A hash of the settings that make a run what it is (not where it writes or whether it resumes)."""
    data = config.model_dump(mode="json", exclude={"resume_from", "overwrite", "output_dir"})
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _is_own(entry: Path) -> bool:
    return entry.name in OWN or entry.name.startswith(OWN_PREFIXES)


def check_output_dir(config: TrainConfig, command: str, resuming: bool) -> Path:
    """The resolved output folder, after refusing what this run must not write into (see the module docstring)."""
    out = resolved(config.output_dir)
    model = resolved(config.model)
    if model.is_dir() and (out == model or out in model.parents):
        raise InputError(f"output_dir {out}: is or holds the model being trained ({model}); choose another output_dir")
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise InputError(f"output_dir {out}: exists and is not a folder; choose another output_dir")
    reason = protected(out)
    if reason is not None:
        raise InputError(f"output_dir {out}: is {reason}; Thresher never writes a run there: choose a new folder")
    entries = [e for e in out.iterdir() if e.name not in (MARKER, STAGE_MARK)]  # a pipeline's stage mark is not a run
    if not entries:  # empty, or a run that stopped before it wrote anything
        return out
    foreign = sorted(e.name for e in entries if not _is_own(e))
    if foreign:
        raise InputError(
            f"output_dir {out}: holds files a training run did not write ({', '.join(foreign[:3])}); Thresher replaces only "
            "its own runs, even with overwrite=true: choose another output_dir"
        )
    if resuming:
        return out
    marker = read_marker(out) or {}
    same = marker.get("command") == command and marker.get("settings") == settings_key(config)
    if not same and not config.overwrite:
        was = f"`{marker['command']}` with other settings" if marker.get("command") else "an earlier run"
        raise InputError(
            f"output_dir {out}: holds {was}; set overwrite=true (or --overwrite) to replace it, resume_from=latest to continue "
            "it, or choose another output_dir"
        )
    return out


def start_fresh(out: Path, config: TrainConfig, command: str) -> None:
    """Clear an earlier run's files (all of them this run's kind: ``check_output_dir`` ran) and mark the folder."""
    for entry in list(out.iterdir()) if out.is_dir() else []:
        if _is_own(entry) and entry.name != MARKER:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    marker = {"command": command, "settings": settings_key(config), "model": config.model}
    (out / MARKER).write_bytes(orjson.dumps(marker, option=orjson.OPT_INDENT_2))
