"""Schemathesis against a live hub: every operation of /openapi.json, a bounded number of
generated requests each, with a valid credential of a role the operation admits (the
platform key, an operator, a technician, the customer of a booking, in turn).

Checks: no 5xx, every status documented, the content type and the body as documented. The
hub runs in a thread of its own (uvicorn in its own event loop) because schemathesis calls
it synchronously.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from realtime.app import create_app  # noqa: E402
from realtime.auth import Role  # noqa: E402
from realtime.http.openapi import OPERATIONS, openapi_document  # noqa: E402
from tests.conftest import PLATFORM_KEY, RunningHub, make_settings  # noqa: E402

# Per operation: enough to reach its refusals and an answer or two, and the whole run stays
# well under a minute on a loaded 2-core machine.
MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOOKING = "b-st"
TECHNICIAN = "tech-st"


class ThreadedHub:
    """A RunningHub on an event loop in a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running = RunningHub(make_settings(data_dir))

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def __enter__(self) -> ThreadedHub:
        self.thread.start()
        self.run(self.running.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.running.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class World:
    """The live hub, one credential per role, and whose turn it is per operation."""

    def __init__(self, hub: ThreadedHub) -> None:
        self.hub = hub
        running = hub.running
        hub.run(running.create_booking(id=BOOKING, customer_id="cust-st", technician_id=TECHNICIAN))
        self.tokens: dict[Role, str] = {
            Role.PLATFORM: PLATFORM_KEY,
            Role.OPERATOR: hub.run(running.token("operator", "op-st", ttl=3600)),
            Role.TECHNICIAN: hub.run(running.token("technician", TECHNICIAN, ttl=3600)),
            Role.CUSTOMER: hub.run(running.token("customer", "cust-st", BOOKING, ttl=3600)),
        }
        self.turns: dict[tuple[str, str], itertools.cycle[Role]] = {}

    def headers(self, method: str, path: str) -> dict[str, str]:
        operation = OPERATIONS[(method, path)]
        if operation.credential == "none":
            return {}
        if operation.credential == "key":
            return {"Authorization": f"Bearer {PLATFORM_KEY}"}
        turn = self.turns.setdefault(
            (method, path), itertools.cycle(sorted(operation.roles, key=lambda r: r.value))
        )
        return {"Authorization": f"Bearer {self.tokens[next(turn)]}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ThreadedHub(tmp_path_factory.mktemp("schemathesis")) as hub:
        yield World(hub)


def _document() -> dict[str, Any]:
    """The document a hub serves (tests/realtime/test_openapi.py checks it is the served one),
    built at collection time so that each operation is a test of its own."""
    with tempfile.TemporaryDirectory() as data_dir:
        return openapi_document(create_app(make_settings(Path(data_dir))).routes)


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_answer_matches_the_document(case: Any, world: World) -> None:
    method = case.operation.method.upper()
    headers = world.headers(method, case.path)
    if case.method.upper() != method:
        # Schemathesis also tries methods the route does not have: a JSON 405, never a 5xx.
        response = case.call(base_url=world.hub.running.http, headers=headers, timeout=10)
        assert response.status_code == 405, response.text
        assert response.json()["code"] == "method_not_allowed"
        return
    case.call_and_validate(
        base_url=world.hub.running.http, headers=headers, checks=CHECKS, timeout=10
    )
