"""Fixtures of the notifier tests: a local HTTP receiver and FCM notifiers pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from alerts.notify_fcm import FcmNotifier, fixed_token_credentials
from tests.alerts.notify_helpers import PROJECT, Receiver, RecordingSleep
from tests.conftest import local_server


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = Starlette(routes=[Route("/{path:path}", fake.handle, methods=["POST"])])
    async with local_server(app) as fake.port:
        yield fake
        fake.release.set()  # let hanging requests finish so the server can stop


@pytest.fixture
async def make_fcm(receiver: Receiver) -> AsyncIterator[Callable[..., FcmNotifier]]:
    made: list[FcmNotifier] = []

    def factory(**overrides: Any) -> FcmNotifier:
        options: dict[str, Any] = {
            "project_id": PROJECT,
            "credentials": fixed_token_credentials("test-token"),
            "endpoint_base": receiver.url("/v1/projects"),
            "timeout_s": 2.0,
            "sleep": RecordingSleep(),
        }
        options.update(overrides)
        notifier = FcmNotifier(**options)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        await notifier.aclose()
