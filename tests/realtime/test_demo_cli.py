"""`doorstep demo` as a newcomer runs it: one command, links within seconds, moving dots."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
from websockets.sync.client import connect

DOORSTEP = [sys.executable, "-m", "realtime.cli"]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/(?:console|track|tech)\?\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    output: list[str]

    @classmethod
    def start(cls, *args: str, cwd: str) -> Demo:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOORSTEP_")}
        process = subprocess.Popen(
            [*DOORSTEP, "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        demo = cls(process, queue.Queue(), [])
        threading.Thread(target=demo._read, daemon=True).start()
        return demo

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def links(self, within_s: float) -> dict[str, list[str]]:
        """The printed links by page, once the console, tracking and tech links are all in."""
        deadline = time.monotonic() + within_s
        found: dict[str, list[str]] = {"console": [], "track": [], "tech": []}
        while not (found["console"] and found["track"] and found["tech"]):
            left = deadline - time.monotonic()
            assert left > 0, f"no links within {within_s} s:\n{''.join(self.output)}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            for url in LINK.findall(line):
                found[urlsplit(url).path.strip("/")].append(url)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def fleet_moves(port: int, operator_token: str, within_s: float) -> set[str]:
    """Technicians whose position changed between fleet updates on the operator socket."""
    seen: dict[str, tuple[float, float]] = {}
    moved: set[str] = set()
    deadline = time.monotonic() + within_s
    with connect(f"ws://127.0.0.1:{port}/v1/ws/ops?token={operator_token}") as ws:
        while len(moved) < 2 and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            entries = message.get("positions") if message["type"] == "fleet" else None
            if message["type"] == "snapshot":
                entries = message.get("fleet")
            for entry in entries or []:
                if entry.get("lat") is None:
                    continue
                where = (entry["lat"], entry["lon"])
                before = seen.setdefault(entry["technician_id"], where)
                if before != where:
                    moved.add(entry["technician_id"])
    return moved


def test_demo_prints_links_within_seconds_and_technicians_move(tmp_path):
    port = free_port()
    started = time.monotonic()
    demo = Demo.start("--port", str(port), "--duration", "15", "--technicians", "3", cwd=tmp_path)
    try:
        links = demo.links(within_s=10)
        assert time.monotonic() - started < 10
        assert len(links["track"]) == 3 and len(links["console"]) == 1
        assert all(f"127.0.0.1:{port}" in url for urls in links.values() for url in urls)

        moved = fleet_moves(port, token_of(links["console"][0]), within_s=8)
        assert len(moved) >= 2, f"fleet positions did not move: {moved}"

        for url in (links["track"][0], links["console"][0], links["tech"][0]):
            page = httpx.get(url, timeout=5)
            assert page.status_code == 200 and "<html" in page.text.lower()
        booking = parse_qs(urlsplit(links["track"][0]).query)["booking"][0]
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/bookings/{booking}",
            headers={"Authorization": f"Bearer {token_of(links['track'][0])}"},
        )
        assert answer.json()["status"] in ("en_route", "arriving", "arrived")

        assert demo.process.wait(timeout=20) == 0  # --duration 15 ends it by itself
        output = "".join(demo.output)
        assert "demo stopped: 3 technicians" in output and "Traceback" not in output
        assert not any(tmp_path.iterdir()), "the demo left files in the working directory"
    finally:
        demo.stop()


def test_ctrl_c_stops_the_demo_cleanly(tmp_path):
    demo = Demo.start("--port", "0", "--duration", "120", "--technicians", "2", cwd=tmp_path)
    try:
        demo.links(within_s=10)
        time.sleep(1.0)
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(timeout=10) == 0
        output = "".join(demo.output)
        assert "demo stopped: 2 technicians" in output and "Traceback" not in output
    finally:
        demo.stop()


def test_a_taken_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*DOORSTEP, "demo", "--port", str(port), "--duration", "5"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
