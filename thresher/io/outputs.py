"""All-or-nothing output folders, shared by every command that writes one.

``committed_folder(OUT, ...)`` resolves OUT (symlinks, ``..``) first, takes a lock beside the resolved
folder (a second run into the same folder is refused, however it is spelled), refuses an OUT that holds
another command's or other inputs' output unless ``overwrite``, and refuses always — ``overwrite`` or
not — an OUT that holds anything Thresher did not write (no marker), a file, ``/``, a home folder, the
current folder or one above it, and a git work tree. It refuses inputs that live inside OUT (compared
after resolving both), and hands the command a fresh staging folder beside OUT. Only when the command
returns is ``.thresher.json`` written there and the staging folder swapped into place in one rename
(``renameat2(RENAME_EXCHANGE)`` where the kernel has it), so readers see the old output or the new
one, never a mix. A killed run leaves only
its staging folder, which the next run removes (keeping any ``carry`` folder, a cache, for reuse).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from thresher.errors import InputError

MARKER = ".thresher.json"
STAGE_MARK = ".thresher-stage"  # in each pipeline stage folder: made by Thresher (thresher gc removes only these)
AT_FDCWD = -100
RENAME_EXCHANGE = 2


REMOTE_PREFIXES = ("hf:", "hub:")  # hub datasets, not paths


def local_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """The inputs that are local paths (not ``hf:``/``hub:`` ids), made absolute."""
    return [Path(os.path.abspath(os.path.expanduser(str(p)))) for p in inputs if not str(p).startswith(REMOTE_PREFIXES)]


def resolved(path: str | Path) -> Path:
    """``path`` absolute with every symlink and ``..`` resolved (what overlap checks and locks compare)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def protected(out: Path) -> str | None:
    """Why ``out`` (resolved) must never be replaced by an output folder, or None."""
    home, cwd = resolved("~"), resolved(os.getcwd())
    if out == Path(out.anchor):
        return "the root folder"
    if out == home or out in home.parents:
        return "your home folder (or one above it)"
    if out == cwd or out in cwd.parents:
        return "the current folder (or one above it)"
    if (out / ".git").exists():
        return "a git work tree"
    return None


def temp_beside(path: Path) -> Path:
    """Where a file is written before it is renamed to ``path`` (one name for every writer, so leftovers are found)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(path: Path) -> None:
    """Remove what killed writers of ``path`` left behind (call it holding the output's lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def refuse_overlap(inputs: Sequence[str | Path], outputs: Sequence[str | Path]) -> None:
    """An output that is an input, or a folder holding one, would destroy it: refuse before reading. Paths are
    compared resolved, so a symlink on either side changes nothing."""
    ins = [resolved(p) for p in local_paths(inputs)]
    for out in (resolved(p) for p in local_paths(outputs)):
        for path in ins:
            if path == out or out in path.parents or (path.exists() and out.exists() and os.path.samefile(path, out)):
                raise InputError(f"{out}: this output would overwrite the input {path}; choose another output path")


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``.OUT.lock`` beside ``out`` (resolved: two spellings of one folder share one lock); a second holder
    is refused with the first one's pid."""
    out = resolved(out)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(
                    f"{out}: another thresher run (pid {holder}) is writing this folder; wait for it or choose another output"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not a lock file a finished run just unlinked
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads((folder / MARKER).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def check_replaceable(out: Path, command: str, inputs: list[str], overwrite: bool) -> None:
    """Refuse to replace what Thresher did not write (always), and another command's or other inputs' output
    (unless ``overwrite``). ``out`` is resolved."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; Thresher replaces only its own output folders: choose another --out")
    reason = protected(out)
    if reason is not None:
        raise InputError(f"{out}: is {reason}; Thresher never replaces it, even with --overwrite: choose a new folder for --out")
    if not any(out.iterdir()):
        return
    marker = read_marker(out)
    if marker is None:
        raise InputError(
            f"{out}: holds files Thresher did not write (it is not the output of a complete thresher run); Thresher "
            "replaces only its own output folders, even with --overwrite: choose another --out"
        )
    if not overwrite and (marker.get("command") != command or marker.get("inputs") != inputs):
        was = f"`{marker.get('command')}` on {', '.join(marker.get('inputs') or []) or 'no inputs'}"
        raise InputError(f"{out}: holds the output of {was}; use --overwrite to replace it, or choose another --out")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the kernel or C library cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2(AT_FDCWD, str(a).encode(), AT_FDCWD, str(b).encode(), RENAME_EXCHANGE) == 0
    except (AttributeError, OSError):
        return False


def _stale(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.partial-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


@contextlib.contextmanager
def committed_folder(
    out: str | Path, command: str, inputs: Sequence[str | Path], overwrite: bool = False, carry: Sequence[str] = ()
) -> Iterator[Path]:
    """Yield a staging folder; on success it becomes ``out`` whole, on failure nothing changes."""
    out = resolved(out)  # a symlinked --out is followed: the folder it names is what gets replaced
    named = [str(p) for p in local_paths(inputs)] + [str(p) for p in inputs if str(p).startswith(REMOTE_PREFIXES)]
    refuse_overlap(inputs, [out])
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out):
        check_replaceable(out, command, named, overwrite)
        stale = _stale(out)  # what killed runs left behind
        staging = out.parent / f".{out.name}.partial-{os.getpid()}-{time.time_ns()}"
        staging.mkdir()
        for name in carry:  # a cache from a killed run, or from the last complete one
            for origin in [*stale, out]:
                if (origin / name).is_dir() and not (staging / name).exists():
                    os.replace(origin / name, staging / name)
        for old in stale:
            shutil.rmtree(old, ignore_errors=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        marker = {"command": command, "inputs": named, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / MARKER).write_bytes(orjson.dumps(marker, option=orjson.OPT_INDENT_2))
        replace_folder(staging, out)


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` at ``target`` in one step, removing what was there."""
    if target.exists() and not target.is_dir():
        target.unlink()
    if not target.exists():
        os.replace(staging, target)
        return
    if not _exchange(staging, target):
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(staging, target)
        staging = old
    shutil.rmtree(staging, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file or none: a temporary file beside it, renamed into place."""
    tmp = temp_beside(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
