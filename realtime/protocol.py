"""Wire protocol v1: the message shapes shared by the hub, the SDK, the pages and the load test.

Every frame is one JSON object with a ``"type"``. Inbound frames are decoded with msgspec
(typed, validating, and several times faster than ``json`` + hand checks: see
``loadtest/results/codec.md``). Range and time checks that need settings or the clock live in
``realtime/ingest.py``; this module only knows shapes, error codes and close codes.
"""

from __future__ import annotations

import reprlib
from enum import IntEnum, StrEnum
from typing import Annotated, Any

import msgspec

PROTOCOL_VERSION = 1

# JavaScript clients must be able to hold every seq exactly.
MAX_SEQ = 2**53 - 1


class ErrorCode(StrEnum):
    """Stable error codes carried by ``error`` frames and 4xx bodies (docs/protocol.md)."""

    INVALID_JSON = "invalid_json"
    BINARY_FRAME = "binary_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    OUT_OF_RANGE = "out_of_range"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    STALE_SEQ = "stale_seq"
    SEQ_NOT_INCREASING = "seq_not_increasing"
    BATCH_TOO_LARGE = "batch_too_large"
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"
    SERVER_BUSY = "server_busy"
    INTERNAL_ERROR = "internal_error"
    SOS_NOT_STORED = "sos_not_stored"
    # HTTP-side codes.
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    ILLEGAL_TRANSITION = "illegal_transition"
    NO_TECHNICIAN_AVAILABLE = "no_technician_available"
    # Failure paths (issue 11): every HTTP error is JSON, the store's state named.
    METHOD_NOT_ALLOWED = "method_not_allowed"
    STORE_UNAVAILABLE = "store_unavailable"  # 503, retryable (Retry-After)
    STORE_FULL = "store_full"  # 503, retryable once space is freed (Retry-After)
    # Who sees whom / SOS on the right visit (issue 11).
    TECHNICIAN_BUSY = "technician_busy"  # a second en_route while another visit is on
    BOOKING_CLOSED = "booking_closed"  # a customer's SOS past the grace after the booking
    # Cities, quotes and dispatch (issue 15).
    UNKNOWN_CITY = "unknown_city"  # 422: a booking or technician names an unconfigured city
    OUTSIDE_SERVICE_AREA = "outside_service_area"  # 422: the address is in none of its zones
    UNKNOWN_QUOTE = "unknown_quote"  # 422: a booking names a quote that was never issued
    QUOTE_EXPIRED = "quote_expired"  # 409: the quote's 5 minutes are over; ask for a new one


class CloseCode(IntEnum):
    """WebSocket close codes the hub uses (docs/protocol.md)."""

    NORMAL = 1000  # the watched booking is over (reason names its final status)
    SERVICE_RESTART = 1012  # the hub is stopping (sent by uvicorn); reconnect with backoff
    POLICY_FLOOD = 1008  # the connection kept sending over its rate limit
    MESSAGE_TOO_BIG = 1009  # a frame over the transport's hard cap (uvicorn ws_max_size)
    SLOW_CONSUMER = 1013  # the client did not read; its undroppable queue filled up
    UNAUTHORIZED = 4401  # missing, malformed, expired or badly signed token
    FORBIDDEN = 4403  # valid token, wrong role or wrong booking
    NOT_FOUND = 4404  # the booking does not exist


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a control frame's payload is at most 125 bytes


def clip(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (marked with ``...`` when cut)."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode(errors="ignore") + "..."


def close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (reasons may echo client input of any length)."""
    return clip(text, MAX_CLOSE_REASON_BYTES)


class ProtocolError(Exception):
    """A frame the hub refuses; becomes an ``error`` frame, the connection stays up."""

    def __init__(self, code: ErrorCode, message: str, seq: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Echo only a seq the client could have meant: not ``true``, not one past 2^53.
        self.seq = seq if type(seq) is int and 0 <= seq <= MAX_SEQ else None


# ---------------------------------------------------------------- inbound (technician)


class Location(msgspec.Struct, tag="location", tag_field="type", forbid_unknown_fields=False):
    """One GPS fix. ``seq`` is per technician and strictly increasing across reconnects."""

    seq: int
    t: float
    lat: float
    lon: float
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    """Fixes buffered while offline, oldest first; the whole batch is accepted or refused."""

    points: list[Location]


ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Note = Annotated[str, msgspec.Meta(max_length=2000)]


class Sos(msgspec.Struct, tag="sos", tag_field="type", omit_defaults=True):
    """One press of SOS. ``id`` is the client's own (a UUID): a retried SOS is one incident."""

    id: ClientId
    t: float
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    note: Note | None = None


class SosCancel(msgspec.Struct, tag="sos_cancel", tag_field="type", omit_defaults=True):
    """The reporter takes an SOS back (a pocket press), within the grace period."""

    id: ClientId
    note: Note | None = None


class CheckOk(msgspec.Struct, tag="check_ok", tag_field="type"):
    """The technician's answer to a ``check`` ("are you OK?"): yes."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class IncidentAck(msgspec.Struct, tag="ack", tag_field="type", omit_defaults=True):
    """An operator takes an incident: escalation stops."""

    incident: str
    note: Note | None = None


class IncidentResolve(msgspec.Struct, tag="resolve", tag_field="type", omit_defaults=True):
    incident: str
    outcome: str
    note: Note | None = None


class AlertAck(msgspec.Struct, tag="ack_alert", tag_field="type", omit_defaults=True):
    """An operator has seen a safety alert (its own ack: alerts do not escalate)."""

    alert: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    note: Note | None = None


TechnicianInbound = Location | Batch | Sos | SosCancel | CheckOk
CustomerInbound = Sos | SosCancel
OperatorInbound = IncidentAck | IncidentResolve | AlertAck


class FrameDecoder:
    """Typed decoding for one kind of socket, with precise error codes on failure."""

    def __init__(self, kinds: Any, accepted: frozenset[str]) -> None:
        self.accepted = accepted
        self._decoder = msgspec.json.Decoder(kinds)

    def decode(self, data: str | bytes) -> Any:
        """The typed message, or ProtocolError: never another exception, whatever ``data``."""
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError:
            # Error path only: decode again without a schema to tell *why* it failed.
            error = self._classify(data)
        except (RecursionError, UnicodeEncodeError) as exc:
            error = _unreadable(exc)
        raise error from None

    def _classify(self, data: str | bytes) -> ProtocolError:
        try:
            return self._explain(data)
        except (RecursionError, UnicodeEncodeError) as exc:
            # The schema-less decode parses every value the typed one skipped or never
            # reached, so it can hit the nesting limit where the typed decode did not.
            return _unreadable(exc)

    def _explain(self, data: str | bytes) -> ProtocolError:
        try:
            raw: Any = _any_decoder.decode(data)
        except msgspec.ValidationError as exc:
            # Well-formed JSON holding a number no double can represent, such as 1e400.
            return ProtocolError(
                ErrorCode.OUT_OF_RANGE, f"a number in the frame is out of range ({exc})"
            )
        except msgspec.DecodeError as exc:
            return ProtocolError(
                ErrorCode.INVALID_JSON,
                f"frame is not valid JSON ({exc}); NaN and Infinity are not JSON",
            )
        if not isinstance(raw, dict):
            return ProtocolError(ErrorCode.INVALID_JSON, "frame must be a JSON object")
        seq = raw.get("seq")
        kind = raw.get("type")
        # ``type`` may be any JSON value, including unhashable ones such as a list.
        if not isinstance(kind, str) or kind not in self.accepted:
            allowed = ", ".join(sorted(self.accepted)) or "none"
            what = (
                "no message type" if kind is None else f"unknown message type {reprlib.repr(kind)}"
            )
            return ProtocolError(
                ErrorCode.UNKNOWN_TYPE, f"{what} on this socket (accepted: {allowed})", seq
            )
        try:
            self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            text = str(exc)
            code = ErrorCode.OUT_OF_RANGE if "out of range" in text else ErrorCode.INVALID_FIELD
            return ProtocolError(code, text, seq)
        return ProtocolError(ErrorCode.INVALID_FIELD, "invalid message", seq)


def _unreadable(exc: RecursionError | UnicodeEncodeError) -> ProtocolError:
    """What msgspec raises outside ``DecodeError``, as a clean ``invalid_json``.

    msgspec parses nested arrays and objects recursively and gives up with RecursionError
    near Python's recursion limit (about 1,000 levels, a 2 KB frame: far under the frame
    cap). A ``str`` holding a lone surrogate cannot be encoded to UTF-8 for the parser (a
    WebSocket text frame never carries one, but the decoder must not depend on that).
    """
    if isinstance(exc, RecursionError):
        return ProtocolError(
            ErrorCode.INVALID_JSON, "frame nests arrays or objects too deeply to decode"
        )
    return ProtocolError(
        ErrorCode.INVALID_JSON, "frame is not valid UTF-8 text (it holds a lone surrogate)"
    )


_any_decoder = msgspec.json.Decoder()

TECHNICIAN_FRAMES = FrameDecoder(
    TechnicianInbound, frozenset({"location", "batch", "sos", "sos_cancel", "check_ok"})
)
CUSTOMER_FRAMES = FrameDecoder(CustomerInbound, frozenset({"sos", "sos_cancel"}))
OPERATOR_FRAMES = FrameDecoder(OperatorInbound, frozenset({"ack", "resolve", "ack_alert"}))


def decode_technician_frame(data: str) -> TechnicianInbound:
    """Decode a technician frame or raise ProtocolError with the most precise code."""
    return TECHNICIAN_FRAMES.decode(data)


# ---------------------------------------------------------------- outbound


class Ack(msgspec.Struct, tag="ack", tag_field="type"):
    """Highest seq stored durably; also sent on connect so the technician knows where to resume."""

    seq: int


class Error(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    seq: int | None = None


class Position(msgspec.Struct, tag="position", tag_field="type", omit_defaults=True):
    technician_id: str
    seq: int
    t: float
    lat: float
    lon: float
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None


class FleetEntry(msgspec.Struct, omit_defaults=True):
    technician_id: str
    online: bool
    t: float | None = None
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None
    # For the console's labels and list (operators only): the platform's display name, and
    # what the technician is doing: ``idle``, their current visit's status, or ``offline``.
    name: str | None = None
    status: str | None = None


class Fleet(msgspec.Struct, tag="fleet", tag_field="type"):
    positions: list[FleetEntry]


class Status(msgspec.Struct, tag="status", tag_field="type", omit_defaults=True):
    booking_id: str
    status: str
    t: float
    cause: str | None = None


class EtaMessage(msgspec.Struct, tag="eta", tag_field="type"):
    """Estimated arrival: ``seconds`` from ``t`` (the fix it is based on), with a band."""

    booking_id: str
    t: float
    seconds: float
    arrival_t: float
    distance_m: float
    low_s: float
    high_s: float
    # Stopped at the door, the check-in not yet decided (it waits for the technician to go
    # indoors, since a car queued by the door looks the same): pages say "at your door".
    at_door: bool = False


class Alert(msgspec.Struct, tag="alert", tag_field="type", omit_defaults=True):
    """A safety alert for operators (``kind`` says which; the other fields depend on it).

    Sent when it is raised and again when an operator acknowledges it (``status``).
    """

    kind: str
    t: float
    technician_id: str | None = None
    booking_id: str | None = None
    zone_id: str | None = None
    zone_kind: str | None = None
    message: str | None = None
    id: str | None = None
    status: str | None = None  # "open" | "acknowledged"
    incident_id: str | None = None
    acked_by: str | None = None
    acked_t: float | None = None
    note: str | None = None


class CheckPrompt(msgspec.Struct, tag="check", tag_field="type"):
    """Asks a technician whose visit is overdue "are you OK?"; answered with ``check_ok``."""

    id: str
    booking_id: str
    question: str
    t: float
    answer_by: float


class CheckAck(msgspec.Struct, tag="check_ack", tag_field="type"):
    """The technician's ``check_ok`` is stored; the app may stop resending it."""

    id: str


class SosAck(msgspec.Struct, tag="sos_ack", tag_field="type"):
    """The SOS is stored durably as ``incident``; never sent before that."""

    id: str
    incident: str
    status: str


class SosStatus(msgspec.Struct, tag="sos_status", tag_field="type", omit_defaults=True):
    """What the reporter may know of their SOS: its state, not the operators' notes."""

    id: str
    incident: str
    status: str
    t: float
    outcome: str | None = None


class IncidentMessage(msgspec.Struct, tag="incident", tag_field="type", omit_defaults=True):
    """An incident for operators: new, changed, escalated or re-alerted."""

    incident: dict[str, Any]
    reason: str | None = None


class IncidentLocationMessage(
    msgspec.Struct, tag="incident_location", tag_field="type", omit_defaults=True
):
    """The reporter's live position while the incident is open (every fix, never conflated)."""

    incident: str
    t: float
    lat: float
    lon: float
    acc: float | None = None


class BookingMessage(msgspec.Struct, tag="booking", tag_field="type"):
    booking: dict[str, Any]


class Snapshot(msgspec.Struct, tag="snapshot", tag_field="type", omit_defaults=True):
    booking: dict[str, Any] | None = None
    position: Position | None = None
    eta: EtaMessage | None = None
    incidents: list[dict[str, Any]] | None = None
    fleet: list[FleetEntry] | None = None
    alerts: list[dict[str, Any]] | None = None


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> str:
    """Encode an outbound message as a JSON text frame."""
    return _encoder.encode(message).decode()


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
