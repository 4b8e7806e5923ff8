"""Hubs as real processes (``doorstep serve``), for the tests of several hubs sharing one
Redis: they must be separate processes, so that one can be killed with SIGKILL mid-work
like a crashed machine."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PLATFORM_KEY, SECRET

DOORSTEP = str(Path(sys.executable).parent / "doorstep")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HubProcess:
    """``doorstep serve`` on the Redis backend, in a process of its own."""

    def __init__(self, name: str, data_dir: Path, redis_url: str, prefix: str, **env: Any):
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
            "DOORSTEP_SECRET": SECRET,
            "DOORSTEP_PLATFORM_KEY": PLATFORM_KEY,
            "DOORSTEP_FLEET_INTERVAL_S": "0.2",
            "DOORSTEP_WEBHOOK_SECRET": "test-webhook-secret-0123456789",
            **{f"DOORSTEP_{key.upper()}": str(value) for key, value in env.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_level = "warning"  # "info": uvicorn's access and WebSocket logs too
        self.log_path = data_dir / f"{name}.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [DOORSTEP, "serve", "--log-level", self.log_level],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.http, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"{self.name} exited: {self.log()}"
                with suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready within {timeout} s: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, exactly like a machine that dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def client(self, token: str | None = PLATFORM_KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.http, headers=headers, timeout=10)

    async def token(self, role: str, sub: str, booking: str | None = None) -> str:
        body: dict[str, Any] = {"role": role, "sub": sub, "ttl_s": 600}
        if booking:
            body["booking"] = booking
        async with self.client() as http:
            response = await http.post("/v1/tokens", json=body)
            response.raise_for_status()
            return response.json()["token"]
