"""``thresher gc OUTPUT_DIR``: remove the stage folders a pipeline's latest run no longer uses (a changed setting
or input gives a stage a new key, hence a new folder; the old one stays for a cache hit if the change is undone,
until gc). Only folders Thresher made are touched: ``OUTPUT_DIR/stages/NAME-KEY`` holding its ``stage.json`` or
its ``.thresher-stage`` mark, never a symlink, and only when ``OUTPUT_DIR/pipeline.json`` says which are current."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson

from thresher.errors import InputError
from thresher.io.outputs import STAGE_MARK

CURRENT = "pipeline.json"  # written by each run: the stage folders it uses
_FOLDER = re.compile(r"^[A-Za-z0-9_-]+-[0-9a-f]{12}$")


def record_current(output_dir: Path, pipeline: Path, folders: list[Path]) -> None:
    """Note which stage folders this run uses (atomically)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    partial = output_dir / (CURRENT + ".partial")
    partial.write_bytes(orjson.dumps({"pipeline": str(pipeline), "stages": sorted(f.name for f in folders)}, option=orjson.OPT_INDENT_2))
    partial.replace(output_dir / CURRENT)


def mark_stage(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAGE_MARK).touch()


@dataclass
class Superseded:
    folder: Path
    bytes: int


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def superseded(output_dir: Path) -> tuple[list[Superseded], list[Path]]:
    """Stage folders the latest run does not use, and folders under ``stages/`` left alone (not Thresher's)."""
    output_dir = output_dir.resolve()
    record = output_dir / CURRENT
    if not record.is_file():
        raise InputError(f"{output_dir}: no {CURRENT}; gc needs a pipeline output folder that `thresher run` wrote (run it once)")
    current = set(orjson.loads(record.read_bytes())["stages"])
    stages = output_dir / "stages"
    old, kept = [], []
    for folder in sorted(stages.iterdir()) if stages.is_dir() else []:
        if folder.name in current:
            continue
        ours = (
            folder.is_dir()
            and not folder.is_symlink()
            and _FOLDER.match(folder.name)
            and ((folder / "stage.json").is_file() or (folder / STAGE_MARK).is_file())
        )
        if ours and folder.resolve().parent == stages:
            old.append(Superseded(folder, _size(folder)))
        else:
            kept.append(folder)
    return old, kept


def collect(output_dir: Path, dry_run: bool = False) -> tuple[list[Superseded], list[Path]]:
    """Remove (unless ``dry_run``) the superseded stage folders; returns them and the folders left alone."""
    old, kept = superseded(output_dir)
    if not dry_run:
        for item in old:
            shutil.rmtree(item.folder)
    return old, kept
