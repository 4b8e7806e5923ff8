"""HTTP endpoints about people's data: erasure and the access audit (docs/privacy.md).

``DELETE /v1/people/{technician|customer}/{id}/data`` erases what may go now and says what it
kept and why; ``GET /v1/audit?subject={id}`` lists who read or erased that person's data.
Both are for the platform only (its API key or a platform token): operators are whom the
audit watches.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime.auth import Role
from realtime.http_api import ApiError, _identifier, _person, authenticate, handles_errors, hub_of
from realtime.protocol import ErrorCode

# Entries per audit answer at most (the newest): a long-watched subject stays one page.
MAX_AUDIT_ENTRIES = 1000


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
    subject = _identifier(subject)
    raw_limit = request.query_params.get("limit", str(MAX_AUDIT_ENTRIES))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ApiError(422, ErrorCode.INVALID_FIELD, "limit must be an integer") from None
    if not 1 <= limit <= MAX_AUDIT_ENTRIES:
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"limit must be 1..{MAX_AUDIT_ENTRIES}")
    entries = await hub_of(request).store.access_log(subject, limit)
    return JSONResponse({"subject": subject, "entries": msgspec.to_builtins(entries)})


routes = [
    Route("/v1/people/{role}/{person_id}/data", erase_data, methods=["DELETE"]),
    Route("/v1/audit", list_audit, methods=["GET"]),
]
