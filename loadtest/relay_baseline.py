"""The baseline for ingest benchmarks: a bare WebSocket relay on the same stack.

Starlette + uvicorn, no auth, no validation, no storage: each text frame a "technician"
sends on ``/tech/{n}`` is forwarded as-is to the watchers of ``/watch/{n}``. What the hub
adds on top of this (decode, validation, seq bookkeeping, batched SQLite history, fan-out
outboxes, metrics) is what the ratio measures.

    python -m loadtest.relay_baseline --port 8799
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

watchers: defaultdict[str, set[asyncio.Queue[str]]] = defaultdict(set)


async def tech(websocket: WebSocket) -> None:
    await websocket.accept()
    key = websocket.path_params["key"]
    try:
        while True:
            text = await websocket.receive_text()
            for queue in watchers[key]:
                queue.put_nowait(text)
    except WebSocketDisconnect:
        return


async def watch(websocket: WebSocket) -> None:
    await websocket.accept()
    key = websocket.path_params["key"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    watchers[key].add(queue)

    async def forward() -> None:
        while True:
            await websocket.send_text(await queue.get())

    # Forward until the watcher leaves: receive() is what notices the disconnect.
    sender = asyncio.create_task(forward())
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        sender.cancel()
        watchers[key].discard(queue)


app = Starlette(routes=[WebSocketRoute("/tech/{key}", tech), WebSocketRoute("/watch/{key}", watch)])


def main() -> None:
    parser = argparse.ArgumentParser(description="bare WebSocket relay (benchmark baseline)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )


if __name__ == "__main__":
    main()
