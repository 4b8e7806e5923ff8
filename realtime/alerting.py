"""The alert desk: safety alerts stored, sent to operators, acknowledged.

Thin I/O around ``alerts/safety_alert.py``. Like incidents, an alert is written to the store
before any operator is told, goes out in the urgent lane of the operators' channel, and the
open ones are mirrored in memory so that an operator's ``snapshot`` lists them with no await
between the snapshot and the subscription. After a restart the open ones come back from the
store; an acknowledged one never leaves the store, with its audit trail. Raising and
acknowledging are read-modify-write under the store's lock for that alert, reading the store
(not the mirror), so two hubs sharing a Redis cannot both raise or both acknowledge one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from alerts.incident import AuditEntry
from alerts.safety_alert import AlertStatus, SafetyAlert, acknowledge
from realtime import protocol as wire
from realtime.backends.base import Bus, BusMessage, Store
from realtime.channels import OPS_CHANNEL
from realtime.cluster import LOCK_TTL_S, Entity
from realtime.metrics import Metrics
from realtime.ports import Announce, Clock

if TYPE_CHECKING:
    from realtime.auth import Principal


class AlertNotFound(Exception):
    pass


def alert_message(alert: SafetyAlert) -> wire.Alert:
    """The ``alert`` frame for a stored alert: the same fields, plus ``type``."""
    return msgspec.convert(alert, wire.Alert, from_attributes=True)


class AlertDesk:
    def __init__(
        self, *, store: Store, bus: Bus, announce: Announce, metrics: Metrics, clock: Clock
    ) -> None:
        self.store = store
        self.bus = bus
        self.announce = announce
        self.metrics = metrics
        self.clock = clock
        self._open: dict[str, SafetyAlert] = {}
        # The operator group an alert is for (its booking's city's); set by the hub.
        self.audience_of: Callable[[SafetyAlert], str | None] = lambda _alert: None

    async def load(self) -> None:
        """Read the open alerts (at start, and after a reconnect to a shared store)."""
        self._open = {alert.id: alert for alert in await self.store.open_alerts()}

    async def refresh(self, alert_id: str) -> None:
        """Another hub raised or acknowledged this alert: mirror what is stored."""
        alert = await self.store.get_alert(alert_id)
        if alert is not None and alert.status is AlertStatus.OPEN:
            self._open[alert_id] = alert
        else:
            self._open.pop(alert_id, None)

    def open_alerts(self) -> list[SafetyAlert]:
        return sorted(self._open.values(), key=lambda a: (a.t, a.id))

    async def get(self, alert_id: str) -> SafetyAlert | None:
        """The stored alert: the truth, which another hub may have changed a moment ago."""
        return await self.store.get_alert(alert_id)

    async def audit(self, alert_id: str) -> list[AuditEntry]:
        return await self.store.alert_audit(alert_id)

    async def raise_alert(self, alert: SafetyAlert, entry: AuditEntry) -> tuple[SafetyAlert, bool]:
        """Store a new alert, then tell operators; an id already stored is not raised again.

        Returns the stored alert and whether it is new. A store failure propagates: the
        caller retries (the watchdog on its next tick) or logs it (zoning).
        """
        async with self.store.lock(f"alert:{alert.id}", LOCK_TTL_S):
            existing = await self.store.get_alert(alert.id)
            if existing is not None:
                return existing, False
            await self.store.save_alert(alert, [entry])
            # No await from here to the publish: a console connecting now either has it in
            # its snapshot or gets the message (or both: same id, the console keeps one).
            self._open[alert.id] = alert
            await self._publish(alert)
        await self.announce(Entity.ALERT, alert.id)
        self.metrics.alerts.labels(kind=alert.kind.value).inc()
        return alert, True

    async def acknowledge(
        self, principal: Principal, alert_id: str, note: str | None = None
    ) -> SafetyAlert:
        """An operator has seen it; IllegalAlertTransition when someone already had."""
        async with self.store.lock(f"alert:{alert_id}", LOCK_TTL_S):
            # Read from the store, not the mirror: another hub may have just acknowledged it.
            alert = await self.store.get_alert(alert_id)
            if alert is None:
                raise AlertNotFound(f"alert {alert_id} does not exist")
            acked, entry = acknowledge(alert, t=self.clock(), actor=principal.actor, note=note)
            await self.store.save_alert(acked, [entry])
            self._open.pop(alert_id, None)
            await self._publish(acked)
        await self.announce(Entity.ALERT, alert_id)
        return acked

    async def _publish(self, alert: SafetyAlert) -> None:
        text = wire.encode(alert_message(alert))
        await self.bus.publish(
            OPS_CHANNEL,
            BusMessage(kind="alert", text=text, urgent=True, audience=self.audience_of(alert)),
        )
