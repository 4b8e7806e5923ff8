"""The `doorstep` command as an operator would run it: real processes, real port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

DOORSTEP = [sys.executable, "-m", "realtime.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DOORSTEP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean_env(), **(env or {})},
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_explains_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "token"):
        assert command in result.stdout
    for command in ("serve", "token"):
        sub = run(command, "--help")
        assert sub.returncode == 0 and "--data-dir" in sub.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DOORSTEP_PORT": "not-a-port"}, "DOORSTEP_PORT"),
        ({"DOORSTEP_PORT": "70000"}, "DOORSTEP_PORT"),
        ({"DOORSTEP_BACKEND": "postgres"}, "DOORSTEP_BACKEND"),
        ({"DOORSTEP_RATE_PER_S": "-3"}, "DOORSTEP_RATE_PER_S"),
    ],
)
def test_invalid_setting_stops_start_up_with_one_line_naming_it(tmp_path, env, named):
    result = run("serve", "--data-dir", str(tmp_path), env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_token_without_any_secret_says_which_setting_is_missing(tmp_path):
    result = run("token", "--role", "operator", "--sub", "op", "--data-dir", str(tmp_path))
    assert result.returncode != 0 and "DOORSTEP_SECRET" in result.stderr
    assert result.stdout == ""


def test_customer_token_needs_a_booking(tmp_path):
    result = run("token", "--role", "customer", "--sub", "c", env={"DOORSTEP_SECRET": "s" * 32})
    assert result.returncode != 0 and "booking" in result.stderr


def test_serve_generates_secrets_once_and_token_uses_them(tmp_path: Path):
    port = free_port()
    data = tmp_path / "data"
    server = subprocess.Popen(
        [
            *DOORSTEP,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ],
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            assert server.poll() is None, server.stderr.read()
            time.sleep(0.1)
        secrets_file = data / "secrets.json"
        stored = json.loads(secrets_file.read_text())
        assert set(stored) == {"secret", "platform_key"}
        assert secrets_file.stat().st_mode & 0o777 == 0o600

        result = run("token", "--role", "operator", "--sub", "op-1", "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        assert result.stdout == token + "\n"
        with connect(f"ws://127.0.0.1:{port}/v1/ws/ops?token={token}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"

        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/tokens",
            headers={"Authorization": f"Bearer {stored['platform_key']}"},
            json={"role": "technician", "sub": "t-1"},
        )
        assert response.status_code == 201
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=20)
    assert str(secrets_file) in stderr
    assert server.returncode == 0, stderr


@pytest.mark.parametrize(("setting", "offered"), [(None, False), ("true", True)])
def test_serve_offers_per_message_deflate_only_when_asked(
    tmp_path: Path, setting: str | None, offered: bool
):
    """Off by default (loadtest/results/server.md: 40 KiB a socket, ~10 % throughput)."""
    port = free_port()
    env = clean_env() | {"DOORSTEP_SECRET": "s" * 40, "DOORSTEP_PLATFORM_KEY": "k" * 24}
    if setting is not None:
        env["DOORSTEP_WS_PER_MESSAGE_DEFLATE"] = setting
    command = [*DOORSTEP, "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.1)
        result = run("token", "--role", "operator", "--sub", "op-1", env=env)
        token = result.stdout.strip()
        # The client offers deflate; the server's answer decides.
        with connect(f"ws://127.0.0.1:{port}/v1/ws/ops?token={token}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
            negotiated = [type(extension).__name__ for extension in ws.protocol.extensions]
        assert negotiated == (["PerMessageDeflate"] if offered else [])
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=20)
