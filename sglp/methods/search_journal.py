"""A search's scored candidates on disk, so that a killed search resumes where it stopped.

The SGLP paper's every-subset search scores 10^4 candidates at 14 of 27 ResNet-56 blocks (an hour on 2 CPU cores);
an LLM's perplexity search costs hours on a GPU. The journal is one JSON-lines file per job: a header line
`{"fingerprint": ...}` (the job's config key and weights digest, the segments, allotment and scorer), then one
`{"segment": i, "removed": [...], "score": x}` per scored candidate, flushed as it is written (a `kill -9` loses
at most the line being written, which is ignored on reading). A job whose fingerprint differs starts the file over;
one finding the file locked by a running twin searches without it. The journal trusts that the code computing the
scores has not changed: delete the folder after changing a scorer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

Key = tuple[int, tuple[int, ...]]  # (segment index, removed units)


class SearchJournal:
    """`open(details)` -> the scores a previous run with the same fingerprint wrote, {(segment, removed): score};
    `record(segment, removed, score)` appends one; `close()` syncs and releases the file."""

    def __init__(self, path: str | Path, fingerprint: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = dict(fingerprint)
        self._file = None
        self._lock: FileLock | None = None

    def open(self, details: Mapping[str, Any]) -> dict[Key, float]:
        """Lock the journal and read it back; `details` (segments, allotment, scorer) join the fingerprint."""
        header = json.loads(json.dumps({**self.fingerprint, **details}, sort_keys=True, default=str))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(f"{self.path}.lock")
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            log.warning("search journal %s is in use by another job: searching without it", self.path)
            self._lock = None
            return {}
        scores = self._read(header)
        if scores is None:  # no journal, or another job's: start over
            with open(self.path, "w") as f:
                f.write(json.dumps({"fingerprint": header}) + "\n")
            scores = {}
        elif scores:
            log.info("search journal %s: %d candidates already scored, resuming", self.path, len(scores))
        self._file = open(self.path, "a")
        return scores

    def _read(self, header: dict) -> dict[Key, float] | None:
        if not self.path.exists():
            return None
        with open(self.path) as f:
            lines = f.read().split("\n")
        try:
            if json.loads(lines[0]).get("fingerprint") != header:
                log.warning("search journal %s belongs to other weights or settings: starting it over", self.path)
                return None
        except (json.JSONDecodeError, AttributeError):
            return None
        scores: dict[Key, float] = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                scores[(int(entry["segment"]), tuple(entry["removed"]))] = float(entry["score"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # an empty or torn line (a kill while writing)
        if lines[-1]:  # a torn last line: end it, so the next record starts on a line of its own
            with open(self.path, "a") as f:
                f.write("\n")
        return scores

    def record(self, segment: int, removed: tuple[int, ...], score: float) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"segment": segment, "removed": list(removed), "score": score}) + "\n")
            self._file.flush()  # in the OS's hands: survives the process being killed

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
