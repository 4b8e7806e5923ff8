"""Settings from the environment (``DOORSTEP_*``) and the command line, validated at start-up.

Every limit is a setting with its reason next to it, so an operator can tune a deployment
without reading the hub's code.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from realtime.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER, split_keys
from realtime.gc_tuning import parse_thresholds

SECRETS_FILE = "secrets.json"
GC_THRESHOLDS = "200000,20,10"
# Settings whose value is never printed, not even in the error about it.
SECRET_FIELDS = frozenset({"secret", "platform_key", "webhook_secret", "fcm_access_token"})


class SettingsError(Exception):
    """A missing or invalid setting; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOORSTEP_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    data_dir: Path = Path("doorstep-data")
    # "embedded": in-process bus + SQLite in data_dir, nothing else to run (one hub).
    # "redis": pub/sub + Redis for everything durable, shared by several hubs (scale-out).
    backend: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every key and channel starts with it (inside a hash tag, see realtime/backends/redis/keys.py),
    # so several deployments, or test runs, can share one Redis without seeing each other.
    redis_prefix: str = Field("doorstep", pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    # Location history lives in Redis memory: ~370 bytes per fix, so a technician sending
    # 1 fix/s through an 8-hour shift costs ~11 MB a day. Fixes that arrived longer ago are
    # trimmed (a day covers "where was she today" and the review of a shift's incidents; keep
    # longer history in a database of its own). The newest fix and the highest seq are kept
    # regardless, so resume and "last seen" still work.
    redis_history_retention_s: float = Field(24 * 3600.0, gt=0, allow_inf_nan=False)
    # This process's name among several hubs (logs, audit trails, Redis consumer names).
    # Empty: <host>-<pid>-<random>, new at every start.
    hub_id: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)
    # Several hubs: safety work (an escalation step and its notifications) that a hub took
    # and has not finished after this long is taken over by another hub (the first one died).
    # Longer than a step's slowest delivery with its retries.
    work_reclaim_idle_s: float = Field(30.0, gt=0, allow_inf_nan=False)

    # JWT HS256 signing keys, comma-separated (see "Tokens" below): the first signs.
    secret: SecretStr | None = None
    platform_key: SecretStr | None = None  # the platform backend's API key
    token_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 24 * 3600)

    # A GPS fix is ~120 bytes; a full batch of max_batch_points stays well under this.
    # Bigger frames get a frame_too_large error and the connection stays up.
    max_frame_bytes: int = Field(128 * 1024, ge=1024)
    # Above this the transport itself closes the socket (1009) without reading the frame,
    # so a hostile client cannot make the hub buffer megabytes.
    hard_frame_bytes: int = Field(1024 * 1024, ge=2048)
    # An offline flush: 500 fixes is ~8 minutes at 1 Hz; longer gaps are sent as several batches.
    max_batch_points: int = Field(500, ge=1, le=10_000)
    # Phones send ~1 frame/s; 20/s sustained with a burst of 60 leaves room for reconnect
    # flushes while keeping one client from monopolising the event loop.
    rate_per_s: float = Field(20.0, gt=0)
    rate_burst: int = Field(60, ge=1)
    # A client that keeps flooding after this many refused frames within flood_window_s
    # is disconnected (1008): answering every frame with an error would be a flood of our own.
    flood_max_refused: int = Field(100, ge=1)
    flood_window_s: float = Field(10.0, gt=0)
    # Phone clocks drift; a fix more than this far in the future is a bug, not drift.
    max_future_skew_s: float = Field(120.0, ge=0)
    # Offline buffers may hold hours of fixes; older than this is refused as stale.
    max_fix_age_s: float = Field(12 * 3600.0, gt=0)
    # Per-connection bound on undroppable messages (status, acks are conflated). A client
    # that lets this many pile up is not reading: it is closed (1013) and recovers from the
    # snapshot on reconnect, instead of growing the hub's memory without limit.
    send_queue_limit: int = Field(256, ge=8)
    # Operators get the fleet at most this often; positions in between are conflated.
    fleet_interval_s: float = Field(1.0, gt=0)
    # Location history is written in batches: at most this long after a fix, or this many
    # fixes at once. The ack follows the write, so this is also the ack latency.
    history_flush_interval_s: float = Field(0.05, gt=0)
    history_flush_max: int = Field(2000, ge=1)
    # Fixes accepted but not yet written; past it the hub answers server_busy (no silent loss).
    history_pending_limit: int = Field(100_000, ge=100)
    track_max_points: int = Field(50_000, ge=10)
    # Customers see "arriving" when the ETA first drops under this.
    arriving_threshold_s: float = Field(180.0, gt=0, le=3600)
    # Each hub re-reads the learned speeds every other hub added (merged counters) this
    # often: a minute late is nothing for a model that learns over weeks, and one HGETALL a
    # minute per hub is nothing for the store.
    models_reload_interval_s: float = Field(60.0, gt=0, le=3600)
    # Optional OSRM routing engine (``http://host:5000``); without it, or when it does not
    # answer within the timeout, ETAs use straight-line distance x learned circuity.
    osrm_url: str | None = None
    osrm_timeout_s: float = Field(1.0, gt=0, le=30)
    # A route is asked for when a trip starts and refreshed at most this often.
    osrm_refresh_s: float = Field(60.0, ge=5)
    # Escalation of an SOS nobody acknowledged: re-alert operators and the supervisor webhook
    # after T1, the person's emergency contacts after T2.
    escalation_t1_s: float = Field(30.0, gt=0)
    escalation_t2_s: float = Field(60.0, gt=0)
    # A reporter may take an SOS back (pocket press) this long after raising it.
    sos_cancel_grace_s: float = Field(60.0, ge=0)
    # Escalation webhooks (JSON POST, HMAC-SHA256 signed with webhook_secret): the safety
    # supervisor, and a bridge to an SMS/voice gateway for contacts' phone numbers.
    supervisor_webhook_url: str | None = None
    contact_webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Firebase Cloud Messaging for contacts' devices (service-account JSON file).
    fcm_project_id: str | None = None
    fcm_service_account_file: Path | None = None
    fcm_endpoint: str | None = None  # override of FCM's base URL (a local stand-in in tests)
    # A ready OAuth2 access token instead of the service-account file (a token broker, tests).
    fcm_access_token: SecretStr | None = None
    # The visit watchdog (alerts/watchdog.py has the reasons for the defaults): "are you OK?"
    # once a visit runs this long past its expected duration, an incident when the answer
    # is not in within check_timeout_s, again after an "ok"; a signal_lost alert after this
    # long without a fix during a visit. It looks every watchdog_interval_s, which is also
    # how late a decision may be.
    overdue_margin_s: float = Field(900.0, ge=0, allow_inf_nan=False)
    check_timeout_s: float = Field(120.0, gt=0, allow_inf_nan=False)
    recheck_after_ok_s: float = Field(900.0, gt=0, allow_inf_nan=False)
    signal_lost_s: float = Field(600.0, gt=0, allow_inf_nan=False)
    watchdog_interval_s: float = Field(2.0, gt=0, le=60)
    # Time given to open connections when the hub stops.
    shutdown_grace_s: float = Field(2.0, ge=0)
    # The WebSocket server under uvicorn (``auto`` is uvicorn's choice: websockets-sansio when
    # installed) and whether it offers per-message deflate. Compression costs CPU on every
    # frame sent and a zlib state per socket (loadtest/results/server.md has the figures);
    # positions are small frames, so it buys little here.
    ws_impl: Literal["auto", "websockets", "websockets-sansio", "wsproto"] = "auto"
    ws_per_message_deflate: bool = False
    # Log lines: "text" (uvicorn's, for a person at a terminal) or "json" (one object per
    # line with a request or connection id, for a log collector; realtime/logjson.py).
    log_format: Literal["text", "json"] = "text"
    # The garbage collector of `doorstep serve` (realtime/gc_tuning.py): CPython's
    # thresholds gen0,gen1,gen2 (its default is 700,10,10), and whether what exists once the
    # hub has started is frozen out of collections. Chosen by measurement at 2,000
    # technicians + 2,000 customers (loadtest/RESULTS.md, "Garbage collection"): CPython's
    # default gave six full collections a minute of ~0.6 s each and a p99 near 1 s; these
    # gave none, p99 ~0.1 s. doorstep_gc_pause_seconds shows the pauses.
    gc_thresholds: str = GC_THRESHOLDS
    gc_freeze: bool = True
    # Base map tiles for the web pages (/track, /console, /tech): a Leaflet URL template
    # fetched by the browser, never by the hub. OpenStreetMap's public tiles are for light
    # use only (their tile usage policy); point this at your own or a commercial tile server
    # in production. When tiles are unreachable the pages still work on a blank map.
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    # Shown on the map (HTML, as Leaflet renders it); most tile licences require it.
    tile_attribution: str = (
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
    )

    # ---- Privacy: retention, track reads (docs/privacy.md) ----
    # Location history (and last positions in the roster and in memory) is kept this long
    # by fix time: a month covers disputes about a visit ("was he there?") and the review of
    # an incident reported late. On Redis the history also stays within
    # redis_history_retention_s (memory), whichever is shorter.
    retention_history_s: float = Field(30 * 86400.0, gt=0, allow_inf_nan=False)
    # Closed (resolved/cancelled) incidents with their trails and audit, and the access
    # audit: a year, for safety reviews and claims. Open incidents are kept until closed.
    retention_incidents_s: float = Field(365 * 86400.0, gt=0, allow_inf_nan=False)
    # Closed bookings keep their personal fields (exact destination, fence) this long after
    # they closed (complaints, refunds), then are redacted in place.
    retention_booking_personal_s: float = Field(90 * 86400.0, gt=0, allow_inf_nan=False)
    # The retention job runs at start and then this often: data is gone at most this long
    # after it is due.
    retention_interval_s: float = Field(300.0, gt=0, le=86400, allow_inf_nan=False)
    # A track read without `from` covers this long before `to`; one request covers at most
    # track_max_window_s unless an incident of the technician (widened by the margin)
    # covers the range: reading a person's movements is a look at a shift, not a dossier.
    track_default_window_s: float = Field(24 * 3600.0, gt=0, allow_inf_nan=False)
    track_max_window_s: float = Field(7 * 86400.0, gt=0, allow_inf_nan=False)
    track_incident_margin_s: float = Field(3600.0, ge=0, allow_inf_nan=False)

    @property
    def effective_redis_history_retention_s(self) -> float:
        """What Redis trims the history stream by: the shorter of memory and privacy."""
        return min(self.redis_history_retention_s, self.retention_history_s)

    # ---- Tokens (issue 11): rotation, issuer/audience. DOORSTEP_SECRET may hold several
    # comma-separated keys, each at least 32 bytes (an HS256 key shorter than the hash is
    # guessable offline from one token): new tokens are signed with the first, every listed
    # key is accepted (picked by the token's kid), so a key is rotated by putting the new
    # one first, and dropped once the tokens it signed have expired (DOORSTEP_TOKEN_TTL_S).
    # iss and aud are set on every token and checked: a JWT of another system signed with
    # a shared key is not ours.
    token_issuer: str = Field(DEFAULT_ISSUER, min_length=1, max_length=200)
    token_audience: str = Field(DEFAULT_AUDIENCE, min_length=1, max_length=200)

    @field_validator("gc_thresholds")
    @classmethod
    def _gc_thresholds_parse(cls, value: str) -> str:
        parse_thresholds(value)
        return value

    @field_validator("secret")
    @classmethod
    def _secret_keys_are_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            split_keys(value.get_secret_value())
        return value

    # --- Visits and SOS (who sees whom, SOS on the right visit) ---
    # A customer's SOS is accepted on their booking while it is open and this long after it
    # ended (completed or cancelled, from its last transition): the technician may still be
    # at the door, or the customer may only press it once the door has closed behind them.
    # Half an hour covers that; after it the booking's token no longer raises incidents
    # (booking_closed), so an old link cannot page the operators.
    customer_sos_grace_s: float = Field(1800.0, ge=0, allow_inf_nan=False)

    # --- Honest acks (issue 11, item 3): back-pressure on technician sockets.
    # A technician frame over rate_per_s is delayed, not dropped (a dropped fix under a later
    # ack would be lost). A client whose backlog would wait longer than this is a flood
    # (1008): at the default rate that is 200 frames ahead of the hub.
    rate_max_delay_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    # ... or whose backlog holds more than this many bytes (memory per connection: the
    # SDK's batches stay far below it, since it never sends faster than the rate).
    rate_backlog_max_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)

    @model_validator(mode="after")
    def _webhooks_need_a_secret(self) -> Settings:
        if (self.supervisor_webhook_url or self.contact_webhook_url) and not self.webhook_secret:
            raise ValueError(
                "DOORSTEP_WEBHOOK_SECRET is required when DOORSTEP_SUPERVISOR_WEBHOOK_URL"
                " or DOORSTEP_CONTACT_WEBHOOK_URL is set"
            )
        if self.escalation_t2_s < self.escalation_t1_s:
            raise ValueError(
                "DOORSTEP_ESCALATION_T2_S must not be shorter than DOORSTEP_ESCALATION_T1_S"
            )
        return self

    @model_validator(mode="after")
    def _watchdog_looks_often_enough(self) -> Settings:
        # A watchdog that looks less often than its shortest timer would be late by more
        # than the timer itself.
        if self.watchdog_interval_s > min(self.check_timeout_s, self.signal_lost_s):
            raise ValueError(
                "DOORSTEP_WATCHDOG_INTERVAL_S must not be longer than DOORSTEP_CHECK_TIMEOUT_S"
                " or DOORSTEP_SIGNAL_LOST_S"
            )
        return self

    @property
    def database_path(self) -> Path:
        return self.data_dir / "doorstep.sqlite3"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment plus explicit overrides (CLI flags); one-line errors."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across settings: its message names them
            raise SettingsError(f"invalid settings: {first['msg']}") from None
        field = str(first["loc"][0])
        got = "" if field in SECRET_FIELDS else f" (got {first.get('input')!r})"
        message = f"invalid setting DOORSTEP_{field.upper()}: {first['msg']}{got}"
        raise SettingsError(message) from None


def with_secrets(settings: Settings, *, generate: bool) -> tuple[Settings, Path | None]:
    """Fill the secret and platform key from the data dir's secrets file.

    With ``generate`` (``serve``), missing values are created once and saved with mode 0600;
    otherwise (``token``) a missing secret is an error that says how to get one. Returns the
    settings and the secrets file path when it was used.
    """
    if settings.secret and settings.platform_key:
        return settings, None
    path = settings.data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read generated secrets in {path}: {exc}") from None
    missing = [k for k in ("secret", "platform_key") if k not in stored]
    if missing and generate:
        for key in missing:
            stored[key] = secrets.token_urlsafe(32)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
    elif missing and not settings.secret:
        raise SettingsError(
            f"DOORSTEP_SECRET is not set and {path} does not exist: set it, "
            "or run `doorstep serve` once with the same data dir to generate it"
        )
    update = {
        "secret": settings.secret or SecretStr(stored["secret"]),
        "platform_key": settings.platform_key
        or (SecretStr(stored["platform_key"]) if "platform_key" in stored else None),
    }
    return settings.model_copy(update=update), path
