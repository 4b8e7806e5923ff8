"""A Redis server of the test's own, to stop and start: the shared one on 6379 must stay up
for every other test, so an outage is played on a private ``redis-server`` (the same binary
CI installs) on a free port, with append-only persistence so a restart keeps the data.

The load test's chaos soak needs the very same thing, and ``loadtest/`` may not import
``tests/``: the one implementation lives there (``loadtest/chaos/procs.py``).
"""

from __future__ import annotations

from loadtest.chaos.procs import PrivateRedis

__all__ = ["PrivateRedis"]
