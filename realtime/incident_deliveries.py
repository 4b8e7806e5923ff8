"""Telling people outside the console about an escalated incident, and recording it.

The supervisor's webhook, each emergency contact's phones (FCM) and the contact bridge (SMS
and calls). Every attempt is recorded on the incident (a locked read-modify-write through
the safety desk) and a failure is shown to operators; a delivery already recorded for a
step is never sent again (a reclaimed work item finishes what a dead hub began).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from alerts import incident as core
from alerts.contacts import EmergencyContact
from alerts.escalation import EscalationStep
from alerts.incident import Delivery, Incident
from alerts.notify import DeliveryAttempt
from alerts.notify_payloads import contact_payload, push_for_incident, webhook_payload
from realtime.metrics import Metrics
from realtime.notifiers import Notifiers
from realtime.ports import Clock, ProfileView

log = logging.getLogger("doorstep.safety")

SYSTEM_ROLE = "system"  # the reporter role of incidents the hub raises itself

Update = Callable[[str, Callable[[Incident], Incident]], Awaitable[Incident | None]]
Broadcast = Callable[[Incident, str], Awaitable[None]]
ContactsOf = Callable[[str, str], Awaitable[list[EmergencyContact]]]


def person_of(incident: Incident) -> tuple[str, str]:
    """Whose emergency contacts an incident concerns: the reporter, or for an incident the
    hub raised itself, the technician it is about."""
    if incident.reporter.role == SYSTEM_ROLE and incident.technician_id:
        return "technician", incident.technician_id
    return incident.reporter.role, incident.reporter.sub


class Deliveries:
    def __init__(
        self,
        *,
        notifiers: Notifiers,
        contacts_of: ContactsOf,
        profiles: ProfileView,
        update: Update,
        broadcast: Broadcast,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.supervisor = notifiers.supervisor
        self.contact_bridge = notifiers.contact_bridge
        self.fcm = notifiers.fcm
        self.contacts_of = contacts_of
        self.profiles = profiles
        self._update = update
        self._broadcast = broadcast
        self.metrics = metrics
        self.clock = clock

    async def notify_supervisor(self, incident: Incident, step: EscalationStep, reason: str):
        if _delivered(incident, step, "webhook", "supervisor"):
            return
        if self.supervisor is None:
            await self._record(
                incident.id, step, "webhook", "unconfigured", [], "no supervisor webhook"
            )
            return
        payload = webhook_payload(
            incident=msgspec.to_builtins(incident),
            step=step.name,
            reason=reason,
            delivery_id=f"{incident.id}:{step.name}",
            t=self.clock(),
        )
        attempts = await self.supervisor.deliver(payload)
        await self._record(incident.id, step, "webhook", "supervisor", attempts)

    async def notify_contacts(self, incident: Incident, step: EscalationStep, reason: str):
        role, sub = person_of(incident)
        contacts = await self.contacts_of(role, sub)
        if not contacts:
            await self._record(
                incident.id, step, "contacts", "none", [], "the reporter has no emergency contacts"
            )
            return
        location = incident.location
        name = self.profiles.name_of(sub) if role == "technician" else None
        who = f"{name or sub} ({role})"
        message = push_for_incident(
            incident_id=incident.id,
            kind=incident.kind,
            who=who,
            lat=location.lat if location else None,
            lon=location.lon if location else None,
            step=step.name,
        )
        for index, contact in enumerate(contacts):
            for token in contact.fcm_tokens:
                if _delivered(incident, step, "fcm", f"{contact.name} {token}"):
                    continue
                if self.fcm is None:
                    await self._record(
                        incident.id, step, "fcm", contact.name, [], "FCM is not configured"
                    )
                    continue
                attempts = await self.fcm.send(token, message)
                await self._record(incident.id, step, "fcm", contact.name, attempts)
            if contact.phone and not _delivered(incident, step, "sms", contact.name):
                if self.contact_bridge is None:
                    await self._record(
                        incident.id, step, "sms", contact.name, [], "no contact webhook configured"
                    )
                    continue
                # What a caller needs (who, where, a map link), not the trail or the notes.
                payload = contact_payload(
                    incident=msgspec.to_builtins(incident),
                    who=who,
                    step=step.name,
                    reason=reason,
                    delivery_id=f"{incident.id}:{step.name}:{index}",
                    t=self.clock(),
                    contact={"name": contact.name, "phone": contact.phone},
                    text=message.body,
                )
                payload["message"] = {"title": message.title, "body": message.body}
                attempts = await self.contact_bridge.deliver(payload)
                await self._record(incident.id, step, "sms", contact.name, attempts)

    async def _record(
        self,
        incident_id: str,
        step: EscalationStep,
        channel: str,
        target: str,
        attempts: list[DeliveryAttempt],
        missing: str | None = None,
    ) -> None:
        """Put delivery attempts on the incident; tell operators when something failed."""
        if missing is not None:
            deliveries = [
                Delivery(
                    t=self.clock(),
                    channel=channel,
                    target=target,
                    step=step.name,
                    attempt=0,
                    ok=False,
                    error=missing,
                    dead_letter=True,
                )
            ]
        else:
            deliveries = [
                Delivery(
                    t=a.t,
                    channel=a.channel,
                    target=target if a.channel != "fcm" else f"{target} {a.target}",
                    step=step.name,
                    attempt=a.attempt,
                    ok=a.ok,
                    status=a.status,
                    error=a.error,
                    dead_letter=a.dead_letter,
                )
                for a in attempts
            ]

        def record(incident: Incident) -> Incident:
            for delivery in deliveries:
                incident = core.record_delivery(incident, delivery)
            return incident

        incident = await self._update(incident_id, record)
        if incident is None:
            return
        for delivery in deliveries:
            self.metrics.deliveries.labels(
                channel=delivery.channel, ok=str(delivery.ok).lower()
            ).inc()
        failed = [d for d in deliveries if d.dead_letter]
        if failed:
            log.warning("incident %s: %s delivery to %s failed", incident_id, channel, target)
        await self._broadcast(incident, "delivery failed" if failed else "delivered")


def _delivered(incident: Incident, step: EscalationStep, channel: str, target: str) -> bool:
    """Whether a delivery of this step to this target is already recorded (a reclaimed work
    item finishes what a dead hub began and must not send it again)."""
    return any(
        d.step == step.name and d.channel == channel and d.target == target
        for d in incident.deliveries
    )
