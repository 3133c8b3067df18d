"""The judgment cache: an append-only JSONL file, one line per finished judge call.

A line is written (and flushed) as soon as a call's reply parses, so a killed judging run loses
at most the calls in flight, and a rerun sends only what is missing.  The key is the SHA-256 of
``(template version, judge model, aspect, question, first answer, second answer)``: the two
answer orders are two keys; a new model or template version misses the cache.  A torn last line
(a kill during the write) is cut off with a warning; a damaged line anywhere else is an error.
No line holds the API key or any header.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path

from ...errors import UserError

__all__ = ["judgment_key", "JudgmentCache"]


def judgment_key(template_version: str, model: str, aspect: str, question: str, first: str,
                 second: str) -> str:
    """The cache key of one judge call (a hex SHA-256)."""
    text = json.dumps([template_version, model, aspect, question, first, second])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgmentCache:
    """``key -> record`` loaded from ``path``; :meth:`add` appends one record (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            data = self.path.read_bytes()
            lines = data.split(b"\n")
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key = rec["key"]
                except (ValueError, KeyError, TypeError):
                    if i == len(lines) - 1:  # no newline after it: a write cut by a kill
                        warnings.warn(f"--cache: dropped the torn last line of {str(self.path)!r} "
                                      "(a write cut short; that call is judged again)",
                                      stacklevel=2)
                        with open(self.path, "r+b") as f:
                            f.truncate(len(data) - len(line))
                        continue
                    raise UserError(f"--cache: line {i + 1} of {str(self.path)!r} is damaged; "
                                    "remove that line or pass another --cache") from None
                self.records[key] = rec
                if i == len(lines) - 1:  # a whole last record without its newline
                    with open(self.path, "ab") as f:
                        f.write(b"\n")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        """Append ``record`` (it must hold ``key``) and flush it to disk."""
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self.records[record["key"]] = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
