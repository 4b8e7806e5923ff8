"""/openapi.json and /asyncapi.json: generated from the route table and the structs, complete,
and in agreement with the authorization matrix (tests/realtime/test_authorization_matrix.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Match, Route, WebSocketRoute

from realtime import protocol as wire
from realtime.app import create_app
from realtime.auth import Role
from realtime.http import asyncapi, openapi
from realtime.http.openapi import ALL_CODES, OPERATIONS, documented_routes, openapi_document
from realtime.protocol import ErrorCode
from tests.conftest import make_settings
from tests.realtime import test_authorization_matrix as matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(make_settings(tmp_path))


async def _served(app: Any, path: str) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
        answer = await http.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return answer.json()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    # A reference to a reference (AsyncAPI channel messages point at components.messages).
    return _resolve(document, node["$ref"]) if "$ref" in node else node


# ------------------------------------------------------------------ OpenAPI


async def test_served_openapi_is_the_generated_document(app: Any) -> None:
    served = await _served(app, "/openapi.json")
    assert served == json.loads(json.dumps(openapi_document(app.routes)))
    assert served["openapi"] == "3.1.0"
    assert served["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_openapi_validates_as_3_1(app: Any) -> None:
    document = json.loads(json.dumps(openapi_document(app.routes)))  # as served
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not in the dev extra; the structure is checked below either way
        pytest.skip("openapi-spec-validator is not installed")
    validate(document)


def test_every_http_route_of_the_app_is_a_documented_operation(app: Any) -> None:
    document = openapi_document(app.routes)
    routes = documented_routes(app.routes)
    # 44 API routes + the 2 documents + 5 pages (HEAD left out); not the sockets nor /static.
    assert len(routes) == 51
    listed = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert listed == set(routes)
    assert "/v1/ws/ops" not in document["paths"]
    assert not any(p.startswith("/static") for p in document["paths"])


def test_every_reference_resolves(app: Any) -> None:
    document = openapi_document(app.routes)
    refs = _refs(document)
    assert len(refs) > 100
    for ref in set(refs):
        assert isinstance(_resolve(document, ref), dict), ref


def test_a_route_without_an_entry_is_refused(app: Any) -> None:
    async def endpoint(request: Any) -> Any:
        raise AssertionError("never called")

    routes = [*app.routes, Route("/v1/new-thing", endpoint, methods=["POST"])]
    with pytest.raises(KeyError, match=r"POST /v1/new-thing"):
        openapi_document(routes)


def test_assign_lists_its_statuses_and_codes(app: Any) -> None:
    operation = openapi_document(app.routes)["paths"]["/v1/bookings/{booking_id}/assign"]["post"]
    # 200 the booking; 400/413/422 the body; 401/403 credentials; 404 no such booking;
    # 409 the lifecycle or the technician; 503 the store.
    assert sorted(operation["responses"]) == [
        "200", "400", "401", "403", "404", "409", "413", "422", "503"
    ]  # fmt: skip
    conflict = operation["responses"]["409"]["content"]["application/json"]["schema"]
    assert conflict["allOf"][1]["properties"]["code"]["enum"] == [
        "conflict",
        "illegal_transition",
        "technician_busy",
    ]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AssignIn"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Booking"}
    assert operation["x-roles"] == ["operator", "platform"]


def test_public_routes_ask_no_credential_and_pages_are_html(app: Any) -> None:
    paths = openapi_document(app.routes)["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/asyncapi.json", "/"):
        assert paths[path]["get"]["security"] == [], path
        assert "401" not in paths[path]["get"]["responses"], path
    assert list(paths["/console"]["get"]["responses"]["200"]["content"]) == ["text/html"]
    assert paths["/v1/tokens"]["post"]["x-roles"] == ["platform API key"]


def test_error_codes_cover_every_error_code_and_every_refusal(app: Any) -> None:
    document = openapi_document(app.routes)
    enum = document["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert set(enum) >= {code.value for code in ErrorCode}
    assert enum == sorted(enum) == list(ALL_CODES)
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "allOf" in str(response):
                    schema = response["content"]["application/json"]["schema"]
                    assert set(schema["allOf"][1]["properties"]["code"]["enum"]) <= set(enum)


def test_domain_codes_are_every_code_the_geofence_and_contacts_raise() -> None:
    """GeoJSON and contact refusals carry codes of their own (string literals at the raise)."""
    raised: dict[str, set[str]] = {"GeoJSONError": set(), "ContactError": set()}
    pattern = re.compile(r"(GeoJSONError|ContactError)\(\s*\"([a-z_]+)\"")
    for path in [
        *ROOT.glob("geofence/*.py"),
        *ROOT.glob("alerts/*.py"),
        *ROOT.glob("realtime/*.py"),
    ]:
        for kind, code in pattern.findall(path.read_text(encoding="utf-8")):
            raised[kind].add(code)
    assert raised["GeoJSONError"] == set(openapi.GEOJSON_CODES)
    assert raised["ContactError"] == set(openapi.CONTACT_CODES)


# Callers of the matrix that are one role each (the others are spoiled credentials).
MATRIX_ROLES = {
    matrix.PLATFORM_KEY_ROW: Role.PLATFORM,
    matrix.OPERATOR: Role.OPERATOR,
    matrix.TECHNICIAN: Role.TECHNICIAN,
    matrix.CUSTOMER: Role.CUSTOMER,
}


def _operation_of(app: Any, call: matrix.Call) -> tuple[str, str]:
    path = call.path.split("?")[0].replace("{fresh}", "b-any")
    for route in app.routes:
        if isinstance(route, Route) and call.method in (route.methods or set()):
            match, _ = route.matches({"type": "http", "method": call.method, "path": path})
            if match is Match.FULL:
                return call.method, route.path
    raise AssertionError(f"no route for {call.name}")


def test_roles_agree_with_the_authorization_matrix(app: Any) -> None:
    wrong = []
    for call in matrix.CALLS:
        key = _operation_of(app, call)
        operation = OPERATIONS[key]
        if not call.needs_auth:
            documented: Any = "public"
            expected: Any = "public" if operation.credential == "none" else operation.credential
        elif operation.credential == "key":
            documented, expected = {Role.PLATFORM}, {MATRIX_ROLES[c] for c in call.allowed}
        else:
            documented = set(operation.roles)
            expected = {MATRIX_ROLES[c] for c in call.allowed if c in MATRIX_ROLES}
        if documented != expected:
            wrong.append(f"{call.name}: table {documented}, matrix {expected}")
    assert not wrong, "\n".join(wrong)


def test_every_table_entry_is_a_route_of_the_app(app: Any) -> None:
    assert set(OPERATIONS) == set(documented_routes(app.routes))


# ------------------------------------------------------------------ AsyncAPI

DECODERS = {
    "/v1/ws/technician": wire.TECHNICIAN_FRAMES,
    "/v1/ws/bookings/{booking_id}": wire.CUSTOMER_FRAMES,
    "/v1/ws/ops": wire.OPERATOR_FRAMES,
}


async def test_served_asyncapi_is_the_generated_document(app: Any) -> None:
    served = await _served(app, "/asyncapi.json")
    assert served == json.loads(json.dumps(asyncapi.asyncapi_document(app.routes)))
    assert served["asyncapi"] == "3.0.0"
    assert sorted(served["channels"]) == [
        "v1_ws_bookings_booking_id",
        "v1_ws_ops",
        "v1_ws_technician",
    ]
    assert (
        served["channels"]["v1_ws_bookings_booking_id"]["address"] == "/v1/ws/bookings/{bookingId}"
    )
    assert "bookingId" in served["channels"]["v1_ws_bookings_booking_id"]["parameters"]
    for ref in set(_refs(served)):
        assert isinstance(_resolve(served, ref), dict), ref


def test_each_socket_receives_exactly_what_its_decoder_accepts(app: Any) -> None:
    document = asyncapi.asyncapi_document(app.routes)
    sockets = [r.path for r in app.routes if isinstance(r, WebSocketRoute)]
    assert sorted(sockets) == sorted(DECODERS)
    for path, decoder in DECODERS.items():
        channel = path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
        received = document["operations"][f"{channel}_receive"]
        names = {_resolve(document, m["$ref"])["name"] for m in received["messages"]}
        assert names == set(decoder.accepted), path
        sent = document["operations"][f"{channel}_send"]
        assert sent["action"] == "send"
        assert "error" in {_resolve(document, m["$ref"])["name"] for m in sent["messages"]}


def test_each_message_payload_carries_its_type_tag(app: Any) -> None:
    document = asyncapi.asyncapi_document(app.routes)
    assert len(document["components"]["messages"]) == 23
    for message in document["components"]["messages"].values():
        payload = _resolve(document, message["payload"]["$ref"])
        assert payload["properties"]["type"] == {"enum": [message["name"]]}, message["name"]
        assert "type" in payload["required"]


def test_a_socket_without_an_entry_is_refused(app: Any) -> None:
    async def endpoint(websocket: Any) -> None:
        raise AssertionError("never called")

    routes = [*app.routes, WebSocketRoute("/v1/ws/new", endpoint)]
    with pytest.raises(KeyError, match="/v1/ws/new"):
        asyncapi.asyncapi_document(routes)


def test_a_struct_without_a_tag_cannot_be_a_message() -> None:
    with pytest.raises(ValueError, match="FleetEntry has no type tag"):
        asyncapi.message_name(wire.FleetEntry)
