"""The server under load: started here (``doorstep serve`` or the bare relay, each in its
own process on loopback) or reached at ``--url``; its CPU and memory read from /proc."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

REDIS_URL = os.environ.get("DOORSTEP_REDIS_URL", "redis://127.0.0.1:6379/0")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Server:
    """Where a target listens and, when started here, its process id."""

    kind: str  # "hub" | "hub-redis" | "relay"
    http: str  # base URL, http://host:port
    pid: int | None
    platform_key: str | None = None

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http")


def _delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete a run's keys (SCAN by the documented patterns, never FLUSHDB: the Redis may
    be shared); how many. The hub keeps every key of a prefix inside the hash tag
    ``{prefix}`` or ``{prefix:tech:...}`` (docs/operations.md)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        for pattern in (f"{{{prefix}}}:*", f"{{{prefix}:tech:*"):
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                deleted += int(client.delete(*batch[start : start + 1000]))
    finally:
        client.close()
    return deleted


def _only_child(pid: int) -> int:
    """The worker process a server supervises (granian serves from a child): whose CPU and
    memory are the server's."""
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = [int(c) for c in handle.read().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one worker process under {pid}, found {children}")
    return children[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_stat(text: str) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes from the text of /proc/<pid>/stat."""
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / _CLK_TCK, rss_pages * _PAGE


def read_stat(pid: int) -> tuple[float, int] | None:
    """The process's CPU seconds and RSS now, ``None`` once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return parse_stat(handle.read())
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(
    url: str, process: subprocess.Popen[bytes] | None, *, any_answer: bool = False
) -> None:
    """Until ``url`` answers 200 (or anything, for the relay, which has no such route)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(url, timeout=1).status_code
            if any_answer or status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} was not ready in 30 s")


@contextlib.contextmanager
def started(
    kind: str, url: str | None = None, redis_url: str = REDIS_URL, server: str = "uvicorn"
) -> Iterator[Server]:
    """A running target: the hub at ``url``, or a fresh hub or relay stopped on exit.

    A hub is served by ``doorstep serve`` (uvicorn), or with ``server="granian"`` by granian
    (``loadtest/granian_app.py``, one worker, the same settings), to compare the servers.

    A hub started here gets a fresh temporary data dir, a generated secret and platform key,
    passed in its environment, and the embedded backend, or for ``hub-redis`` the Redis at
    ``redis_url`` under a key prefix of its own, deleted when the hub has stopped.
    """
    if kind != "relay" and url:
        key = os.environ.get("DOORSTEP_PLATFORM_KEY")
        if not key:
            raise RuntimeError("--url needs the hub's platform key in DOORSTEP_PLATFORM_KEY")
        server = Server("hub", url.rstrip("/"), None, key)
        wait_ready(f"{server.http}/readyz", None)
        yield server
        return
    port = free_port()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix=f"doorstep-load-{kind}-") as data:
        if kind == "relay":
            command = [sys.executable, "-m", "loadtest.relay_baseline", "--port", str(port)]
            ready, key = f"http://127.0.0.1:{port}/", None
        else:
            key = secrets.token_urlsafe(24)
            command = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port)]
            command += ["--data-dir", data, "--log-level", "warning"]
            if server == "granian":
                command = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory"]
                command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
                command += ["--log-level", "warning", "loadtest.granian_app:app"]
                env["DOORSTEP_DATA_DIR"] = data
            env.update(
                DOORSTEP_SECRET=secrets.token_urlsafe(32),
                DOORSTEP_PLATFORM_KEY=key,
                DOORSTEP_BACKEND="embedded",
            )
            if kind == "hub-redis":
                prefix = f"loadtest-{secrets.token_hex(6)}"
                env.update(
                    DOORSTEP_BACKEND="redis",
                    DOORSTEP_REDIS_URL=redis_url,
                    DOORSTEP_REDIS_PREFIX=prefix,
                )
            ready = f"http://127.0.0.1:{port}/readyz"
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        try:
            wait_ready(ready, process, any_answer=kind == "relay")
            pid = process.pid if server != "granian" else _only_child(process.pid)
            yield Server(kind, f"http://127.0.0.1:{port}", pid, key)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if kind == "hub-redis":
                _delete_prefix(redis_url, prefix)
