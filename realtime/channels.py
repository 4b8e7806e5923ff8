"""Bus channel names, in a module of their own so every part of the hub can import them."""

from __future__ import annotations

FLEET_CHANNEL = "fleet"
# Incidents, alerts and incident locations for operators' consoles.
OPS_CHANNEL = "ops"
# Channels whose messages must reach every hub even across a reconnect: on Redis they travel
# in a stream each hub reads from where it left off, not over pub/sub (at most once).
DURABLE_CHANNELS = frozenset({OPS_CHANNEL})


def booking_channel(booking_id: str) -> str:
    return f"booking:{booking_id}"


def technician_channel(technician_id: str) -> str:
    return f"technician:{technician_id}"
