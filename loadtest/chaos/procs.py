"""The soak's processes: a private ``redis-server``, two ``doorstep serve`` hubs on it, and a
small TCP balancer in front of them; all on loopback, all stopped on exit.

Redis is a server of the soak's own on a free port, with append-only persistence, so its
restart keeps the data (as a production Redis with AOF would) and the shared 6379 is never
touched. A hub keeps its data dir and hub id across a kill -9, as a supervisor restarting a
crashed process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def terminate(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM and wait without blocking the loop; SIGKILL if it does not exit in time."""
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PrivateRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # appendfsync everysec, as production would run it: "always" costs a disk flush per
        # write, which on this shared machine would measure the disk, not the hubs.
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.data_dir), "--appendonly", "yes"]
        command += ["--appendfsync", "everysec", "--save", ""]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the append-only file
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        raise RuntimeError("redis-server exited at start") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start in 15 s")
                await asyncio.sleep(0.05)
        finally:
            client.close()

    async def stop(self) -> None:
        """SIGTERM, as an operator stopping Redis: it writes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            await terminate(self.process)
        self.process = None


class Hub:
    """``doorstep serve --backend redis`` in a process of its own; restartable after a kill."""

    def __init__(
        self, name: str, data_dir: Path, redis_url: str, prefix: str, secret: str, key: str
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "DOORSTEP_BACKEND": "redis",
            "DOORSTEP_REDIS_URL": redis_url,
            "DOORSTEP_REDIS_PREFIX": prefix,
            "DOORSTEP_HUB_ID": name,
            "DOORSTEP_PORT": str(self.port),
            "DOORSTEP_DATA_DIR": str(data_dir),
            "DOORSTEP_SECRET": secret,
            "DOORSTEP_PLATFORM_KEY": key,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.lives = 0  # processes started so far: a restarted hub's RSS is a new series
        self.log_path = data_dir / f"{name}.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (returns at once; ``wait_ready`` for its readiness)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "realtime.cli", "serve", "--log-level", "warning"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.lives += 1

    async def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds until ``/readyz`` answered 200; raises if the process exits or times out."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.http, timeout=2) as http:
            while time.monotonic() - started < timeout_s:
                if not self.alive:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return time.monotonic() - started
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout_s:g} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, like a machine that dies."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            await terminate(self.process)

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-2000:]


def new_credentials() -> tuple[str, str]:
    """A signing secret and a platform key shared by both hubs of one soak."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(24)


class Balancer:
    """One listening port per hub: a connection goes to that hub while it is up, else to the
    other one, like a load balancer whose health check took the dead hub out.

    Bytes are forwarded as they come (TCP, so HTTP and WebSocket alike). A connection to a
    hub that dies is reset by the hub's kernel and the client reconnects: to the other hub
    until the first is back up.
    """

    def __init__(self, hubs: list[Hub]) -> None:
        self.hubs = hubs
        self.up = [True] * len(hubs)
        self.ports: list[int] = []
        self.routed = [0] * len(hubs)  # connections sent to each hub
        self.failed_over = 0  # connections sent to a hub other than their port's
        # The client's port -> the hub process it was sent to ("hub-a#2"), so a client can
        # tell which hub served each of its connections.
        self.routes: dict[int, str] = {}
        self.live: dict[str, int] = {}  # open connections per hub process
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def route_of(self, client_port: int) -> str:
        return self.routes.get(client_port, "?")

    def url(self, hub: int) -> str:
        return f"http://127.0.0.1:{self.ports[hub]}"

    async def start(self) -> None:
        for index in range(len(self.hubs)):
            server = await asyncio.start_server(
                lambda r, w, i=index: self._accept(i, r, w), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(
        self, preferred: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        order = [preferred] + [i for i in range(len(self.hubs)) if i != preferred]
        for index in order:
            if not self.up[index]:
                continue
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.hubs[index].port
                )
            except OSError:
                continue
            self.routed[index] += 1
            hub = self.hubs[index]
            label = f"{hub.name}#{hub.lives}"
            self.routes[writer.get_extra_info("peername")[1]] = label
            self.live[label] = self.live.get(label, 0) + 1
            self.failed_over += index != preferred
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                # The client's side ends every connection (a reset either way aborts it).
                closing = label if source is reader else None
                task = asyncio.create_task(self._pump(source, sink, closing))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        writer.transport.abort()  # no hub up: the connection fails at once

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, closing: str | None
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # A reset on one side resets the other: the client sees the hub die.
            with contextlib.suppress(Exception):
                sink.transport.abort()
            if closing is not None:
                self.live[closing] -= 1
