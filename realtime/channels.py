"""Bus channel names, in a module of their own so every part of the hub can import them."""

from __future__ import annotations

FLEET_CHANNEL = "fleet"


def booking_channel(booking_id: str) -> str:
    return f"booking:{booking_id}"


def technician_channel(technician_id: str) -> str:
    return f"technician:{technician_id}"
