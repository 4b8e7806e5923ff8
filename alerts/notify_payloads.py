"""What the notifiers send, built without I/O: map links, signatures, push and webhook bodies.

Plain functions with time passed in, tested without sockets. The webhook's signature is a
Stripe-style HMAC header, so a receiver can check it (``verify_signature``) and refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "X-Doorstep-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WEBHOOK_EVENT_TYPE = "doorstep.incident.escalation"

# High priority wakes an Android phone in Doze and makes APNs deliver immediately: an SOS
# must not wait for the next maintenance window.
_ANDROID_CONFIG = {"priority": "high"}
_APNS_CONFIG = {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}}


@dataclass(frozen=True)
class PushMessage:
    """A push notification; ``data`` values are strings because FCM accepts nothing else."""

    title: str
    body: str
    data: dict[str, str]


def _valid_point(lat: float | None, lon: float | None) -> bool:
    if lat is None or lon is None:
        return False
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def map_link(lat: float, lon: float) -> str:
    """An OpenStreetMap link with a marker: opens in any browser, no app or API key needed.

    Six decimals is about 0.1 m, finer than any phone fix; more digits only lengthen SMS.
    """
    if not _valid_point(lat, lon):
        raise ValueError(f"not a WGS84 position: lat={lat!r}, lon={lon!r}")
    la, lo = f"{lat:.6f}", f"{lon:.6f}"
    return f"https://www.openstreetmap.org/?mlat={la}&mlon={lo}#map=18/{la}/{lo}"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over ``"{timestamp}." + body``.

    The timestamp is inside the MAC so a receiver can refuse an old request replayed with
    its original, valid signature.
    """
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Doorstep-Signature`` value: ``t={timestamp},v1={hex}``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def _parse_signature_header(header: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify_signature(
    secret: bytes, header: str, body: bytes, now: float, tolerance_s: float = 300
) -> bool:
    """Check a signature header the way a receiver should.

    Several ``v1`` entries are accepted (any one may match) so that a sender can sign with
    an old and a new secret while the secret is rotated. Comparison is constant-time.
    """
    parsed = _parse_signature_header(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def push_for_incident(
    *,
    incident_id: str,
    kind: str,
    who: str,
    lat: float | None,
    lon: float | None,
    step: str,
) -> PushMessage:
    """The push an emergency contact receives, written for a person, not an operator.

    ``kind`` is the reporter's role ("technician" or "customer"), ``who`` their display name,
    ``step`` the escalation step that sent it. Without a valid position the location keys are
    left out of ``data`` rather than sent empty, so the app cannot mistake "" for a place.
    """
    name = who.strip() or "someone"
    title = f"SOS from {name} ({kind})" if kind else f"SOS from {name}"
    data = {"type": "doorstep.sos", "incident_id": incident_id, "kind": kind, "step": step}
    if lat is not None and lon is not None and _valid_point(lat, lon):
        url = map_link(lat, lon)
        data.update(map_url=url, lat=f"{lat:.6f}", lon=f"{lon:.6f}")
        body = f"{name} pressed SOS and may need help. Location: {url}"
    else:
        body = f"{name} pressed SOS and may need help. Their location is not known yet."
    return PushMessage(title=title, body=body, data=data)


def push_idempotency_key(message: PushMessage, token: str) -> str:
    """A stable key for one push of one escalation step to one device: the same on every
    retry and on a hub that takes the step over, so the device (and FCM's collapsing) shows
    it once. Derived from incident + step + target; 32 hex characters, within APNs's 64-byte
    ``apns-collapse-id`` limit, and revealing neither the token nor the incident."""
    parts = (message.data.get("incident_id", ""), message.data.get("step", ""), token)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def push_configs(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """FCM v1 ``android`` and ``apns`` blocks carrying the idempotency key: Android's
    ``collapse_key`` and APNs's ``apns-collapse-id`` replace an undelivered or shown copy of
    the same push instead of adding a second one."""
    android = {**_ANDROID_CONFIG, "collapse_key": key}
    apns = {
        **_APNS_CONFIG,
        "headers": {**_APNS_CONFIG["headers"], "apns-collapse-id": key},
    }
    return android, apns


def _incident_point(incident: Mapping[str, Any]) -> tuple[float, float] | None:
    """The incident's position: top-level ``lat``/``lon`` or a nested ``location`` object."""
    source: Any = incident
    if incident.get("lat") is None and isinstance(incident.get("location"), Mapping):
        source = incident["location"]
    lat, lon = source.get("lat"), source.get("lon")
    if not (isinstance(lat, int | float) and isinstance(lon, int | float)):
        return None
    return (float(lat), float(lon)) if _valid_point(lat, lon) else None


def webhook_payload(
    *,
    incident: Mapping[str, Any],
    step: str,
    reason: str,
    delivery_id: str,
    t: float,
    text: str | None = None,
) -> dict[str, Any]:
    """The webhook body. ``delivery_id`` doubles as the Idempotency-Key, so a gateway that
    sees a retry of a request it already handled does not call or text the contact twice.

    ``text`` (for example ``push_for_incident(...).body``) is a ready-made sentence an SMS or
    voice bridge can forward as is; ``map_url`` is present when the incident has a position.
    """
    body: dict[str, Any] = {
        "type": WEBHOOK_EVENT_TYPE,
        "step": step,
        "reason": reason,
        "delivery_id": delivery_id,
        "t": t,
        "incident": dict(incident),
    }
    point = _incident_point(incident)
    if point is not None:
        body["map_url"] = map_link(*point)
    if text:
        body["text"] = text
    return body


def contact_payload(
    *,
    incident: Mapping[str, Any],
    who: str,
    step: str,
    reason: str,
    delivery_id: str,
    t: float,
    contact: Mapping[str, Any],
    text: str | None = None,
) -> dict[str, Any]:
    """The body for the SMS/voice bridge: what a person calling or texting a contact needs.

    Who (``who``, the reporter's display name, and their role), where (the incident's
    location, its time and source, and a map link), which incident (id, kind, when raised)
    and the contact to reach. Never the trail, the operators' notes, the audit trail or the
    delivery records: the bridge is a third party, and a contact needs a place, not a
    person's movements (docs/privacy.md). The supervisor webhook (staff) gets the whole
    incident through ``webhook_payload``.
    """
    reporter = incident.get("reporter") or {}
    summary: dict[str, Any] = {
        "id": incident.get("id"),
        "kind": incident.get("kind"),
        "created_t": incident.get("created_t"),
        "status": incident.get("status"),
    }
    body: dict[str, Any] = {
        "type": WEBHOOK_EVENT_TYPE,
        "step": step,
        "reason": reason,
        "delivery_id": delivery_id,
        "t": t,
        "incident": summary,
        "person": {"name": who, "role": reporter.get("role")},
        "contact": dict(contact),
    }
    location = incident.get("location")
    point = _incident_point(incident)
    if point is not None and isinstance(location, Mapping):
        body["location"] = {
            "lat": point[0],
            "lon": point[1],
            "t": location.get("t"),
            "source": location.get("source"),
        }
        body["map_url"] = map_link(*point)
    if text:
        body["text"] = text
    return body


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
