"""Content hashes of files and folders: what caches and stage keys use to notice that an input changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_hash(path: Path) -> str:
    """blake2b of a file's bytes, or of a folder's files (names and bytes, in sorted order)."""
    digest = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
