"""The cyclic garbage collector, set for a hub holding thousands of sockets, and watched.

Why: every open socket keeps a few hundred tracked objects alive (its tasks, coroutines,
closures, events). At 4,000 sockets a full collection walks about a million of them and
stops the event loop for 350-550 ms, every ~10 s under load (loadtest/RESULTS.md), which
is the whole tail of the delivery latency. Two things make full collections rare and
smaller without leaking anything:

* ``gc.freeze()`` once the hub has started: what exists then (modules, the app, the hub's
  services) lives as long as the process, so collections stop walking it. It runs after a
  ``gc.collect()``, so no garbage is frozen with it.
* A larger first-generation threshold: per-fix objects (frames, acks, batches) then die
  before a young collection sees them, instead of being promoted to the old generation,
  whose growth by a quarter is what triggers a full collection in CPython.

``doorstep_gc_pause_seconds`` shows the pauses by generation, so the choice can be checked
on a running hub.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

Thresholds = tuple[int, int, int]


def tune(thresholds: Thresholds, *, freeze: bool) -> None:
    """Apply the thresholds; with ``freeze``, collect then freeze what exists now."""
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*thresholds)


def parse_thresholds(text: str) -> Thresholds:
    """``"50000,20,10"`` as three positive integers (gen0, gen1, gen2), or ValueError."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected three positive integers like 50000,20,10, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


class PauseWatch:
    """Times every collection into a histogram by generation, through ``gc.callbacks``."""

    def __init__(self, histogram: Histogram, clock: Any = time.perf_counter) -> None:
        self.clock = clock
        self._by_generation = [histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
        else:
            self._by_generation[info["generation"]].observe(self.clock() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
