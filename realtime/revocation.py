"""Tokens that end: revocation (by ``jti`` or by subject), and the open sockets it closes.

A token is checked once, when a socket opens; the socket then outlives that check. So every
open socket is registered here with its token's ``jti``, ``sub``, ``iat`` and ``exp``:

* a timer closes it with 4401 "token expired" when ``exp`` passes;
* a revocation closes every matching socket with 4401 "token revoked", on every hub: the
  hub that took the request writes it to the store (documents, both backends), applies it,
  and publishes it on the ``token-revocations`` bus channel; each hub applies what it hears.

Revocations only ever grow (a revoked jti stays revoked, a subject's "not before" only moves
forward), so a notice may carry the revocation itself: applying it twice, late or out of
order changes nothing. Pub/sub can lose notices while Redis is away: the list is re-read
from the store after the bus reconnects and every ``refresh_s`` regardless, and open sockets
are checked against it each time.

An entry is kept for ``MAX_TTL_S`` after it was made: by then every token it can match has
expired (no token lives longer), and it is purged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec

from realtime.aio import stop_tasks
from realtime.auth import MAX_TTL_S, AuthError, Principal
from realtime.backends.base import Bus, BusMessage, Store, Unsubscribe
from realtime.protocol import CloseCode


class Outbox(Protocol):
    """What revocation needs of a socket's outbox (``realtime/sockets/fanout.py``): to close
    it with a code and reason, and whether it is closing already."""

    @property
    def closing(self) -> bool: ...

    def close(self, code: CloseCode, reason: str) -> None: ...


log = logging.getLogger("doorstep.tokens")

CHANNEL = "token-revocations"
REVOKED_JTI = "revoked_jti"  # documents: jti -> Revocation
SUB_NOT_BEFORE = "sub_not_before"  # documents: sub -> Revocation (its t is the "not before")
EXPIRED = "token expired"
REVOKED = "token revoked"
REFRESH_S = 30.0


class Revocation(msgspec.Struct, frozen=True):
    """One revocation: of the token ``id`` (kind jti), or of every token of the subject
    ``id`` issued before ``t`` (kind sub). Kept until ``t + MAX_TTL_S``."""

    kind: Literal["jti", "sub"]
    id: str
    t: float


_decoder = msgspec.json.Decoder(Revocation)


@dataclass
class RevocationList:
    """Pure state: what is revoked, and whether a token is (no I/O, time passed in)."""

    jtis: dict[str, float] = field(default_factory=dict)  # jti -> revoked at
    not_before: dict[str, float] = field(default_factory=dict)  # sub -> not before

    def add(self, revocation: Revocation) -> None:
        """Merge one revocation; idempotent and order-free (the later "not before" wins)."""
        table = self.jtis if revocation.kind == "jti" else self.not_before
        table[revocation.id] = max(table.get(revocation.id, revocation.t), revocation.t)

    def revoked(self, principal: Principal) -> bool:
        if principal.jti is None:  # the platform API key is not a token
            return False
        if principal.jti in self.jtis:
            return True
        not_before = self.not_before.get(principal.sub)
        return not_before is not None and (principal.iat or 0.0) < not_before

    def purge(self, now: float) -> list[Revocation]:
        """Drop entries older than any token they could match; returns the dropped."""
        dropped = [
            Revocation(kind, key, t)
            for kind, table in (("jti", self.jtis), ("sub", self.not_before))
            for key, t in table.items()
            if t + MAX_TTL_S < now
        ]
        for entry in dropped:
            (self.jtis if entry.kind == "jti" else self.not_before).pop(entry.id, None)
        return dropped


@dataclass(eq=False)
class _Open:
    principal: Principal
    outbox: Outbox
    timer: asyncio.TimerHandle | None = None


class OpenSockets:
    """Open sockets by jti and by subject, each with its expiry timer."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        # Tokens' exp is checked against real time by PyJWT: the timer uses the same clock.
        self.wall = wall
        self._ids = itertools.count()
        self._all: dict[int, _Open] = {}
        self._by_jti: defaultdict[str, set[int]] = defaultdict(set)
        self._by_sub: defaultdict[str, set[int]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._all)

    def add(self, principal: Principal, outbox: Outbox) -> Unsubscribe:
        """Track a socket until the returned callable is called (its ``finally``)."""
        key = next(self._ids)
        entry = _Open(principal, outbox)
        if principal.exp is not None:
            delay = max(0.0, principal.exp - self.wall())
            entry.timer = asyncio.get_running_loop().call_later(
                delay, outbox.close, CloseCode.UNAUTHORIZED, EXPIRED
            )
        self._all[key] = entry
        if principal.jti is not None:
            self._by_jti[principal.jti].add(key)
        self._by_sub[principal.sub].add(key)

        def remove() -> None:
            gone = self._all.pop(key, None)
            if gone is None:
                return
            if gone.timer is not None:
                gone.timer.cancel()
            for index, name in ((self._by_jti, principal.jti), (self._by_sub, principal.sub)):
                if name is not None:
                    index[name].discard(key)
                    if not index[name]:
                        del index[name]

        return remove

    def close_revoked(self, revocations: RevocationList, only: Revocation | None = None) -> int:
        """Close (4401 "token revoked") the sockets whose token is revoked; how many.

        With ``only``, look just at the sockets that one revocation can match.
        """
        if only is None:
            keys: set[int] = set(self._all)
        elif only.kind == "jti":
            keys = set(self._by_jti.get(only.id, ()))
        else:
            keys = set(self._by_sub.get(only.id, ()))
        closed = 0
        for key in keys:
            entry = self._all.get(key)
            if (
                entry is not None
                and not entry.outbox.closing
                and revocations.revoked(entry.principal)
            ):
                entry.outbox.close(CloseCode.UNAUTHORIZED, REVOKED)
                closed += 1
        return closed


class TokenGuard:
    """Revocations of this deployment (shared through the store and the bus) and the open
    sockets of this hub they apply to."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Callable[[], float] = time.time,
        *,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.refresh_s = refresh_s
        self.revocations = RevocationList()
        self.sockets = OpenSockets()
        self._unsubscribe: Unsubscribe | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # Subscribed before the first read: a revocation made meanwhile is heard or read.
        self._unsubscribe = self.bus.subscribe(CHANNEL, self._received)
        await self.bus.wait_synced()
        self.bus.on_resync(self.reload)
        await self.reload()
        self._task = asyncio.create_task(self._refresh_forever(), name="doorstep-revocations")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        await stop_tasks([self._task])

    # ------------------------------------------------------------------ checks

    def check(self, principal: Principal) -> None:
        """Raise AuthError("token revoked") for a revoked token (in memory, no I/O)."""
        if self.revocations.revoked(principal):
            raise AuthError(REVOKED)

    def track(self, principal: Principal, outbox: Outbox) -> Unsubscribe:
        """Register an open socket; closes it at once if revoked since it authenticated (a
        revocation heard during the awaits between the check and this call)."""
        remove = self.sockets.add(principal, outbox)
        if self.revocations.revoked(principal):
            outbox.close(CloseCode.UNAUTHORIZED, REVOKED)
        return remove

    # ------------------------------------------------------------------ revoking

    async def revoke(self, kind: Literal["jti", "sub"], name: str) -> Revocation:
        """Store a revocation, apply it here, tell the other hubs. Stored first: once the
        caller hears "revoked", no hub started later can miss it."""
        revocation = Revocation(kind, name, self.clock())
        namespace = REVOKED_JTI if kind == "jti" else SUB_NOT_BEFORE
        existing = await self.store.get_document(namespace, name)
        if existing is not None:
            # A subject revoked again moves its "not before" forward, never back.
            old = _decoder.decode(existing)
            revocation = Revocation(kind, name, max(old.t, revocation.t))
        # Another hub may write the same key meanwhile: both values only move forward and
        # the later one wins at every hub's merge, so the race is harmless.
        await self.store.put_document(namespace, name, msgspec.json.encode(revocation))
        # The bus delivers to this hub's subscriber synchronously: applied and swept here.
        await self.bus.publish(
            CHANNEL, BusMessage(kind="revocation", text=msgspec.json.encode(revocation).decode())
        )
        return revocation

    def _received(self, message: BusMessage) -> None:
        try:
            revocation = _decoder.decode(message.text)
        except msgspec.DecodeError:
            log.warning("undecodable revocation notice dropped")
            return
        self._apply(revocation)

    def _apply(self, revocation: Revocation) -> None:
        self.revocations.add(revocation)
        closed = self.sockets.close_revoked(self.revocations, only=revocation)
        if closed:
            log.info("closed %d socket(s) of revoked %s %s", closed, revocation.kind, revocation.id)

    # ------------------------------------------------------------------ store

    async def reload(self) -> None:
        """Merge the store's revocations (what pub/sub may have lost), purge the outdated,
        close the open sockets they match."""
        fresh = RevocationList()
        for namespace in (REVOKED_JTI, SUB_NOT_BEFORE):
            documents = await self.store.list_documents(namespace)  # notices may land meanwhile
            for raw in documents.values():
                with contextlib.suppress(msgspec.DecodeError):
                    fresh.add(_decoder.decode(raw))
        for revocation in [
            *(Revocation("jti", k, t) for k, t in fresh.jtis.items()),
            *(Revocation("sub", k, t) for k, t in fresh.not_before.items()),
        ]:
            self.revocations.add(revocation)
        for entry in self.revocations.purge(self.clock()):
            namespace = REVOKED_JTI if entry.kind == "jti" else SUB_NOT_BEFORE
            await self.store.delete_document(namespace, entry.id)
        self.sockets.close_revoked(self.revocations)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.reload()
            except Exception:
                # The store may be away: the in-memory list still holds, retry next round.
                log.exception("re-reading token revocations failed")
