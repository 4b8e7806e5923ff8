"""The Redis backend: the same Store, Bus and Roster as the embedded one, shared by hubs.

``keys.py`` lays the keys out (and says why the hash tags), ``scripts.py`` holds the Lua
scripts, ``client.py`` opens clients with their timeouts, ``store*.py`` are the Store,
``bus.py`` the Bus and ``roster.py`` the Roster. What they need of the hub (channel names,
retention, a supervisor for the bus's loops) is passed in by ``realtime.backend_factory``.
"""

from __future__ import annotations

from realtime.backends.redis.bus import RedisBus
from realtime.backends.redis.client import delete_all
from realtime.backends.redis.keys import Keys
from realtime.backends.redis.roster import RedisRoster
from realtime.backends.redis.store import RedisStore

__all__ = ["Keys", "RedisBus", "RedisRoster", "RedisStore", "delete_all"]
