"""The request cache: every completion on disk (SQLite), keyed by (model, prompt hash, sample index,
sampling parameters), so a run that is killed at any moment resumes without regenerating anything.

Each batch is committed in one transaction as soon as it is generated; a kill loses at most the
batch in flight. A ``generated`` log counts every time a key was generated, so tests (and users)
can check that nothing was generated twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson

from thresher.synth.backends.base import Completion, Conversation


def prompt_hash(conversation: Conversation) -> str:
    return hashlib.blake2b(orjson.dumps([[m["role"], m["content"]] for m in conversation]), digest_size=16).hexdigest()


def request_key(model: str, conversation: Conversation, index: int, params_key: str) -> str:
    return f"{model}|{prompt_hash(conversation)}|{index}|{params_key}"


class RequestCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "finish_reason TEXT NOT NULL, tokens INTEGER NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS generated (key TEXT NOT NULL, at REAL DEFAULT (julianday('now')))")
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        for lo in range(0, len(keys), 500):
            chunk = keys[lo : lo + 500]
            marks = ",".join("?" * len(chunk))
            for key, text, finish, tokens in self.db.execute(
                f"SELECT key, text, finish_reason, tokens FROM completions WHERE key IN ({marks})", chunk
            ):
                found[key] = Completion(text, finish, tokens)
        return found

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?)", [(k, c.text, c.finish_reason, c.tokens) for k, c in items]
            )
            self.db.executemany("INSERT INTO generated (key) VALUES (?)", [(k,) for k, _ in items])

    def counts(self) -> tuple[int, int]:
        """(distinct completions stored, generations logged)."""
        stored = self.db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        logged = self.db.execute("SELECT COUNT(*) FROM generated").fetchone()[0]
        return int(stored), int(logged)

    def close(self) -> None:
        self.db.close()
