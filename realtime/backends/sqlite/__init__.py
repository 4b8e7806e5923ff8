"""The embedded backend's store: SQLite, one file, one process.

``schema.py`` holds the tables and the data dir lock, ``connection.py`` the connection on its
own thread and what its errors mean, ``store*.py`` the Store: bookings, documents and the
access audit (``store.py``), the location history (``store_history.py``), incidents and
alerts (``store_safety.py``), locks, leases and the work queue (``store_coordination.py``).
"""

from __future__ import annotations

from realtime.backends.sqlite.schema import data_dir_holder
from realtime.backends.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore", "data_dir_holder"]
