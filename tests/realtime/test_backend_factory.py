"""The backend factory: the settings pick the backends, and the hub hands them what they need.

Backends import nothing of the hub (``tests/realtime/backends/test_imports.py``), so the
durable channels, the retention and the supervisor of the bus's loops come from here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from realtime.backend_factory import create_backends, create_roster
from realtime.backends.memory import MemoryBus
from realtime.backends.redis import RedisBus, RedisRoster, RedisStore
from realtime.backends.roster import MemoryRoster
from realtime.backends.sqlite import SQLiteStore
from realtime.channels import DURABLE_CHANNELS
from realtime.settings import SettingsError, load_settings
from realtime.tasks import Supervisor
from tests.realtime.backends.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def test_settings_pick_the_backend_pair(tmp_path: Path) -> None:
    store, bus = create_backends(load_settings(data_dir=tmp_path))
    assert isinstance(store, SQLiteStore)
    assert isinstance(bus, MemoryBus)
    settings = load_settings(
        data_dir=tmp_path, backend="redis", redis_url=REDIS_URL, redis_prefix="tenant-7"
    )
    store, bus = create_backends(settings)
    assert isinstance(store, RedisStore)
    assert isinstance(bus, RedisBus)
    assert store.keys.bookings == "{tenant-7}:bookings"
    assert bus.keys.channel("fleet") == "tenant-7:bus:fleet"
    assert store.history_retention_s == settings.redis_history_retention_s


def test_the_redis_bus_gets_the_hubs_supervisor_and_durable_channels(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, backend="redis", redis_url=REDIS_URL, redis_prefix="tenant-7"
    )
    tasks = Supervisor()
    _, bus = create_backends(settings, tasks)
    assert isinstance(bus, RedisBus)
    assert bus.tasks is tasks
    assert bus.durable_channels == frozenset(DURABLE_CHANNELS)


def test_settings_pick_the_roster(tmp_path: Path) -> None:
    assert isinstance(create_roster(load_settings(data_dir=tmp_path)), MemoryRoster)
    settings = load_settings(
        data_dir=tmp_path, backend="redis", redis_url=REDIS_URL, redis_prefix="tenant-7"
    )
    roster = create_roster(settings)
    assert isinstance(roster, RedisRoster)
    assert roster.keys.online == "{tenant-7}:roster:online"


def test_the_embedded_default_never_loads_the_redis_backend(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from realtime.backend_factory import create_backends, create_roster\n"
        "from realtime.settings import load_settings\n"
        f"settings = load_settings(data_dir={str(tmp_path)!r})\n"
        "create_backends(settings)\n"
        "create_roster(settings)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis' or 'redis' in m))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,  # the code under test, not an installed copy
    )
    assert out.stdout.strip() == "[]"


def test_backend_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_BACKEND", "redis")
    monkeypatch.setenv("DOORSTEP_REDIS_URL", "redis://redis.internal:6380/2")
    monkeypatch.setenv("DOORSTEP_REDIS_PREFIX", "eu-west")
    settings = load_settings()
    assert (settings.backend, settings.redis_url, settings.redis_prefix) == (
        "redis",
        "redis://redis.internal:6380/2",
        "eu-west",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("backend", "postgres"),
        ("redis_prefix", "{doorstep}"),  # would break the hash tags
        ("redis_prefix", "a:tech:b"),  # could match another prefix's technician keys
        ("redis_prefix", "doorstep*"),  # a glob in SCAN patterns
        ("redis_prefix", ""),
        ("redis_history_retention_s", 0),
    ],
)
def test_bad_backend_settings_are_refused(name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=f"DOORSTEP_{name.upper()}"):
        load_settings(**{name: value})
