"""/v1/people/{technician|customer}/{id}/...: a person's data (docs/privacy.md).

``PUT``/``GET .../contacts``: the emergency contacts an SOS reaches (every read audited);
``DELETE .../data`` erases what may go now and says what it kept and why;
``GET /v1/audit?subject={id}`` lists who read or erased that person's data. Writing contacts,
erasure and the audit are for the platform only (its API key or a platform token): operators
are whom the audit watches.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerts.contacts import ContactError, validate_contacts
from realtime.auth import Role
from realtime.bookings_desk import NotFound
from realtime.http.common import (
    ApiError,
    authenticate,
    checked_identifier,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.privacy import AccessEntry
from realtime.protocol import ErrorCode

PEOPLE_ROLES = {"technician", "customer"}
# Entries per audit answer at most (the newest): a long-watched subject stays one page.
MAX_AUDIT_ENTRIES = 1000


class ContactsIn(msgspec.Struct, forbid_unknown_fields=True):
    contacts: list[Any]


def _person(request: Request) -> tuple[str, str]:
    """The (role, id) a ``/v1/people/{role}/{person_id}`` path names; 404 for another role."""
    role = request.path_params["role"]
    if role not in PEOPLE_ROLES:
        raise NotFound(f"unknown kind of person {role!r} (technician or customer)")
    return role, checked_identifier(request.path_params["person_id"])


@handles_errors
async def put_contacts(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    role, person = _person(request)
    body: ContactsIn = await read_body(request, ContactsIn)
    try:
        contacts = validate_contacts(body.contacts)
    except ContactError as exc:
        raise ApiError(422, exc.code, exc.message) from None
    await hub_of(request).safety.put_contacts(role, person, contacts)
    return JSONResponse({"contacts": msgspec.to_builtins(contacts)})


@handles_errors
async def get_contacts(request: Request) -> Response:
    principal = authenticate(request, {Role.PLATFORM, Role.OPERATOR})
    role, person = _person(request)
    hub = hub_of(request)
    # Audited before the read: if the audit cannot be written, nothing is shown.
    entry = AccessEntry(
        t=hub.clock(), actor=principal.actor, action="contacts_read", subject=person, role=role
    )
    await hub.store.append_access(entry)
    contacts = await hub.safety.contacts_of(role, person)
    return JSONResponse({"contacts": msgspec.to_builtins(contacts)})


@handles_errors
async def erase_data(request: Request) -> Response:
    principal = authenticate(request, {Role.PLATFORM})
    role, person_id = _person(request)
    result = await hub_of(request).eraser.erase(role, person_id, principal.actor)
    return JSONResponse(
        {"role": role, "id": person_id, "erased": result.erased, "kept": result.kept}
    )


@handles_errors
async def list_audit(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    subject = request.query_params.get("subject")
    if not subject:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "subject (a person's id) is required")
    subject = checked_identifier(subject)
    raw_limit = request.query_params.get("limit", str(MAX_AUDIT_ENTRIES))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "limit must be an integer") from None
    if not 1 <= limit <= MAX_AUDIT_ENTRIES:
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"limit must be 1..{MAX_AUDIT_ENTRIES}")
    entries = await hub_of(request).store.access_log(subject, limit)
    return JSONResponse({"subject": subject, "entries": msgspec.to_builtins(entries)})
