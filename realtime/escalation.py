"""Escalation steps as durable work, done once among several hubs.

When a step of an open incident is due (``alerts/escalation.py`` decides, pure) it is put
on the store's durable ``safety`` work queue under the key ``<incident>:<step>``, which
admits it once whichever hubs see it due. The queue hands each item to one hub (a Redis
Streams consumer group); that hub marks the step on the stored incident under its lock (so
an operator's acknowledgement made on another hub a moment before wins), sends the
notifications (``realtime/incident_deliveries.py``) and only then acknowledges the item. A
hub that dies mid-step leaves the item pending; another hub reclaims it after
``work_reclaim_idle_s`` and finishes it, skipping the deliveries already recorded.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from alerts.escalation import EscalationPolicy, EscalationStep, due_steps, mark_escalated
from alerts.incident import Incident
from realtime.aio import stop_tasks
from realtime.backends.base import Store, WorkItem
from realtime.incident_deliveries import Deliveries
from realtime.metrics import Metrics
from realtime.ports import Clock

log = logging.getLogger("doorstep.safety")

SAFETY_QUEUE = "safety"

Update = Callable[[str, Callable[[Incident], Incident]], Awaitable[Incident | None]]
Broadcast = Callable[[Incident, str], Awaitable[None]]


class StepWork(msgspec.Struct, frozen=True):
    """A work item: fire this escalation step of this incident."""

    incident_id: str
    step: str


_step_work_decoder = msgspec.json.Decoder(StepWork)


class Escalation:
    def __init__(
        self,
        *,
        policy: EscalationPolicy,
        reclaim_idle_s: float,
        hub_id: str,
        store: Store,
        update: Update,
        broadcast: Broadcast,
        deliveries: Deliveries,
        metrics: Metrics,
        clock: Clock,
        policy_for: Callable[[Incident], EscalationPolicy] | None = None,
    ) -> None:
        self.policy = policy
        # The steps' names are the same in every policy; their times are the city's.
        self.steps = {step.name: step for step in policy.steps}
        self.policy_for = policy_for or (lambda _incident: policy)
        self.reclaim_idle_s = reclaim_idle_s
        self.hub_id = hub_id
        self.store = store
        self._update = update
        self._broadcast = broadcast
        self.deliveries = deliveries
        self.metrics = metrics
        self.clock = clock
        self._enqueued: set[tuple[str, str]] = set()  # (incident, step) put on the queue
        self._working: set[str] = set()  # work item ids this hub is doing now
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await stop_tasks(self._tasks)

    async def tick(self, open_incidents: Iterable[Incident]) -> None:
        """Queue what is due among the open incidents, then take work (this hub's or a dead
        hub's)."""
        await self._enqueue_due(list(open_incidents))
        await self._take_work()

    async def _enqueue_due(self, open_incidents: list[Incident]) -> None:
        """Put every due step of the mirrored open incidents on the work queue, once."""
        now = self.clock()
        for incident in open_incidents:
            for step in due_steps(incident, self.policy_for(incident), now):
                if (incident.id, step.name) in self._enqueued:
                    continue
                work = StepWork(incident_id=incident.id, step=step.name)
                await self.store.enqueue_work(
                    SAFETY_QUEUE, f"{incident.id}:{step.name}", msgspec.json.encode(work)
                )
                self._enqueued.add((incident.id, step.name))
        # Forget the steps of incidents that are no longer open (the set stays small).
        open_ids = {incident.id for incident in open_incidents}
        self._enqueued = {entry for entry in self._enqueued if entry[0] in open_ids}

    async def _take_work(self) -> None:
        items = await self.store.claim_work(
            SAFETY_QUEUE,
            self.hub_id,
            count=16,
            now=self.clock(),
            reclaim_idle_s=self.reclaim_idle_s,
        )
        for item in items:
            if item.id not in self._working:
                self._working.add(item.id)
                self._spawn(self._work(item))

    async def _work(self, item: WorkItem) -> None:
        """Do one step; acknowledge the item only when it is done (else it is reclaimed).

        The claim is kept alive while the step works: its deliveries (a webhook with its
        retries takes up to ~33 s) may outlast ``work_reclaim_idle_s``, and another hub
        must not take over a live step and notify the contacts a second time.
        """
        keeper = asyncio.create_task(self._keep_claim(item.id), name=f"keep-{item.id}")
        try:
            await self._do_work(item)
        finally:
            await stop_tasks([keeper])

    async def _keep_claim(self, item_id: str) -> None:
        interval = keepalive_interval(self.reclaim_idle_s)
        while True:
            await asyncio.sleep(interval)
            try:
                # The step's deliveries go on meanwhile; only the claim's idle time changes.
                kept = await self.store.keep_work(SAFETY_QUEUE, self.hub_id, item_id, self.clock())
            except Exception as exc:
                # A store blink: the next keep (well before the reclaim time) tries again.
                log.warning("keeping safety work item %s failed (%s)", item_id, exc)
                continue
            if not kept:
                log.warning("safety work item %s was taken over by another hub", item_id)
                return

    async def _do_work(self, item: WorkItem) -> None:
        try:
            try:
                work = _step_work_decoder.decode(item.payload)
            except msgspec.DecodeError:
                log.error("unreadable safety work item %s dropped", item.id)
            else:
                step = self.steps.get(work.step)
                if step is None:
                    log.error("work item %s: no escalation step %r", item.id, work.step)
                else:
                    await self._escalate(work.incident_id, step)
            await self.store.ack_work(SAFETY_QUEUE, item.id)
        except Exception:
            log.exception("safety work item %s failed; it will be retried", item.id)
        finally:
            self._working.discard(item.id)

    async def _escalate(self, incident_id: str, named: EscalationStep) -> None:
        fired: list[bool] = []
        step = named

        def mark(incident: Incident) -> Incident:
            nonlocal step
            if named.name in incident.escalations:
                return incident  # marked before: a reclaimed item finishing a dead hub's work
            # This incident's own step (its city's timer) of that name.
            policy = self.policy_for(incident)
            step = next((s for s in policy.steps if s.name == named.name), named)
            # Re-checked on the stored incident: an operator may have acknowledged it. Not
            # the time: a hub found it due, and this hub's clock may be a little behind.
            if step not in due_steps(incident, policy, math.inf):
                return incident
            fired.append(True)
            return mark_escalated(incident, step, self.clock(), by=self.hub_id)

        updated = await self._update(incident_id, mark)
        if updated is None or step.name not in updated.escalations:
            return  # acknowledged (or closed) before the step was due: nothing to send
        if fired:
            self.metrics.escalations.labels(step=step.name).inc()
        reason = f"escalation {step.name}: not acknowledged within {step.after_s:g} s"
        if step.action == "realert_operators":
            await self._broadcast(updated, reason)
        elif step.action == "notify_supervisor":
            await self.deliveries.notify_supervisor(updated, step, reason)
        elif step.action == "notify_contacts":
            await self.deliveries.notify_contacts(updated, step, reason)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def keepalive_interval(reclaim_idle_s: float) -> float:
    """How often a working hub keeps its claim: three times per reclaim time, so that two
    missed keeps (a store blink) still leave the claim alive."""
    return reclaim_idle_s / 3


__all__ = ["SAFETY_QUEUE", "Escalation", "StepWork", "keepalive_interval"]
