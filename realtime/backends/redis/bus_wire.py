"""What the bus puts on Redis and how it reads the answer: the envelope of a message, one
pipelined send of a batch, and which durable messages Redis refused."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import redis.asyncio as aioredis

from realtime.backends.base import BusMessage
from realtime.backends.redis.client import COMMAND_TIMEOUT_S

# (Redis channel or durable stream key, encoded envelope), in the order published.
Outgoing = list[tuple[str, bytes]]


class Envelope(msgspec.Struct, array_like=True):
    """What travels on a Redis channel: the message and which bus sent it."""

    origin: str
    message: BusMessage


envelope_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(origin: str, message: BusMessage) -> bytes:
    return msgspec.msgpack.encode(Envelope(origin, message))


async def send_batch(
    client: aioredis.Redis, live: Outgoing, durable: Outgoing, *, durable_maxlen: int
) -> list[Any]:
    """PUBLISH the live messages, XADD the durable ones: one pipelined round trip, whose
    error replies come back in the results (in that order), not raised.

    Not a transaction: under OOM, Redis refuses the XADDs but still takes the PUBLISHes, so
    live positions keep flowing while durable messages wait.
    """
    async with asyncio.timeout(COMMAND_TIMEOUT_S), client.pipeline(transaction=False) as pipe:
        for channel, data in live:
            pipe.publish(channel, data)
        for key, data in durable:
            pipe.xadd(key, {"m": data}, maxlen=durable_maxlen, approximate=True)
        return await pipe.execute(raise_on_error=False)


class DurableSendRefused(Exception):
    """Redis answered durable publishes with an error (OOM, READONLY): they are kept."""

    def __init__(self, count: int, error: Exception) -> None:
        super().__init__(f"Redis refused {count} durable messages: {error}")
        self.count = count
        self.error = error


def refused_durable(results: list[Any], durable: Outgoing) -> Outgoing:
    """The durable messages whose XADD got an error reply, in order."""
    return [
        item for item, result in zip(durable, results, strict=True) if isinstance(result, Exception)
    ]
