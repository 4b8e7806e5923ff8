"""The SQLite store names its failures and keeps its files to itself (issue 11, item 6).

- A full disk is ``store_full``: HTTP 503 with Retry-After, ``/readyz`` 503, and the log says
  "full", not "cannot rollback"; once space is freed the hub is ready again by itself. Played
  on a real full filesystem (a 2 MB tmpfs, when this runs as root) and with SQLite's
  ``max_page_count`` (everywhere).
- A second process (or a second hub in this one) on the same data dir is refused at start.
- The database, its -wal and -shm files and the lock file are mode 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from realtime.app import create_app
from realtime.backends.base import DataDirLocked
from tests.conftest import RunningHub, make_settings

DOORSTEP = [sys.executable, "-m", "realtime.cli"]
HOME = {"lat": 52.52, "lon": 13.405}


def _booking(index: int) -> dict[str, object]:
    # Big enough that a few of them need new pages.
    return {"id": f"b-{index}", "customer_id": "c-" + "x" * 60, "destination": HOME}


async def _readyz(hub: RunningHub) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.http, timeout=5) as http:
        return await http.get("/readyz")


async def _wait_ready(hub: RunningHub, status: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = await _readyz(hub)
        if response.status_code == status:
            return response.json()
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill_disk(path: Path) -> Callable[[], None]:
    """Write a filler file until the filesystem is full; returns what frees it."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler.unlink


@pytest.fixture(params=["tmpfs", "max_page_count"])
async def full_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[RunningHub, Callable[[], None], Callable[[], None]]]:
    """A running hub, a function that fills its store, and one that frees it."""
    data = tmp_path / "data"
    with contextlib.ExitStack() as stack:
        if request.param == "tmpfs":
            stack.enter_context(_tmpfs(data, "2m"))
        hub = RunningHub(make_settings(data))
        await hub.start()
        db = hub.hub.store.db
        freed: list[Callable[[], None]] = []

        def fill() -> None:
            if request.param == "tmpfs":
                freed.append(_fill_disk(data))
            else:  # no page beyond those the file has now
                pages = db.execute("PRAGMA page_count").fetchone()[0]
                db.execute(f"PRAGMA max_page_count = {pages}")

        def free() -> None:
            if request.param == "tmpfs":
                freed.pop()()
            else:
                db.execute("PRAGMA max_page_count = 1073741823")

        try:
            yield hub, fill, free
        finally:
            await hub.stop()


@pytest.mark.asyncio
async def test_a_full_disk_is_store_full_and_not_ready_until_space_is_freed(
    full_store: tuple[RunningHub, Callable[[], None], Callable[[], None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, fill, free = full_store
    caplog.set_level(logging.WARNING)
    async with hub.client() as http:
        assert (await http.post("/v1/bookings", json=_booking(0))).status_code == 201
        fill()
        refused = None
        for index in range(1, 200):  # until a write needs a page (or a byte) it cannot have
            response = await http.post("/v1/bookings", json=_booking(index))
            if response.status_code != 201:
                refused = response
                break
        assert refused is not None
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "store_full"
        assert int(refused.headers["retry-after"]) > 0
        body = await _wait_ready(hub, 503, timeout=3)
        assert body["checks"]["store"] is False and body["store_error"] == "store_full"
        assert "cannot rollback" not in caplog.text
        assert "full" in caplog.text

        free()
        await _wait_ready(hub, 200, timeout=5)
        assert (await http.post("/v1/bookings", json=_booking(999))).status_code == 201


@pytest.mark.asyncio
async def test_a_second_hub_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = RunningHub(make_settings(tmp_path))
    await first.start()
    try:
        second = create_app(make_settings(tmp_path))
        with pytest.raises(DataDirLocked, match="in use by another process"):
            async with second.router.lifespan_context(second):
                pass
        # The first hub is unharmed.
        assert (await _readyz(first)).status_code == 200
    finally:
        await first.stop()
    # Once the first is stopped, the data dir is free again.
    again = RunningHub(make_settings(tmp_path))
    await again.start()
    await again.stop()


@pytest.mark.asyncio
async def test_doorstep_serve_on_a_data_dir_in_use_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    hub = RunningHub(make_settings(tmp_path))
    await hub.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")}
        result = await asyncio.to_thread(
            subprocess.run,
            [*DOORSTEP, "serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [
            f"Error: data dir {tmp_path} is in use by another process (pid {os.getpid()})"
        ], result.stderr
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_the_database_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a usual umask: files would be created world-readable
    hub = RunningHub(make_settings(tmp_path))
    await hub.start()
    os.umask(previous)
    try:
        async with hub.client() as http:
            assert (await http.post("/v1/bookings", json=_booking(0))).status_code == 201
        names = ["doorstep.sqlite3", "doorstep.sqlite3-wal", "doorstep.sqlite3-shm"]
        for name in [*names, "doorstep.lock"]:
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, f"{name}: {oct(mode)}"
    finally:
        await hub.stop()
