"""No secrets in logs (issue 11, item 5): a hub that logs everything (uvicorn at info: the
access log and the WebSocket upgrade log) serves every page and socket with ``?token=`` and
with a header, refuses bad tokens and logs errors holding secrets; no token, platform key,
signing key or webhook secret is in what it printed.

Two ways of running it: in this process with the fixtures' uvicorn (which installs the same
redaction as ``doorstep serve``), capturing both the process's stderr/stdout and every
record through a handler of our own; and as a real ``doorstep serve`` process, reading its
output file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.backends.redis import delete_all
from realtime.logsafety import REDACTED, REDACTOR
from tests.conftest import PLATFORM_KEY, SECRET, TEST_REDIS_URL, hand_made_token
from tests.hub_process import HubProcess

pytestmark = pytest.mark.asyncio

WEBHOOK_SECRET = "webhook-secret-never-logged-0123456789"
OTHER_KEY = "other-signing-key-never-logged-0123456789"


class Capture(logging.Handler):
    """Every record that reaches any logger, formatted as a handler would (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def first_message(url: str, **options: Any) -> None:
    """Open a socket, read its first message or its close (a refused token)."""
    async with connect(url, **options) as client:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)


async def exercise(http_base: str, ws_base: str, tokens: dict[str, str], booking: str) -> None:
    """Every page and socket, the token in the URL and in a header; then bad tokens."""
    async with httpx.AsyncClient(base_url=http_base, timeout=10) as http:
        for path in (
            f"/track?booking={booking}&token={tokens['customer']}",
            f"/console?token={tokens['operator']}",
            f"/tech?token={tokens['technician']}",
        ):
            assert (await http.get(path)).status_code == 200, path
        # Failing requests: a bad token, a wrong key, a token where a key is wanted.
        for credential in (tokens["forged"], "not-" + PLATFORM_KEY, tokens["operator"]):
            response = await http.post(
                "/v1/bookings", json={}, headers={"Authorization": f"Bearer {credential}"}
            )
            assert response.status_code in (401, 403)
        response = await http.get(f"/v1/bookings/{booking}?token={tokens['customer']}")
        assert response.status_code == 401
    sockets = {
        "/v1/ws/technician": tokens["technician"],
        f"/v1/ws/bookings/{booking}": tokens["customer"],
        "/v1/ws/ops": tokens["operator"],
    }
    for path, token in sockets.items():
        for token_here in (token, tokens["forged"]):
            await first_message(f"{ws_base}{path}?token={token_here}")
            headers = {"Authorization": f"Bearer {token_here}"}
            await first_message(f"{ws_base}{path}", additional_headers=headers)


def assert_clean(text: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        assert value not in text, f"the {name} is in the logs"
        if value.count(".") == 2:  # a JWT: none of its signature either
            assert value.rsplit(".", 1)[1] not in text, f"the {name}'s signature is in the logs"


async def test_the_hub_logs_no_token_key_or_secret(hub_factory, capfd):
    capture = Capture()
    watched = [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.access"))]
    for logger in watched:
        logger.addHandler(capture)
    try:
        hub = await hub_factory(log_level="info", webhook_secret=WEBHOOK_SECRET)
        await hub.create_booking(id="b-log", customer_id="cust-l", technician_id="tech-l")
        tokens = {
            "customer": await hub.token("customer", "cust-l", "b-log"),
            "operator": await hub.token("operator", "op-l"),
            "technician": await hub.token("technician", "tech-l"),
            "forged": hand_made_token({"role": "operator", "sub": "op-l"}, OTHER_KEY),
        }
        await exercise(hub.http, hub.ws, tokens, "b-log")
        # Errors the hub's own code might log with a secret inside, and a traceback.
        log = logging.getLogger("doorstep.test")
        log.warning("calling with %s and %s", PLATFORM_KEY, WEBHOOK_SECRET)
        log.error("upstream said Authorization: Bearer %s", tokens["technician"])
        try:
            raise RuntimeError(f"refused /v1/ws/ops?token={tokens['operator']}")
        except RuntimeError:
            log.exception("a failure with the token in its message")
        log.info("?token=%s", "opaque-value-not-a-jwt")
        await asyncio.sleep(0.2)  # the access log of the last request
    finally:
        for logger in watched:
            logger.removeHandler(capture)
    printed = capfd.readouterr()
    text = "\n".join([*capture.lines, printed.out, printed.err])
    # Something was logged at all, and redacted where the token was.
    assert '"GET /console?token=[redacted] HTTP/1.1" 200' in text, text[-2000:]
    assert '"WebSocket /v1/ws/ops?token=[redacted]" [accepted]' in text, text[-2000:]
    assert "opaque-value-not-a-jwt" not in text
    assert_clean(
        text,
        {
            **{f"{name} token": token for name, token in tokens.items()},
            "platform key": PLATFORM_KEY,
            "signing key": SECRET,
            "webhook secret": WEBHOOK_SECRET,
        },
    )


async def test_the_redactor_leaves_ordinary_logs_alone():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s - %s %d", ("a", "b", 3), None)
    REDACTOR.record(record)
    assert record.getMessage() == "a - b 3" and record.args == ("a", "b", 3)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "p=%s", ("?token=abc&x=1",), None)
    REDACTOR.record(record)
    assert record.getMessage() == f"p=?token={REDACTED}&x=1"


async def test_doorstep_serve_logs_no_token_key_or_secret(tmp_path: Path):
    """The production entry point itself: ``doorstep serve --log-level info``."""
    prefix = f"doorstep-test-logs-{uuid.uuid4().hex[:10]}"
    process = HubProcess(
        "logs", tmp_path / "logs", TEST_REDIS_URL, prefix, webhook_secret=WEBHOOK_SECRET
    )
    process.log_level = "info"
    try:
        await process.start()
        async with process.client() as http:
            body: dict[str, Any] = {"id": "b-log", "customer_id": "c", "technician_id": "t"}
            body["destination"] = {"lat": 52.5, "lon": 13.4}
            assert (await http.post("/v1/bookings", json=body)).status_code == 201
        tokens = {
            "customer": await process.token("customer", "c", "b-log"),
            "operator": await process.token("operator", "o"),
            "technician": await process.token("technician", "t"),
            "forged": hand_made_token({"role": "operator", "sub": "o"}, OTHER_KEY),
        }
        await exercise(process.http, process.ws, tokens, "b-log")
        await asyncio.sleep(0.3)
    finally:
        await process.stop()
        await delete_all(TEST_REDIS_URL, prefix)
    text = process.log_path.read_text(errors="replace")
    assert '"WebSocket /v1/ws/technician?token=[redacted]" [accepted]' in text, text[-2000:]
    assert_clean(
        text,
        {
            **{f"{name} token": token for name, token in tokens.items()},
            "platform key": PLATFORM_KEY,
            "signing key": SECRET,
            "webhook secret": WEBHOOK_SECRET,
        },
    )
