"""Where a technician client keeps its seq counter between runs.

The hub numbers nothing itself: every fix carries a per-technician ``seq`` that must keep
increasing across reconnects *and app restarts*, because the hub acknowledges "everything up
to seq N" and silently skips batch points at or below the highest seq it has. A phone app
that restarts at seq 0 after the hub has stored seq 5,000 would have its fixes skipped.

**A real app must persist the counter** (``FileSeqStore``, or its own ``SeqStore`` on the
platform's key-value storage). The default ``MemorySeqStore`` only lasts as long as the
process; the client limits the damage by jumping ahead when the hub's first ``ack`` shows
the counter is behind, but that cannot protect fixes numbered while the hub was out of
reach, nor fixes a previous run left unacknowledged.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


class SeqStore(Protocol):
    """A seq counter's persistence: called from the event loop, so it must be quick."""

    def load(self) -> int | None:
        """A seq at or above every seq ever handed out, or None if none ever was."""
        ...

    def save(self, seq: int) -> None:
        """``seq`` was just handed out to a fix (seqs only increase)."""
        ...


class MemorySeqStore:
    """Keeps the counter in memory only: fine for tests and scripts, not for a phone app."""

    def __init__(self, start: int | None = None) -> None:
        self._seq = start

    def load(self) -> int | None:
        return self._seq

    def save(self, seq: int) -> None:
        self._seq = seq


class FileSeqStore:
    """Keeps the counter in a small file, written once per ``reserve`` seqs.

    The protocol allows gaps in seqs, so instead of writing on every fix the store reserves a
    block: it writes ``seq + reserve`` and hands out seqs below that without touching the
    disk. After a crash the next run starts above the reservation: a gap of at most
    ``reserve`` seqs, never a reused one. Writes are atomic (temporary file, fsync, rename).
    """

    def __init__(self, path: str | os.PathLike[str], reserve: int = 1000) -> None:
        if reserve < 1:
            raise ValueError("reserve must be at least 1")
        self.path = Path(path)
        self.reserve = reserve
        self._reserved: int | None = None

    def load(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        self._reserved = int(text)
        return self._reserved

    def save(self, seq: int) -> None:
        if self._reserved is not None and seq < self._reserved:
            return
        self._reserved = seq + self.reserve
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{self._reserved}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
