"""Shared by the notifier tests: a real HTTP receiver on 127.0.0.1 that records requests and
fails on demand, a recording sleep, and sample messages."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerts.notify_payloads import PushMessage, push_for_incident, webhook_payload

SECRET = b"webhook-secret-for-tests"
PROJECT = "doorstep-test"
FCM_TOKEN = "fcm-registration-token-" + "x" * 120 + "abc123"

# --- the local receiver -----------------------------------------------------------------

# A reply the receiver gives: a status, a status with extra headers, or "hang" (never answers
# until the test ends).
Reply = int | tuple[int, dict[str, str]] | str

FCM_UNREGISTERED = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
        "details": [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
        ],
    }
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers from ``script`` first, then ``default``."""

    port: int = 0
    script: list[Reply] = field(default_factory=list)
    default: Reply = 200
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        reply = self.script.pop(0) if self.script else self.default
        if reply == "hang":
            await self.release.wait()  # set at teardown, so the server can shut down
            return Response(status_code=200)
        status, headers = reply if isinstance(reply, tuple) else (reply, {})
        assert isinstance(status, int)
        if status == 200:
            return JSONResponse({"name": f"projects/{PROJECT}/messages/0:1"}, headers=headers)
        if status == 404:
            return JSONResponse(FCM_UNREGISTERED, status_code=404, headers=headers)
        error = {"error": {"code": status, "message": f"failing with {status} on purpose"}}
        return JSONResponse(error, status_code=status, headers=headers)


class RecordingSleep:
    """Stands in for asyncio.sleep: records the backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sos_message() -> PushMessage:
    return push_for_incident(
        incident_id="inc-42", kind="technician", who="Anna", lat=52.52, lon=13.405, step="contacts"
    )


def sample_payload() -> dict[str, Any]:
    incident = {"id": "inc-42", "status": "open", "lat": 52.52, "lon": 13.405}
    return webhook_payload(
        incident=incident, step="contacts", reason="no_ack", delivery_id="dlv-1", t=1000.0
    )
