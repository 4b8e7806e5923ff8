"""What the notifiers send (alerts/notify_payloads.py): map links, signatures, payloads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from alerts.notify_payloads import (
    contact_payload,
    map_link,
    push_for_incident,
    sign,
    signature_header,
    verify_signature,
    webhook_payload,
)
from tests.alerts.notify_helpers import SECRET, sample_payload, sos_message


def test_map_link_points_openstreetmap_at_the_position() -> None:
    assert map_link(52.52, 13.405) == (
        "https://www.openstreetmap.org/?mlat=52.520000&mlon=13.405000#map=18/52.520000/13.405000"
    )


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (0.0, -181.0), (float("nan"), 0.0)])
def test_map_link_refuses_positions_that_are_not_on_earth(lat: float, lon: float) -> None:
    with pytest.raises(ValueError):
        map_link(lat, lon)


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, b"{}") == expected


def test_signature_verifies_within_tolerance_and_fails_for_a_tampered_body() -> None:
    header = signature_header(SECRET, 1000, b'{"a":1}')
    assert verify_signature(SECRET, header, b'{"a":1}', now=1100.0)
    assert not verify_signature(SECRET, header, b'{"a":2}', now=1100.0)
    assert not verify_signature(b"other-secret", header, b'{"a":1}', now=1100.0)


def test_a_replay_outside_the_tolerance_is_rejected() -> None:
    header = signature_header(SECRET, 1000, b"{}")
    assert verify_signature(SECRET, header, b"{}", now=1300.0)
    assert not verify_signature(SECRET, header, b"{}", now=1301.0)
    assert not verify_signature(SECRET, header, b"{}", now=600.0, tolerance_s=300)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1000", "t=1000,v1"])
def test_malformed_signature_headers_are_rejected(header: str) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1000.0)


def test_any_v1_may_match_so_secrets_can_be_rotated() -> None:
    old = sign(b"old-secret", 1000, b"{}")
    new = sign(SECRET, 1000, b"{}")
    assert verify_signature(SECRET, f"t=1000,v1={old},v1={new}", b"{}", now=1000.0)


def test_push_names_the_reporter_and_links_the_map() -> None:
    message = sos_message()
    assert message.title == "SOS from Anna (technician)"
    assert map_link(52.52, 13.405) in message.body
    assert message.data["map_url"] == map_link(52.52, 13.405)
    assert message.data["incident_id"] == "inc-42"
    assert (message.data["lat"], message.data["lon"]) == ("52.520000", "13.405000")
    assert all(isinstance(value, str) for value in message.data.values())


def test_push_without_a_position_says_so_and_sends_no_empty_coordinates() -> None:
    message = push_for_incident(
        incident_id="inc-1", kind="customer", who="Ben", lat=None, lon=None, step="contacts"
    )
    assert "not known" in message.body
    assert not {"map_url", "lat", "lon"} & message.data.keys()


def test_webhook_payload_is_json_with_the_map_link() -> None:
    payload = sample_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["type"] == "doorstep.incident.escalation"
    assert payload["map_url"] == map_link(52.52, 13.405)
    assert payload["incident"]["id"] == "inc-42"
    nested = webhook_payload(
        incident={"id": "i", "location": {"lat": 1.0, "lon": 2.0}},
        step="s",
        reason="r",
        delivery_id="d",
        t=0.0,
        text="SOS from Anna",
    )
    assert nested["map_url"] == map_link(1.0, 2.0)
    assert nested["text"] == "SOS from Anna"
    bare = webhook_payload(incident={"id": "i"}, step="s", reason="r", delivery_id="d", t=0.0)
    assert "map_url" not in bare


def test_contact_payload_says_who_and_where_and_leaves_out_trail_notes_and_audit() -> None:
    incident = {
        "id": "inc-7",
        "kind": "sos",
        "status": "open",
        "created_t": 990.0,
        "reporter": {"sub": "tech-1", "role": "technician"},
        "location": {"lat": 52.52, "lon": 13.405, "t": 985.0, "source": "last_fix"},
        "address": {"lat": 52.6, "lon": 13.5, "t": 900.0, "source": "booking_address"},
        "note": "door code 4711",
        "trail": [[991.0, 52.52, 13.405, 5.0]],
        "audit": [{"t": 990.0, "action": "raise", "actor": "technician:tech-1"}],
        "deliveries": [{"t": 991.0, "channel": "webhook", "target": "x", "step": "t1"}],
    }
    payload = contact_payload(
        incident=incident,
        who="Anna (technician)",
        step="contacts",
        reason="not acknowledged",
        delivery_id="inc-7:contacts:0",
        t=1000.0,
        contact={"name": "Mia", "phone": "+4915112345678"},
        text="Anna pressed SOS",
    )
    assert payload["incident"] == {
        "id": "inc-7",
        "kind": "sos",
        "created_t": 990.0,
        "status": "open",
    }
    assert payload["person"] == {"name": "Anna (technician)", "role": "technician"}
    assert payload["location"] == {"lat": 52.52, "lon": 13.405, "t": 985.0, "source": "last_fix"}
    assert payload["map_url"] == map_link(52.52, 13.405)
    assert payload["delivery_id"] == "inc-7:contacts:0" and payload["text"] == "Anna pressed SOS"
    text = json.dumps(payload)
    for private in ("trail", "audit", "deliveries", "4711", "address", "52.6"):
        assert private not in text
    bare = contact_payload(
        incident={"id": "i"}, who="x", step="s", reason="r", delivery_id="d", t=0.0, contact={}
    )
    assert "location" not in bare and "map_url" not in bare
