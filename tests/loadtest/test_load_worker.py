"""A generator process's pacing and dropout on fake sockets: every fix goes once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from loadtest.load import worker
from loadtest.load.config import Dropout, Slice
from realtime import protocol


class FakeSocket:
    """Keeps what is sent; its reader ends when it is closed."""

    def __init__(self, sent: list[str]) -> None:
        self.sent = sent
        self.closed = asyncio.Event()

    async def send(self, text: str) -> None:
        # A real send may yield (a slow write): the pacer must not overtake a batch meanwhile.
        await asyncio.sleep(0.06 if text.startswith('{"type":"batch"') else 0)
        self.sent.append(text)

    async def close(self) -> None:
        self.closed.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        await self.closed.wait()
        return
        yield ""


class Outbox:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self.items.append(item)


def _seqs(texts: list[str]) -> list[int]:
    seqs: list[int] = []
    for text in texts:
        message = protocol.decode_technician_frame(text)
        if isinstance(message, protocol.Batch):
            seqs += [p.seq for p in message.points]
        else:
            seqs.append(message.seq)
    return seqs


async def test_a_dropped_technician_resends_its_buffer_as_a_batch_before_live_fixes() -> None:
    part = Slice(technicians=[0], dropouts={0: Dropout(at_s=0.3, length_s=0.3)})
    plan = worker.WorkerPlan(
        index=0,
        kind="relay",
        ws_base="ws://unused",
        run_tag="t",
        rate_hz=20.0,
        seconds=1.0,
        total_technicians=1,
        part=part,
        creds=None,
        drain_s=0.1,
    )
    load = worker.Worker(plan, Outbox())
    sent: list[str] = []

    async def fake_open(role: str, n: int) -> Any:
        return FakeSocket(sent)

    load._open = fake_open  # type: ignore[method-assign]
    tech = load.techs[0]
    tech.ws, tech.online = FakeSocket(sent), True  # type: ignore[assignment]
    load.start = time.time()
    dropping = asyncio.create_task(load.drop(tech, 0.3, 0.3))
    await load.pace()
    await dropping
    await load.close()

    assert _seqs(sent) == list(range(1, 21))  # every fix once, in order
    batches = [t for t in sent if t.startswith('{"type":"batch"')]
    assert len(batches) >= 1
    assert len(tech.batched) >= 5  # about 0.3 s at 20 Hz
    assert load.result()["sent"] and sum(load.sent.values()) == 20
    assert load.failures == {}
